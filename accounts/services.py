"""Accounts: users, API keys and who a request speaks for.

App dependencies point one way: accounts ← miners ← receipts ← jobs, and accounts ← exchange.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiKey, ApiKeyRole, User

KEY_PREFIX = "aitbc"
LAST_USED_RESOLUTION = timedelta(minutes=1)
ENV_KEY_ROLES = frozenset({ApiKeyRole.CLIENT, ApiKeyRole.MINER})


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: the user that owns the key, and what the key may do."""

    user: User
    roles: frozenset[str]
    api_key_id: UUID | None

    @property
    def user_id(self) -> UUID:
        return self.user.pk


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def service_user_create(*, label: str) -> User:
    """Create a user that only owns keys: it never logs in and is never billed."""
    user = User(username=f"service-{label}", is_service=True)
    user.set_unusable_password()
    user.save()
    return user


def api_key_issue(*, role: str, name: str, user: User | None = None) -> tuple[ApiKey, str]:
    """Issue a key and return it with its plaintext, which is never stored and cannot be shown again."""
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        owner = user or service_user_create(label=f"key-{prefix}-{secrets.token_hex(4)}")
        api_key = ApiKey.objects.create(user=owner, role=role, name=name, prefix=prefix, key_hash=_digest(raw_key))
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; it answers INVALID_API_KEY from the next request on. Revoking twice keeps the first time."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def _env_key_user(digest: str) -> User:
    """The service user of one API_KEYS entry, created on its first use (by whichever worker sees it first)."""
    username = f"service-env-{digest[:16]}"
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user
    try:
        with transaction.atomic():
            return service_user_create(label=f"env-{digest[:16]}")
    except IntegrityError:
        # Another worker created it between our read and our insert.
        return User.objects.get(username=username)


def _match_env_key(digest: str) -> str | None:
    configured = [_digest(key) for key in settings.API_KEYS]
    # Compare against every configured key without stopping early, so timing says nothing about which matched.
    matched = None
    for candidate in configured:
        if hmac.compare_digest(candidate, digest):
            matched = candidate
    return matched


def api_key_authenticate(*, raw_key: str) -> Principal | None:
    """The principal behind a presented key, or None if the key is unknown or revoked."""
    digest = _digest(raw_key)
    parts = raw_key.split("_", 2)
    if len(parts) == 3 and parts[0] == KEY_PREFIX:
        for api_key in ApiKey.objects.select_related("user").filter(prefix=parts[1]):
            if hmac.compare_digest(api_key.key_hash, digest):
                if api_key.revoked_at is not None or not api_key.user.is_active:
                    return None
                _touch_last_used(api_key)
                return Principal(user=api_key.user, roles=frozenset({api_key.role}), api_key_id=api_key.pk)
    env_digest = _match_env_key(digest)
    if env_digest is not None:
        return Principal(user=_env_key_user(env_digest), roles=ENV_KEY_ROLES, api_key_id=None)
    return None


def _touch_last_used(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    # Conditional, so concurrent requests of one key write it once a minute, not once each.
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
