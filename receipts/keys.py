"""The coordinator's receipt keys: the active Ed25519 signing key and every public key that still verifies."""

import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ALGORITHM = "ed25519"


@dataclass(frozen=True)
class PublishedKey:
    key_id: str
    public_key: str
    status: str
    verifier: Ed25519PublicKey


def key_id_for(public_key: bytes) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _parse_hex_key(name: str, text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ImproperlyConfigured(f"{name} must be 64 hex digits (32 bytes), got {text[:10]!r}…")
    return raw


@lru_cache(maxsize=4)
def _seed_from_file(path: Path) -> str:
    """Read the generated seed, creating it first if no worker has yet; once per process, not per receipt.

    The seed is written and synced to a private temporary file, then hard-linked into place. The link is atomic and
    refuses to replace an existing file: exactly one worker's seed wins, and no worker can ever read a half-written
    (or, after a crash, empty) key file, which creating the file itself with O_EXCL and then writing it allowed.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # Another worker's seed is in place; everyone signs with that one.
        finally:
            os.unlink(temporary)
    seed = path.read_text().strip()
    if not seed:
        raise ImproperlyConfigured(f"{path} is empty; remove it or set RECEIPT_SIGNING_KEY")
    return seed


@lru_cache(maxsize=4)
def _keys(seed_hex: str, retired: tuple[str, ...]) -> tuple[str, Ed25519PrivateKey, dict[str, PublishedKey]]:
    signer = Ed25519PrivateKey.from_private_bytes(_parse_hex_key("RECEIPT_SIGNING_KEY", seed_hex))
    active_public = _raw_public(signer.public_key())
    published = {
        key_id_for(active_public): PublishedKey(
            key_id_for(active_public), active_public.hex(), "active", signer.public_key()
        )
    }
    for text in retired:
        public = _parse_hex_key("RECEIPT_RETIRED_PUBLIC_KEYS", text)
        published.setdefault(
            key_id_for(public),
            PublishedKey(key_id_for(public), public.hex(), "retired", Ed25519PublicKey.from_public_bytes(public)),
        )
    return key_id_for(active_public), signer, published


def _current() -> tuple[str, Ed25519PrivateKey, dict[str, PublishedKey]]:
    seed = settings.RECEIPT_SIGNING_KEY or _seed_from_file(settings.RECEIPT_SIGNING_KEY_FILE)
    return _keys(seed, tuple(settings.RECEIPT_RETIRED_PUBLIC_KEYS))


def signing_key() -> tuple[str, Ed25519PrivateKey]:
    """(key_id, private key) of the key that signs new receipts."""
    key_id, signer, _ = _current()
    return key_id, signer


def published_keys() -> dict[str, PublishedKey]:
    """Every key that verifies receipts, active first, by key_id."""
    return _current()[2]
