from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.serializers import JobTypeListSerializer, JobTypeSerializer
from aitbc_site.authentication import IsClient, IsMiner
from aitbc_site.negotiation import JSON
from aitbc_site.openapi import error_responses
from aitbc_site.pagination import CursorPage, OldestFirstCursorPage, ReceiptCursorPage
from aitbc_site.ratelimits import RateLimitedViewMixin
from aitbc_site.rendering import JSONRenderer
from jobs import selectors
from jobs.serializers import (
    AssignmentSerializer,
    JobCreateSerializer,
    JobEventSerializer,
    JobListQuerySerializer,
    JobOutputChunkSerializer,
    JobOutputSerializer,
    JobSerializer,
    JobWaitQuerySerializer,
    OutputPostedSerializer,
    PollQuerySerializer,
    PollResponseSerializer,
    ResultResponseSerializer,
    ResultSerializer,
)
from jobs.services.cancellation import job_cancel
from jobs.services.leases import miner_heartbeat
from jobs.services.output import job_post_output
from jobs.services.results import job_submit_result
from jobs.services.submission import job_submit
from jobs.streams import (
    EVENT_STREAM,
    EventStreamRenderer,
    event_stream_response,
    output_cursor,
    output_stream,
    timeline_finished,
    timeline_position,
    timeline_stream,
    wants_event_stream,
)
from jobs.waiting import job_claim_waiting, job_wait_for_client
from miners.selectors import miner_get_working
from miners.serializers import HeartbeatResponseSerializer, HeartbeatSerializer
from receipts.selectors import receipts_for_job
from receipts.serializers import ReceiptSerializer
from receipts.services import receipt_document

IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Resending the same body with the same key within 24 h returns the original job (200).",
)
LAST_EVENT_ID_HEADER = OpenApiParameter(
    "Last-Event-ID",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="With `Accept: text/event-stream`: the id of the last event received, to resume after it.",
)


def event_stream_document(events: str, *, names: list[str]) -> OpenApiResponse:
    """An event stream's documented item: one Server-Sent Event (an object of `id`, `event` and `data`, a JSON
    document as text). drf-spectacular would take a raw schema of it for a page of a list, so it is `object`."""
    return OpenApiResponse(
        OpenApiTypes.OBJECT,
        description=f"Server-Sent Events, live, each with `id`, `event` ({', '.join(names)}) and `data` (JSON): "
        f"{events}.",
    )


STREAM_FINISHED = OpenApiResponse(description="Resumed after the stream's last event: nothing more will come.")
JOB_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")

# How long a miner should wait before polling again after an empty answer, by reason.
RETRY_AFTER_SECONDS = {"no_matching_jobs": 2, "at_capacity": 5}


class OutputCursorPage(CursorPage):
    """A job's output chunks by position, which is the order they were kept in: a reader resumes after the last
    position it read (the id of a stream's events)."""

    ordering = ("id",)


