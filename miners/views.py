from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from aitbc_site.authentication import IsMiner
from aitbc_site.openapi import error_responses
from aitbc_site.ratelimits import RateLimitedViewMixin
from miners import services
from miners.serializers import MinerRegisterSerializer, MinerSerializer


@extend_schema(tags=["miner"])
class MinerViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [IsMiner]
    rate_limit_group = "miner"

    @extend_schema(
        request=MinerRegisterSerializer,
        responses={
            201: MinerSerializer,
            200: OpenApiResponse(
                MinerSerializer, description="An earlier registration (`miner_id` or `name`) was updated."
            ),
            **error_responses(400, 404, 409),
        },
    )
    @action(detail=False, methods=["post"])
    def register(self, request: Request) -> Response:
        """Register as a compute provider, or update an earlier registration."""
        payload = MinerRegisterSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        miner, created = services.miner_register(owner=request.user, **payload.validated_data)
        return Response(MinerSerializer(miner).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
