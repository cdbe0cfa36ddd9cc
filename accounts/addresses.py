"""AITBC wallet addresses: 20 bytes written `0x…`, `ait1…` or `aitbc1…` + 40 hex; canonical form `ait1` + lowercase."""

import re

from eth_utils import is_checksum_address, to_checksum_address

from aitbc_site.exceptions import InvalidAddress

_ADDRESS = re.compile(r"^(0x|ait1|aitbc1)([0-9a-fA-F]{40})$")
CANONICAL_PREFIX = "ait1"


def canonical_address(text: object) -> str:
    """Return the canonical `ait1` spelling of a wallet address, or raise InvalidAddress."""
    if not isinstance(text, str):
        raise InvalidAddress(details={"address": ["Must be a string."]})
    match = _ADDRESS.match(text.strip())
    if match is None:
        raise InvalidAddress(
            "Not a valid AITBC wallet address: expected 0x, ait1 or aitbc1 followed by 40 hex digits.",
            details={"address": [text[:100]]},
        )
    prefix, digits = match.groups()
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if prefix == "0x" and mixed_case and not is_checksum_address(prefix + digits):
        raise InvalidAddress("The address fails its EIP-55 checksum.", details={"address": [text]})
    return CANONICAL_PREFIX + digits.lower()


def eip55_address(canonical: str) -> str:
    """The `0x` EIP-55 checksummed spelling of a canonical address (what wallets show and sign)."""
    return to_checksum_address("0x" + canonical.removeprefix(CANONICAL_PREFIX))
