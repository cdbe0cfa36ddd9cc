"""DRF authentication by `X-Api-Key`, and the role permissions built on the principal it yields."""

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKeyRole, User, UserSession
from accounts.services import Principal, api_key_authenticate, session_authenticate

API_KEY_HEADER = "X-Api-Key"
_API_KEY_META = "HTTP_X_API_KEY"


class InvalidApiKey(exceptions.AuthenticationFailed):
    default_detail = "The API key is unknown or revoked."
    default_code = "invalid_api_key"


class ApiKeyAuthentication(BaseAuthentication):
    """`request.user` is the key's owner and `request.auth` the Principal (owner, roles, key id)."""

    def authenticate(self, request: Request) -> tuple[User, Principal] | None:
        raw_key = request.META.get(_API_KEY_META)
        if not raw_key:
            return None
        principal = api_key_authenticate(raw_key=raw_key.strip())
        if principal is None:
            raise InvalidApiKey()
        return principal.user, principal

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 rather than 403 when credentials are missing.
        return API_KEY_HEADER


SESSION_HEADER = "X-Session-Token"
_SESSION_META = "HTTP_X_SESSION_TOKEN"


class InvalidSession(exceptions.AuthenticationFailed):
    default_detail = "The session token is unknown, expired or logged out. Log in again."
    default_code = "invalid_session"


class SessionTokenAuthentication(BaseAuthentication):
    """Wallet sessions: `request.user` is the wallet's user and `request.auth` the UserSession."""

    def authenticate(self, request: Request) -> tuple[User, UserSession] | None:
        token = request.META.get(_SESSION_META)
        if not token:
            return None
        session = session_authenticate(token=token.strip())
        if session is None:
            raise InvalidSession()
        return session.user, session

    def authenticate_header(self, request: Request) -> str:
        return SESSION_HEADER


class HasSession(BasePermission):
    message = "A wallet session is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, UserSession):
            raise exceptions.NotAuthenticated("An X-Session-Token header is required.")
        return True


class _HasRole(BasePermission):
    role: str
    message = "This API key may not use this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, Principal):
            raise exceptions.NotAuthenticated("An X-Api-Key header is required.")
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
