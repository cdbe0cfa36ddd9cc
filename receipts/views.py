from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from aitbc_site.authentication import IsClientOrMiner
from aitbc_site.openapi import error_responses
from aitbc_site.ratelimits import RateLimitedViewMixin
from receipts.keys import ALGORITHM, published_keys
from receipts.selectors import receipt_get_visible
from receipts.serializers import (
    KeyListSerializer,
    ReceiptSerializer,
    VerificationSerializer,
    VerifyRequestSerializer,
)
from receipts.services import receipt_verify


@extend_schema(tags=["receipts"])
class ReceiptViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [IsClientOrMiner]
    rate_limit_group = "client"

    @extend_schema(
        parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH, description="The receipt's id.")],
        responses={200: ReceiptSerializer, **error_responses(404)},
    )
    def retrieve(self, request: Request, pk: str) -> HttpResponse:
        """A receipt, exactly as signed, for the job's client or the miner that produced it."""
        receipt = receipt_get_visible(receipt_id=pk, user=request.user)
        # Served byte for byte as stored: the canonical bytes that were signed, plus the proof.
        return HttpResponse(receipt.document, content_type="application/json")

    @extend_schema(operation_id="receipts_keys", responses={200: KeyListSerializer})
    @action(detail=False, methods=["get"], permission_classes=[AllowAny], authentication_classes=[])
    def keys(self, request: Request) -> Response:
        """The public keys that verify receipts: the active one, and retired ones still valid for verification."""
        keys = [
            {"key_id": key.key_id, "alg": ALGORITHM, "public_key": key.public_key, "status": key.status}
            for key in published_keys().values()
        ]
        return Response({"keys": keys})

    @extend_schema(
        operation_id="receipts_verify",
        request=VerifyRequestSerializer,
        responses={200: VerificationSerializer},
    )
    @action(detail=False, methods=["post"], permission_classes=[AllowAny], authentication_classes=[])
    def verify(self, request: Request) -> Response:
        """Verify a receipt (the whole receipt as the body) against the coordinator's keys."""
        if not isinstance(request.data, dict):
            raise serializers.ValidationError({"non_field_errors": ["The body must be a receipt: a JSON object."]})
        VerifyRequestSerializer(data=request.data).is_valid(raise_exception=True)
        outcome = receipt_verify(document=request.data)
        return Response({"valid": outcome.valid, "key_id": outcome.key_id, "reason": outcome.reason})
