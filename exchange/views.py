import io

import segno
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from aitbc_site.authentication import HasSession, SessionTokenAuthentication
from aitbc_site.openapi import error_responses
from aitbc_site.pagination import CursorPage
from aitbc_site.ratelimits import RateLimitedViewMixin
from exchange import selectors
from exchange.serializers import CreatePaymentSerializer, PaymentSerializer, RateSerializer
from exchange.services.creation import payment_create
from exchange.services.watching import payment_refresh_if_stale
from exchange.wallet import bip21_uri

PAYMENT_ID = OpenApiParameter("payment_id", str, OpenApiParameter.PATH, description="The payment's id.")


@extend_schema(tags=["exchange"])
class ExchangeViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    """Buy AITBC with bitcoin. Everything but the rate needs a wallet session."""

    authentication_classes = [SessionTokenAuthentication]
    permission_classes = [HasSession]
    pagination_class = CursorPage
    rate_limit_group = "user"

    @extend_schema(operation_id="exchange_rate", responses={200: RateSerializer})
    @action(detail=False, methods=["get"], permission_classes=[AllowAny], authentication_classes=[])
    def rate(self, request: Request) -> Response:
        """The current BTC→AITBC rate."""
        return Response(RateSerializer(selectors.current_rate()).data)

    @extend_schema(
        operation_id="exchange_create_payment",
        request=CreatePaymentSerializer,
        responses={
            201: PaymentSerializer,
            **error_responses(400, 503),
        },
    )
    @action(detail=False, methods=["post"], url_path="create-payment")
    def create_payment(self, request: Request) -> Response:
        """Ask to pay bitcoin for AITBC: a fresh address (or a unique amount), a locked rate and an expiry."""
        payload = CreatePaymentSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        payment = payment_create(user=request.user, **payload.validated_data)
        return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="exchange_payment_status",
        parameters=[PAYMENT_ID],
        responses={200: PaymentSerializer, **error_responses(404)},
    )
    @action(detail=False, methods=["get"], url_path=r"payment-status/(?P<payment_id>[^/]+)")
    def payment_status(self, request: Request, payment_id: str) -> Response:
        """One of the caller's payments; a stale open one is checked against the chain first."""
        payment = selectors.payment_get_for_user(payment_id=payment_id, user=request.user)
        return Response(PaymentSerializer(payment_refresh_if_stale(payment=payment)).data)

    @extend_schema(
        operation_id="exchange_payments_list", responses={200: PaymentSerializer(many=True), **error_responses(400)}
    )
    @action(detail=False, methods=["get"])
    def payments(self, request: Request) -> Response:
        """The caller's payments, newest first."""
        paginator = CursorPage()
        page = paginator.paginate_queryset(selectors.payments_for_user(user=request.user), request, view=self)
        return paginator.get_paginated_response(PaymentSerializer(page, many=True).data)

    @extend_schema(
        operation_id="exchange_payment_qr",
        parameters=[PAYMENT_ID],
        responses={(200, "image/svg+xml"): OpenApiTypes.STR, **error_responses(404)},
    )
    @action(detail=False, methods=["get"], url_path=r"payments/(?P<payment_id>[^/]+)/qr\.svg")
    def payment_qr(self, request: Request, payment_id: str) -> HttpResponse:
        """The payment's BIP 21 URI as a QR code (SVG)."""
        payment = selectors.payment_get_for_user(payment_id=payment_id, user=request.user)
        svg = io.BytesIO()
        segno.make(bip21_uri(payment.address, payment.btc_amount, label=f"AITBC payment {payment.pk}")).save(
            svg, kind="svg", scale=4, title="Bitcoin payment"
        )
        return HttpResponse(svg.getvalue(), content_type="image/svg+xml")
