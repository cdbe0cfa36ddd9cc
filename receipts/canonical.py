"""RFC 8785 canonical JSON, the bytes receipts are signed and hashed over."""

import hashlib
from typing import Any

import rfc8785

CanonicalizationError = rfc8785.CanonicalizationError


def canonical_bytes(value: Any) -> bytes:
    """Raises CanonicalizationError for values JCS cannot represent exactly (integers beyond ±(2^53-1))."""
    return rfc8785.dumps(value)


def sha256_tag(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
