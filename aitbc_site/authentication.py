"""DRF authentication by `X-Api-Key`, and the role permissions built on the principal it yields."""

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKeyRole, User
from accounts.services import Principal, api_key_authenticate

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
