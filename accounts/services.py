"""Accounts: users, API keys and who a request speaks for.

App dependencies point one way: accounts ← miners ← receipts ← jobs, and accounts ← exchange.
"""

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.core.signals import setting_changed
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature

from accounts import queries, siwe
from accounts.exceptions import ChallengeForAnotherSite, InvalidNonce, InvalidSignature
from accounts.models import ApiKey, ApiKeyRole, LoginChallenge, User, UserSession

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


# The service users of API_KEYS entries, by key digest, kept for the life of the process: such a user never changes,
# and reading it back on every request was a tenth of a request's cost. Emptied when API_KEYS changes.
_env_key_users: dict[str, User] = {}


@receiver(setting_changed)
def _forget_env_key_users(*, setting: str, **kwargs: object) -> None:
    if setting == "API_KEYS":
        _env_key_users.clear()


def _env_key_user(digest: str) -> User:
    """The service user of one API_KEYS entry, created on its first use (by whichever worker sees it first)."""
    user = _env_key_users.get(digest)
    if user is not None:
        return user
    username = f"service-env-{digest[:16]}"
    user = User.objects.filter(username=username).first()
    if user is None:
        try:
            with transaction.atomic():
                user = service_user_create(label=f"env-{digest[:16]}")
        except IntegrityError:
            # Another worker created it between our read and our insert.
            user = User.objects.get(username=username)
    _env_key_users[digest] = user
    return user


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
        for api_key in queries.keys_with_owner_by_prefix(parts[1]):
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


# --- wallet users and login ---------------------------------------------------------------------------------------


def wallet_user_for(*, address: str) -> User:
    """The user of a canonical wallet address, created the first time the wallet logs in or earns."""
    user = User.objects.filter(wallet_address=address).first()
    if user is not None:
        return user
    try:
        with transaction.atomic():
            user = User(username=address, wallet_address=address)
            user.set_unusable_password()
            user.save()
            return user
    except IntegrityError:
        return User.objects.get(wallet_address=address)


def login_challenge_create(*, address: str, site: siwe.Site) -> LoginChallenge:
    """Issue a one-time message for the wallet to sign in to `site`."""
    now = timezone.now().replace(microsecond=0)
    expires_at = now + timedelta(seconds=settings.LOGIN_CHALLENGE_SECONDS)
    nonce = secrets.token_hex(16)
    text = siwe.message(
        site=site, address=address, nonce=nonce, chain_id=settings.SIWE_CHAIN_ID, issued_at=now, expires_at=expires_at
    )
    return LoginChallenge.objects.create(
        address=address, nonce=nonce, message=text, created_at=now, expires_at=expires_at
    )


def _signer_of(message: str, signature: bytes) -> str | None:
    """The canonical address whose key made this EIP-191 personal-sign signature, or None if it is not one."""
    if signature[64] in (0, 1):
        signature = signature[:64] + bytes([signature[64] + 27])
    try:
        recovered = Account.recover_message(encode_defunct(text=message), signature=signature)
    except (ValueError, TypeError, BadSignature):
        return None
    return "ait1" + recovered[2:].lower()


@dataclass(frozen=True)
class Login:
    token: str
    session: UserSession
    user: User
    created: bool


def wallet_login(*, address: str, nonce: str, signature: bytes, site: siwe.Site) -> Login:
    """Exchange a signed challenge for a session at `site`, the one the challenge names. The nonce is spent by this
    attempt whatever its outcome."""
    now = timezone.now()
    # Spend the nonce first, in its own statement: of two attempts with one nonce only one can get past this line.
    if not LoginChallenge.objects.filter(nonce=nonce, used_at__isnull=True).update(used_at=now):
        raise InvalidNonce()
    challenge = LoginChallenge.objects.get(nonce=nonce)
    if challenge.address != address or challenge.expires_at <= now:
        raise InvalidNonce()
    # EIP-4361: the relying party checks the message is for itself. A challenge asked at one name of the server and
    # signed for it is no login at another (nor one relayed from a page elsewhere).
    signed_for = siwe.site_in(challenge.message)
    if signed_for != site:
        raise ChallengeForAnotherSite(
            details={
                "challenge": asdict(signed_for) if signed_for else None,
                "here": asdict(site),
            }
        )
    if _signer_of(challenge.message, signature) != address:
        raise InvalidSignature()
    with transaction.atomic():
        created = not User.objects.filter(wallet_address=address).exists()
        user = wallet_user_for(address=address)
        User.objects.filter(pk=user.pk).update(last_login=now)
        user.last_login = now
        token = secrets.token_urlsafe(32)
        session = UserSession.objects.create(
            user=user,
            token_hash=_digest(token),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.SESSION_TTL_SECONDS),
        )
    return Login(token=token, session=session, user=user, created=created)


def session_authenticate(*, token: str) -> UserSession | None:
    """The live session behind a token, or None if it is unknown, expired or logged out."""
    session = UserSession.objects.select_related("user").filter(token_hash=_digest(token)).first()
    if session is None or session.revoked_at is not None or session.expires_at <= timezone.now():
        return None
    if not session.user.is_active:
        return None
    return session


def session_logout(*, session: UserSession) -> None:
    """End the session: its token is refused from now on."""
    UserSession.objects.filter(pk=session.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
