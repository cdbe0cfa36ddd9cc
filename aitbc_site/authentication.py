"""DRF authentication by `X-Api-Key`, `X-Session-Token` or `Authorization: Bearer` (either of the two), and the role
permissions built on the principal it yields."""

from enum import Enum
from typing import Any

from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKeyRole, User, UserSession
from accounts.services import Principal, api_key_authenticate, session_authenticate

API_KEY_HEADER = "X-Api-Key"
_API_KEY_META = "HTTP_X_API_KEY"
SESSION_HEADER = "X-Session-Token"
_SESSION_META = "HTTP_X_SESSION_TOKEN"
# Where a request's resolved credential is kept for the other authentication class of the same view.
_RESOLVED = "_aitbc_credential"


class InvalidApiKey(exceptions.AuthenticationFailed):
    default_detail = "The API key is unknown or revoked."
    default_code = "invalid_api_key"


class InvalidSession(exceptions.AuthenticationFailed):
    default_detail = "The session token is unknown, expired or logged out. Log in again."
    default_code = "invalid_session"


class AmbiguousCredentials(exceptions.APIException):
    # A DRF exception rather than an ApplicationError, like the two above: raised while DRF authenticates, it must be
    # one DRF catches there, so the request counts (per IP) against the rate limit before it is refused.
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = (
        "The request carries two different credentials (X-Api-Key, X-Session-Token, Authorization: Bearer); "
        "send one."
    )
    default_code = "ambiguous_credentials"


class Presented(Enum):
    """Which header(s) carried the request's one credential, i.e. what it claims to be."""

    API_KEY = "api key"
    SESSION = "session"
    EITHER = "either"  # Authorization: Bearer (or both named headers with the same value)


def _bearer_token(authorization: str) -> str | None:
    # RFC 9110: the scheme is case-insensitive. Other schemes (Basic …) are not credentials of this API.
    parts = authorization.split(None, 1)
    return parts[1].strip() if len(parts) == 2 and parts[0].lower() == "bearer" else None


def presented_credential(request: Request) -> tuple[str, Presented] | None:
    """The request's one credential and what it claims to be; AmbiguousCredentials when it carries two different."""
    key = request.META.get(_API_KEY_META, "").strip()
    token = request.META.get(_SESSION_META, "").strip()
    bearer = _bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
    values = {value for value in (key, token, bearer) if value}
    if not values:
        return None
    if len(values) > 1:
        raise AmbiguousCredentials()
    (value,) = values
    if key and not token:
        return value, Presented.API_KEY
    if token and not key:
        return value, Presented.SESSION
    return value, Presented.EITHER


def _resolve(request: Request, value: str, presented: Presented) -> Principal | UserSession | None:
    """What the credential is: an API key's principal, a live session, or None. A bearer token is tried as a key
    first (the hot paths of clients and miners), then as a session; once per request, whichever class asks."""
    django_request = request._request
    if hasattr(django_request, _RESOLVED):
        return getattr(django_request, _RESOLVED)
    holder: Principal | UserSession | None = None
    if presented is not Presented.SESSION:
        holder = api_key_authenticate(raw_key=value)
    if holder is None and presented is not Presented.API_KEY:
        holder = session_authenticate(token=value)
    setattr(django_request, _RESOLVED, holder)
    return holder


class ApiKeyAuthentication(BaseAuthentication):
    """`X-Api-Key` or `Authorization: Bearer`: `request.user` is the key's owner and `request.auth` the Principal
    (owner, roles, key id)."""

    def authenticate(self, request: Request) -> tuple[User, Principal] | None:
        presented = presented_credential(request)
        if presented is None or presented[1] is Presented.SESSION:
            return None
        holder = _resolve(request, *presented)
        if isinstance(holder, Principal):
            return holder.user, holder
        if isinstance(holder, UserSession):
            return None  # a session's bearer token: the session class's, where the view takes sessions
        raise InvalidApiKey()

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 rather than 403 when credentials are missing.
        return API_KEY_HEADER


class SessionTokenAuthentication(BaseAuthentication):
    """Wallet sessions, by `X-Session-Token` or `Authorization: Bearer`: `request.user` is the wallet's user and
    `request.auth` the UserSession."""

    def authenticate(self, request: Request) -> tuple[User, UserSession] | None:
        presented = presented_credential(request)
        if presented is None or presented[1] is Presented.API_KEY:
            return None
        holder = _resolve(request, *presented)
        if isinstance(holder, UserSession):
            return holder.user, holder
        if isinstance(holder, Principal):
            return None  # an API key's bearer token: the key class's, where the view takes keys
        raise InvalidSession()

    def authenticate_header(self, request: Request) -> str:
        return SESSION_HEADER


class HasSession(BasePermission):
    message = "A wallet session is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, UserSession):
            raise exceptions.NotAuthenticated("A session token is required (X-Session-Token or Authorization: Bearer).")
        return True


class _HasRole(BasePermission):
    role: str
    message = "This API key may not use this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, Principal):
            raise exceptions.NotAuthenticated("An API key is required (X-Api-Key or Authorization: Bearer).")
        return self.role in request.auth.roles


class IsClient(_HasRole):
    role = ApiKeyRole.CLIENT


class IsMiner(_HasRole):
    role = ApiKeyRole.MINER


class IsAdminKey(_HasRole):
    role = ApiKeyRole.ADMIN


class IsClientOrMiner(BasePermission):
    message = _HasRole.message

    def has_permission(self, request: Request, view: Any) -> bool:
        return IsClient().has_permission(request, view) or IsMiner().has_permission(request, view)
