"""Wallet addresses: three spellings of 20 bytes, one canonical form, and the EIP-55 checksum on mixed-case 0x."""

import pytest
from eth_utils import to_checksum_address

from accounts.addresses import canonical_address, eip55_address
from aitbc_site.exceptions import InvalidAddress

HEX = "fb6916095ca1df60bb79ce92ce3ea74c37c5d359"
CANONICAL = "ait1" + HEX
CHECKSUMMED = to_checksum_address("0x" + HEX)


def with_one_letter_case_flipped(address: str) -> str:
    position = next(index for index, char in enumerate(address) if index > 1 and char.isalpha())
    return address[:position] + address[position].swapcase() + address[position + 1 :]


@pytest.mark.parametrize(
    "spelling",
    [
        "0x" + HEX,
        "0x" + HEX.upper(),
        CHECKSUMMED,
        "ait1" + HEX,
        "ait1" + HEX.upper(),
        "aitbc1" + HEX,
        "aitbc1" + HEX.upper(),
        f"  {CHECKSUMMED}\n",
    ],
    ids=[
        "0x lowercase", "0x uppercase", "0x EIP-55", "ait1", "ait1 uppercase", "aitbc1", "aitbc1 uppercase",
        "surrounded by whitespace",
    ],
)
def test_every_spelling_of_a_wallet_has_the_same_canonical_form(spelling: str) -> None:
    assert canonical_address(spelling) == CANONICAL


def test_the_canonical_form_is_itself_canonical() -> None:
    assert canonical_address(canonical_address(CHECKSUMMED)) == CANONICAL


def test_a_mixed_case_0x_address_must_pass_eip55() -> None:
    assert CHECKSUMMED != "0x" + HEX and CHECKSUMMED[2:] != HEX.upper()

    with pytest.raises(InvalidAddress) as raised:
        canonical_address(with_one_letter_case_flipped(CHECKSUMMED))

    assert raised.value.code == "INVALID_ADDRESS"
    assert "checksum" in raised.value.message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0x",
        "0x" + HEX[:-1],
        "0x" + HEX + "a",
        "0x" + HEX[:-1] + "z",
        "0X" + HEX,
        "AIT1" + HEX,
        "ait" + HEX,
        "aitbc" + HEX,
        "bc1q" + HEX,
        HEX,
        "0x " + HEX,
        "0x" + HEX[:20] + " " + HEX[20:],
    ],
    ids=[
        "empty", "prefix only", "39 digits", "41 digits", "not hex", "capital 0X", "capital AIT1", "ait without 1",
        "aitbc without 1", "bitcoin", "no prefix", "space after prefix", "space inside",
    ],
)
def test_anything_else_is_not_an_address(text: str) -> None:
    with pytest.raises(InvalidAddress):
        canonical_address(text)


@pytest.mark.parametrize("value", [None, 123, ["0x" + HEX], b"0x" + HEX.encode()])
def test_a_value_that_is_not_a_string_is_not_an_address(value: object) -> None:
    with pytest.raises(InvalidAddress):
        canonical_address(value)


def test_the_eip55_spelling_of_a_canonical_address_is_what_wallets_show() -> None:
    assert eip55_address(CANONICAL) == CHECKSUMMED
    assert canonical_address(eip55_address(CANONICAL)) == CANONICAL
