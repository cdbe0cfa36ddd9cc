from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from aitbc_site.authentication import IsMiner
from aitbc_site.openapi import error_responses
from aitbc_site.ratelimits import RateLimitedViewMixin
from jobs import services as job_services
from jobs.views import heartbeat_interval
from miners import services
from miners.selectors import miner_get_working
from miners.serializers import (
    HeartbeatResponseSerializer,
    HeartbeatSerializer,
    MinerRegisterSerializer,
    MinerSerializer,
)


@extend_schema(tags=["miner"])
class MinerViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [IsMiner]
    rate_limit_group = "miner"

    @extend_schema(
        request=MinerRegisterSerializer,
        responses={
            201: MinerSerializer,
            200: OpenApiResponse(MinerSerializer, description="An earlier registration (`miner_id`) was updated."),
            **error_responses(400, 404),
        },
    )
    @action(detail=False, methods=["post"])
    def register(self, request: Request) -> Response:
        """Register as a compute provider, or update an earlier registration."""
        payload = MinerRegisterSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        miner, created = services.miner_register(owner=request.user, **payload.validated_data)
        return Response(MinerSerializer(miner).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        request=HeartbeatSerializer, responses={200: HeartbeatResponseSerializer, **error_responses(400, 404)}
    )
    @action(detail=False, methods=["post"])
    def heartbeat(self, request: Request) -> Response:
        """Report that the miner is alive; renews its leases and says which of its jobs were cancelled."""
        payload = HeartbeatSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        miner = miner_get_working(miner_id=data["miner_id"], owner=request.user)
        beat = job_services.miner_heartbeat(miner=miner, status=data.get("status"), jobs=data.get("jobs"))
        extra = {
            "held_jobs": [str(job_id) for job_id in beat.held_jobs],
            "cancelled_jobs": [str(job_id) for job_id in beat.cancelled_jobs],
            "heartbeat_interval": heartbeat_interval(),
        }
        return Response(HeartbeatResponseSerializer((beat.miner, extra)).data)
