from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors, services, siwe
from accounts.exceptions import UserNotFound
from accounts.models import ApiKeyRole, UserSession
from accounts.serializers import (
    AddressSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    BalanceSerializer,
    ChallengeSerializer,
    IssuedApiKeySerializer,
    LedgerEntrySerializer,
    LoginResponseSerializer,
    LoginSerializer,
    UserSerializer,
)
from accounts.services import Principal
from aitbc_site.authentication import ApiKeyAuthentication, HasSession, SessionTokenAuthentication
from aitbc_site.openapi import error_responses
from aitbc_site.pagination import CursorPage
from aitbc_site.ratelimits import RateLimitedViewMixin

USER_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="The user's id.")
KEY_ID = OpenApiParameter("key_id", str, OpenApiParameter.PATH, description="The API key's id.")


@extend_schema(tags=["users"])
class UserViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    """Wallet users: login with a signed challenge, then everything with X-Session-Token."""

    authentication_classes = [SessionTokenAuthentication]
    permission_classes = [HasSession]
    pagination_class = CursorPage
    rate_limit_group = "user"

    @extend_schema(request=AddressSerializer, responses={201: ChallengeSerializer, **error_responses(400)})
    @action(
        detail=False,
        methods=["post"],
        permission_classes=[AllowAny],
        authentication_classes=[],
        extra_rate_limit="login",
    )
    def challenge(self, request: Request) -> Response:
        """Get a Sign-In with Ethereum (EIP-4361) message for the wallet to sign; valid 5 minutes, once."""
        payload = AddressSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        challenge = services.login_challenge_create(
            address=payload.validated_data["address"], site=siwe.site_of(request)
        )
        return Response(ChallengeSerializer(challenge).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: LoginResponseSerializer,
            **error_responses(400),
            401: OpenApiResponse(
                error_responses(401)[401].response,
                description="INVALID_NONCE, INVALID_SIGNATURE or CHALLENGE_FOR_ANOTHER_SITE.",
            ),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        permission_classes=[AllowAny],
        authentication_classes=[],
        extra_rate_limit="login",
    )
    def login(self, request: Request) -> Response:
        """Exchange the wallet's signature of the challenge for a session token; the first login registers."""
        payload = LoginSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        login = services.wallet_login(**payload.validated_data, site=siwe.site_of(request))
        body = {
            "token": login.token,
            "expires_at": login.session.expires_at,
            "created": login.created,
            "user": selectors.user_profile(user=login.user),
        }
        return Response(LoginResponseSerializer(body).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=False, methods=["post"])
    def logout(self, request: Request) -> Response:
        """End this session; its token is refused from now on."""
        services.session_logout(session=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: UserSerializer})
    @action(detail=False, methods=["get"])
    def me(self, request: Request) -> Response:
        """The logged-in user, with their balance."""
        return Response(UserSerializer(selectors.user_profile(user=request.user)).data)

    @extend_schema(parameters=[USER_ID], responses={200: BalanceSerializer, **error_responses(404)})
    @action(
        detail=True,
        methods=["get"],
        authentication_classes=[SessionTokenAuthentication, ApiKeyAuthentication],
        permission_classes=[],
    )
    def balance(self, request: Request, pk: str) -> Response:
        """A user's balance: for the user themself (session) or an admin API key; anyone else gets 404."""
        if request.auth is None:
            raise NotAuthenticated(
                "An X-Session-Token or an admin X-Api-Key (either may be sent as Authorization: Bearer) is required."
            )
        is_admin_key = isinstance(request.auth, Principal) and ApiKeyRole.ADMIN in request.auth.roles
        is_self = isinstance(request.auth, UserSession) and str(request.user.pk) == str(pk).lower()
        if not (is_admin_key or is_self):
            raise UserNotFound()
        return Response(BalanceSerializer(selectors.user_balance(user=selectors.user_get(user_id=pk))).data)

    @extend_schema(
        methods=["GET"], operation_id="users_me_api_keys_list", responses={200: ApiKeySerializer(many=True)}
    )
    @extend_schema(
        methods=["POST"],
        operation_id="users_me_api_keys_create",
        request=ApiKeyCreateSerializer,
        responses={201: IssuedApiKeySerializer},
    )
    @action(detail=False, methods=["get", "post"], url_path="me/api-keys")
    def api_keys(self, request: Request) -> Response:
        """GET: the user's API keys, without secrets. POST: issue a client or miner key (shown only once)."""
        if request.method == "POST":
            payload = ApiKeyCreateSerializer(data=request.data)
            payload.is_valid(raise_exception=True)
            api_key, raw_key = services.api_key_issue(user=request.user, **payload.validated_data)
            api_key.key = raw_key
            return Response(IssuedApiKeySerializer(api_key).data, status=status.HTTP_201_CREATED)
        paginator = CursorPage()
        page = paginator.paginate_queryset(selectors.api_keys_of(user=request.user), request, view=self)
        return paginator.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(parameters=[KEY_ID], responses={204: None, **error_responses(404)})
    @action(detail=False, methods=["delete"], url_path=r"me/api-keys/(?P<key_id>[^/]+)")
    def revoke_api_key(self, request: Request, key_id: str) -> Response:
        """Revoke one of the user's API keys."""
        services.api_key_revoke(api_key=selectors.api_key_get_owned(key_id=key_id, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: LedgerEntrySerializer(many=True), **error_responses(400)})
    @action(detail=False, methods=["get"], url_path="me/ledger")
    def ledger(self, request: Request) -> Response:
        """The user's ledger entries, newest first."""
        paginator = CursorPage()
        page = paginator.paginate_queryset(selectors.ledger_entries_for(user=request.user), request, view=self)
        return paginator.get_paginated_response(LedgerEntrySerializer(page, many=True).data)
