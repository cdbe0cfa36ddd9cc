"""The operator's receiving wallet: BIP 84 (native segwit) receive addresses derived from an account xpub."""

from decimal import Decimal
from functools import lru_cache
from urllib.parse import quote

from embit import bip32, script
from embit.base import EmbitError
from embit.networks import NETWORKS

# Extended-key version bytes → network. xpub/zpub are mainnet, tpub/vpub testnet (SLIP-132).
_VERSIONS = {
    bytes.fromhex("0488b21e"): "main",  # xpub
    bytes.fromhex("04b24746"): "main",  # zpub
    bytes.fromhex("043587cf"): "test",  # tpub
    bytes.fromhex("045f1cf6"): "test",  # vpub
}


@lru_cache(maxsize=4)
def _account_key(extended_public_key: str) -> tuple[bip32.HDKey, str]:
    try:
        key = bip32.HDKey.from_string(extended_public_key.strip())
    except (ValueError, EmbitError) as error:
        raise ValueError(f"not an extended public key: {error}") from None
    network = _VERSIONS.get(key.version)
    if network is None or key.is_private:
        raise ValueError("expected an xpub, zpub, tpub or vpub (public, BIP 84 account level)")
    return key, network


def validate_extended_public_key(extended_public_key: str) -> None:
    _account_key(extended_public_key)


def receive_address(extended_public_key: str, index: int) -> str:
    """The bech32 address of receive path 0/index below the account key."""
    key, network = _account_key(extended_public_key)
    child = key.derive([0, index])
    return script.p2wpkh(child.key).address(NETWORKS[network])


def bip21_uri(address: str, amount_btc: Decimal, label: str) -> str:
    """A BIP 21 payment URI; the amount is in BTC with no exponent and no trailing zeros."""
    amount = format(amount_btc.normalize(), "f")
    return f"bitcoin:{address}?amount={amount}&label={quote(label)}"