def heartbeat_interval() -> int:
    """The cadence at which miners should send heartbeats: well inside both the lease and the liveness timeout."""
    return max(1, min(settings.JOB_LEASE_SECONDS, settings.MINER_HEARTBEAT_TIMEOUT) // 3)


@extend_schema(tags=["client"], parameters=[JOB_ID])
class ClientJobViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [IsClient]
    rate_limit_group = "client"
    # Read by drf-spectacular to document the lists' cursor parameters and page shape.
    pagination_class = CursorPage

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY_HEADER],
        request=JobCreateSerializer,
        responses={
            201: JobSerializer,
            200: OpenApiResponse(
                JobSerializer, description="Replay of an earlier request with the same Idempotency-Key."
            ),
            **error_responses(400, 402, 409),
        },
    )
    def create(self, request: Request) -> Response:
        """Submit a job."""
        payload = JobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        idempotency_key = request.headers.get("Idempotency-Key", "").strip()[:255] or None
        job, created = job_submit(
            client=request.user,
            job_type=data["job_type"],
            parameters=data["parameters"],
            requirements=data.get("requirements") or {},
            priority=data["priority"],
            ttl_seconds=data.get("ttl_seconds"),
            max_attempts=data.get("max_attempts"),
            max_runtime_seconds=data.get("max_runtime_seconds"),
            max_price=data.get("max_price"),
            idempotency_key=idempotency_key,
            request_body=request.data,
        )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        parameters=[JobListQuerySerializer],
        responses={200: JobSerializer(many=True), **error_responses(400)},
    )
    def list(self, request: Request) -> Response:
        """The caller's jobs, newest first."""
        query = JobListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        jobs = selectors.jobs_for_client(client=request.user, **query.validated_data)
        paginator = CursorPage()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(parameters=[JobWaitQuerySerializer], responses={200: JobSerializer, **error_responses(400, 404)})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One of the caller's jobs; with `wait`, once it has ended (or changed) or the wait is over."""
        query = JobWaitQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = job_wait_for_client(
            job_id=pk,
            client=request.user,
            wait_seconds=query.validated_data["wait"],
            until_change=query.validated_data["wait_for"] == "change",
        )
        return Response(JobSerializer(job).data)

    @extend_schema(
        operation_id="client_jobs_status",
        parameters=[JobWaitQuerySerializer],
        responses={200: JobSerializer, **error_responses(400, 404)},
    )
    @action(detail=True, methods=["get"], url_path="status")
    def job_status(self, request: Request, pk: str) -> Response:
        """The job's status and progress (the same document as the job)."""
        return self.retrieve(request, pk)

    @extend_schema(request=None, responses={200: JobSerializer, **error_responses(404, 409)})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel a pending or running job; cancelling it again is harmless."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        return Response(JobSerializer(job_cancel(job=job)).data)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # An error answers in the JSON envelope, whatever stream the request asked for.
        if isinstance(response, Response) and isinstance(response.accepted_renderer, EventStreamRenderer):
            response.accepted_renderer, response.accepted_media_type = JSONRenderer(), JSON
        return response

    @extend_schema(
        parameters=[LAST_EVENT_ID_HEADER],
        responses={
            (200, JSON): JobEventSerializer(many=True),
            (200, EVENT_STREAM): event_stream_document(
                "`status` events, each a timeline entry, its `id` its position", names=["status"]
            ),
            204: STREAM_FINISHED,
            **error_responses(400, 404),
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, EventStreamRenderer])
    def events(self, request: Request, pk: str) -> Any:
        """The job's timeline: every status change, oldest first. Asked for `text/event-stream`, the timeline as
        Server-Sent Events, live, from after `Last-Event-ID` (a position), ending after the terminal event;
        resuming after that event is answered 204."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        if wants_event_stream(request):
            position = timeline_position(request.headers.get("Last-Event-ID"))
            if timeline_finished(job=job, position=position):
                return Response(status=status.HTTP_204_NO_CONTENT)
            return event_stream_response(timeline_stream(job=job, position=position))
        paginator = OldestFirstCursorPage()
        page = selectors.with_timeline_positions(
            paginator.paginate_queryset(selectors.job_events(job=job), request, view=self)
        )
        return paginator.get_paginated_response(JobEventSerializer(page, many=True).data)

    @extend_schema(
        parameters=[LAST_EVENT_ID_HEADER],
        responses={
            (200, JSON): JobOutputChunkSerializer(many=True),
            (200, EVENT_STREAM): event_stream_document(
                "`output` events (a chunk, `id` its position), `reset` (`id` reset-<attempt>), then `end` (`id` end)",
                names=["output", "reset", "end"],
            ),
            204: STREAM_FINISHED,
            **error_responses(400, 404),
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, EventStreamRenderer])
    def stream(self, request: Request, pk: str) -> Any:
        """The job's partial output so far, every attempt's chunks in order. An attempt that ended without a result
        is superseded by the next attempt's chunks. Asked for `text/event-stream`, the output live as Server-Sent
        Events (`output`, `reset` naming an attempt whose chunks are void, then `end`), from after `Last-Event-ID`;
        resuming after `end` is answered 204."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        if wants_event_stream(request):
            cursor = output_cursor(job, request.headers.get("Last-Event-ID"))
            if cursor is None:
                return Response(status=status.HTTP_204_NO_CONTENT)
            return event_stream_response(output_stream(job=job, cursor=cursor))
        paginator = OutputCursorPage()
        page = paginator.paginate_queryset(selectors.output_chunks(job=job), request, view=self)
        return paginator.get_paginated_response(JobOutputChunkSerializer(page, many=True).data)

    @extend_schema(responses={200: ReceiptSerializer(many=True), **error_responses(400, 404)})
    @action(detail=True, methods=["get"])
    def receipts(self, request: Request, pk: str) -> Response:
        """The job's signed receipts, one per posted result, oldest first."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        paginator = ReceiptCursorPage()
        page = paginator.paginate_queryset(receipts_for_job(job_id=job.pk), request, view=self)
        return paginator.get_paginated_response([receipt_document(receipt) for receipt in page])


@extend_schema(tags=["miner"])
class MinerJobViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [IsMiner]
    rate_limit_group = "miner"

    # A poll hands out jobs: answered to HEAD, it would lease them to a caller that never sees which. DRF answers
    # HEAD with the GET handler on every route, so it is refused here, before authentication or counting.
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if request.method == "HEAD":
            raise exceptions.MethodNotAllowed("HEAD")
        super().initial(request, *args, **kwargs)

    @property
    def allowed_methods(self) -> list[str]:
        return [method for method in super().allowed_methods if method != "HEAD"]

    @extend_schema(
        operation_id="miner_jobs_poll",
        parameters=[PollQuerySerializer],
        responses={200: PollResponseSerializer, **error_responses(400, 404)},
    )
    @action(detail=False, methods=["get"], url_path="jobs")
    def poll(self, request: Request) -> Response:
        """Take up to `limit` pending jobs this miner can run; each becomes running under a lease. With `wait`, a
        miner that would get none waits until one it may take is submitted (or the wait ends), and needs no
        heartbeat meanwhile unless it holds jobs."""
        query = PollQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        miner = miner_get_working(miner_id=query.validated_data["miner_id"], owner=request.user)
        claim = job_claim_waiting(
            miner=miner,
            limit=query.validated_data["limit"],
            document=AssignmentSerializer().to_representation,
            wait_seconds=query.validated_data["wait"],
        )
        body: dict[str, Any] = {"results": claim.documents}
        if claim.reason is not None:
            body["reason"] = claim.reason
            body["retry_after"] = RETRY_AFTER_SECONDS.get(claim.reason, heartbeat_interval())
        return Response(body)

    @extend_schema(
        operation_id="miner_result",
        request=ResultSerializer,
        responses={200: ResultResponseSerializer, **error_responses(400, 404, 409)},
    )
    @action(detail=False, methods=["post"])
    def result(self, request: Request) -> Response:
        """Post the result (or failure) of a job this miner holds."""
        payload = ResultSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        job, receipt = job_submit_result(
            miner_id=data["miner_id"],
            owner=request.user,
            job_id=data["job_id"],
            status=data["status"],
            result=data.get("result"),
            error=data.get("error"),
            metrics=data.get("metrics"),
            retryable=data["retryable"],
        )
        return Response({"job": JobSerializer(job).data, "receipt": receipt_document(receipt)})

    @extend_schema(
        operation_id="miner_job_output",
        parameters=[JOB_ID],
        request=JobOutputSerializer,
        responses={200: OutputPostedSerializer, **error_responses(400, 404, 409, 413)},
    )
    @action(detail=False, methods=["post"], url_path=r"jobs/(?P<pk>[^/.]+)/output")
    def output(self, request: Request, pk: str) -> Response:
        """Post partial output of a job this miner holds: chunks with consecutive seqs, from 0 per attempt."""
        payload = JobOutputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        posted = job_post_output(miner_id=data["miner_id"], owner=request.user, job_id=pk, chunks=data["chunks"])
        return Response(OutputPostedSerializer(posted).data)

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
        beat = miner_heartbeat(miner=miner, status=data.get("status"), jobs=data.get("jobs"))
        extra = {
            "held_jobs": [str(job_id) for job_id in beat.held_jobs],
            "cancelled_jobs": [str(job_id) for job_id in beat.cancelled_jobs],
            "heartbeat_interval": heartbeat_interval(),
        }
        return Response(HeartbeatResponseSerializer((beat.miner, extra)).data)


@extend_schema(tags=["client"])
class JobTypeViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    rate_limit_group = "client"
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(responses={200: JobTypeListSerializer})
    def list(self, request: Request) -> Response:
        """The job types this coordinator runs, with their current prices (one page: the list is short)."""
        prices = [{"job_type": price.job_type, "price": price.price} for price in selectors.job_type_prices()]
        return Response({"results": JobTypeSerializer(prices, many=True).data, "next": None, "previous": None})
