"""Receive addresses derived from the operator's account key, checked against BIP 84's published test vectors, and
the start-up check that refuses a key the exchange cannot use."""

from decimal import Decimal

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from embit import bip32, bip39
from embit.networks import NETWORKS
from pytest_django.fixtures import Settings

from exchange.tests.factories import BIP84_RECEIVE_0, BIP84_RECEIVE_1, BIP84_ZPUB
from exchange.wallet import bip21_uri, receive_address, validate_extended_public_key

# BIP 84's mnemonic; its test vectors are the mainnet account m/84'/0'/0'.
MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
# The same account key in the plain xpub encoding (SLIP-132 versions only change the prefix).
BIP84_XPUB = (
    "xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V"
)
# The testnet account m/84'/1'/0' of the same mnemonic, and its first receive address as published with it
# (bitcoinjs-lib's and Electrum's BIP 84 testnet vectors).
BIP84_TESTNET_VPUB = (
    "vpub5Y6cjg78GGuNLsaPhmYsiw4gYX3HoQiRBiSwDaBXKUafCt9bNwWQiitDk5VZ5BVxYnQdwoTyXSs2JHRPAgjAvtbBrf8ZhDYe2jWAqvZVnsc"
)
BIP84_TESTNET_RECEIVE_0 = "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl"


def test_the_bip84_zpub_gives_the_published_receive_addresses() -> None:
    assert receive_address(BIP84_ZPUB, 0) == BIP84_RECEIVE_0
    assert receive_address(BIP84_ZPUB, 1) == BIP84_RECEIVE_1


def test_the_same_account_as_an_xpub_gives_the_same_addresses() -> None:
    assert [receive_address(BIP84_XPUB, index) for index in (0, 1)] == [BIP84_RECEIVE_0, BIP84_RECEIVE_1]


def test_a_testnet_vpub_gives_tb1_addresses() -> None:
    assert receive_address(BIP84_TESTNET_VPUB, 0) == BIP84_TESTNET_RECEIVE_0


def test_a_testnet_tpub_of_the_same_account_gives_the_same_tb1_addresses() -> None:
    root = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(MNEMONIC), version=NETWORKS["test"]["xprv"])
    account = root.derive("m/84h/1h/0h").to_public()
    tpub = account.to_string(NETWORKS["test"]["xpub"])
    assert tpub.startswith("tpub")

    addresses = [receive_address(tpub, index) for index in range(3)]

    assert addresses[0] == BIP84_TESTNET_RECEIVE_0
    assert addresses == [receive_address(BIP84_TESTNET_VPUB, index) for index in range(3)]
    assert all(address.startswith("tb1q") for address in addresses)


def test_the_key_may_be_pasted_with_surrounding_whitespace() -> None:
    assert receive_address(f"  {BIP84_ZPUB}\n", 0) == BIP84_RECEIVE_0


def _ypub() -> str:
    account = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(MNEMONIC)).derive("m/84h/0h/0h").to_public()
    return account.to_string(NETWORKS["main"]["ypub"])


def _zprv() -> str:
    account = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(MNEMONIC)).derive("m/84h/0h/0h")
    return account.to_string(NETWORKS["main"]["zprv"])


UNUSABLE_KEYS = {
    "garbage": "not-a-key",
    "a zpub with one character changed": BIP84_ZPUB[:-1] + ("t" if BIP84_ZPUB[-1] != "t" else "u"),
    "a ypub (BIP 49, a version we do not derive for)": _ypub(),
    "a private zprv": _zprv(),
    "a bitcoin address": BIP84_RECEIVE_0,
}


@pytest.mark.parametrize("key", UNUSABLE_KEYS.values(), ids=UNUSABLE_KEYS.keys())
def test_an_unusable_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError):
        validate_extended_public_key(key)


@pytest.mark.parametrize("key", UNUSABLE_KEYS.values(), ids=UNUSABLE_KEYS.keys())
def test_an_unusable_bitcoin_xpub_stops_the_server_at_start(settings: Settings, key: str) -> None:
    settings.BITCOIN_XPUB = key

    with pytest.raises(ImproperlyConfigured, match="BITCOIN_XPUB"):
        apps.get_app_config("exchange").ready()


@pytest.mark.parametrize("key", [BIP84_ZPUB, BIP84_XPUB, BIP84_TESTNET_VPUB, ""])
def test_a_usable_or_absent_bitcoin_xpub_starts(settings: Settings, key: str) -> None:
    settings.BITCOIN_XPUB = key

    apps.get_app_config("exchange").ready()


def test_a_bip21_uri_has_the_amount_in_btc_without_trailing_zeros_and_an_escaped_label() -> None:
    uri = bip21_uri(BIP84_RECEIVE_0, Decimal("0.00100000"), label="AITBC payment 1")

    assert uri == f"bitcoin:{BIP84_RECEIVE_0}?amount=0.001&label=AITBC%20payment%201"


@pytest.mark.parametrize(
    ("amount", "written"), [("1.00000000", "1"), ("100", "100"), ("0.00000001", "0.00000001"), ("20.5", "20.5")]
)
def test_a_bip21_amount_is_never_in_exponent_notation(amount: str, written: str) -> None:
    assert bip21_uri(BIP84_RECEIVE_0, Decimal(amount), label="x").split("amount=")[1] == f"{written}&label=x"
