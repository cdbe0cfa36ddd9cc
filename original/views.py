"""The original AITBC dialect: the routes the original coordinator served and its tools call, over our services.

Views only translate: the request into our services' arguments (original/translation.py holds the tables), our
models into the original documents (original/serializers.py). Every rule (hand-out, leases, who may post a result,
pricing, receipts) is the services' own, so both dialects keep the same guarantees."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from aitbc_site.authentication import IsClient, IsMiner
from aitbc_site.openapi import error_responses
from aitbc_site.ratelimits import RateLimitedViewMixin
from jobs import selectors
from jobs.exceptions import JobNotFound
from jobs.models import TERMINAL_STATUSES, Job, JobStatus
from jobs.services.cancellation import job_cancel
from jobs.services.leases import miner_heartbeat
from jobs.services.results import job_submit_result
from jobs.services.submission import job_submit
from jobs.views import IDEMPOTENCY_KEY_HEADER, heartbeat_interval
from jobs.waiting import job_claim_waiting
from miners.selectors import miner_get_by_name, miner_latest_of_owner
from miners.services import miner_register
from original import serializers as original
from original.exceptions import JobNotFinished
from original.pagination import ItemsCursorPage
from original.translation import MINER_STATUS_OF_STATE, job_type_of, offered_job_types, requirements_of, resources_of
from receipts.exceptions import ReceiptNotFound
from receipts.models import Receipt
from receipts.selectors import receipts_for_job, receipts_in_chains
from receipts.serializers import ReceiptSerializer
from receipts.services import receipt_document

# The original tools' HTTP client gives up after 5 s (httpx's default): a poll waits less than that.
ORIGINAL_POLL_MAX_WAIT_SECONDS = 4
JOB_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")
HELD_JOB_ID = OpenApiParameter(
    "job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The id of the job this key's miner holds."
)
MINER_NAME = OpenApiParameter(
    "miner_id", str, OpenApiParameter.QUERY, required=True, description="The miner's name, chosen by its owner."
)


def _documents(jobs: list[Job]) -> list[dict[str, Any]]:
    names = selectors.miner_names(miner_ids={job.miner_id for job in jobs if job.miner_id is not None})
    return [original.job_document(job, miner_name=names.get(job.miner_id)) for job in jobs]


@extend_schema(tags=["original dialect"], parameters=[JOB_ID])
class OriginalJobViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [IsClient]
    rate_limit_group = "client"
    pagination_class = ItemsCursorPage

    @extend_schema(
        operation_id="original_jobs_create",
        parameters=[IDEMPOTENCY_KEY_HEADER],
        request=original.JobSubmitSerializer,
        responses={
            201: original.JobDocumentSerializer,
            200: OpenApiResponse(
                original.JobDocumentSerializer,
                description="Replay of an earlier request with the same Idempotency-Key.",
            ),
            **error_responses(400, 402, 409),
        },
    )
    def create(self, request: Request) -> Response:
        """Submit a job: `payload.type` names its type, the rest of `payload` is its input."""
        body = original.JobSubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        payload = dict(data["payload"])
        type_name = payload.pop("type")
        constraints = data.get("constraints") or {}
        job, created = job_submit(
            client=request.user,
            job_type=job_type_of([type_name])[0],
            original_type=type_name,
            parameters=payload,
            requirements=requirements_of(constraints),
            ttl_seconds=data.get("ttl_seconds"),
            max_price=constraints.get("max_price"),
            idempotency_key=request.headers.get("Idempotency-Key", "").strip()[:255] or None,
            request_body=request.data,
        )
        return Response(
            original.job_document(job, miner_name=None),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="original_jobs_list",
        parameters=[original.PageQuerySerializer],
        responses={200: original.JobDocumentSerializer(many=True), **error_responses(400)},
    )
    def list(self, request: Request) -> Response:
        """The caller's jobs, newest first."""
        original.PageQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
        paginator = ItemsCursorPage()
        page = paginator.paginate_queryset(selectors.jobs_for_client(client=request.user), request, view=self)
        return paginator.get_paginated_response(_documents(page))

    @extend_schema(
        operation_id="original_jobs_retrieve", responses={200: original.JobDocumentSerializer, **error_responses(404)}
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        """One of the caller's jobs."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        return Response(_documents([job])[0])

    @extend_schema(
        operation_id="original_jobs_cancel",
        request=None,
        responses={200: original.JobDocumentSerializer, **error_responses(404, 409)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel a queued or running job; cancelling it again is harmless."""
        job = job_cancel(job=selectors.job_get_for_client(job_id=pk, client=request.user))
        return Response(_documents([job])[0])

    @extend_schema(
        operation_id="original_jobs_result",
        responses={
            200: original.ResultAndReceiptSerializer,
            **error_responses(404, 425),
        },
    )
    @action(detail=True, methods=["get"])
    def result(self, request: Request, pk: str) -> Response:
        """The finished job's result with its latest receipt (none for a job that never ran)."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        if selectors.effective_status(job) not in TERMINAL_STATUSES:
            raise JobNotFinished(details={"state": original.state_of(job)})
        latest = receipts_for_job(job_id=job.pk).last()
        return Response({"result": job.result, "receipt": None if latest is None else receipt_document(latest)})

    @extend_schema(
        operation_id="original_jobs_receipt",
        responses={200: ReceiptSerializer, **error_responses(404)},
    )
    @action(detail=True, methods=["get"])
    def receipt(self, request: Request, pk: str) -> Response:
        """The job's latest signed receipt."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        latest = receipts_for_job(job_id=job.pk).last()
        if latest is None:
            raise ReceiptNotFound("This job has no receipt yet: no result was posted for it.")
        return Response(receipt_document(latest))

    @extend_schema(
        operation_id="original_jobs_receipts",
        responses={200: original.ReceiptListSerializer, **error_responses(404)},
    )
    @action(detail=True, methods=["get"])
    def receipts(self, request: Request, pk: str) -> Response:
        """Every signed receipt of the job, oldest first (one per posted result: a job has few)."""
        job = selectors.job_get_for_client(job_id=pk, client=request.user)
        return Response({"items": [receipt_document(receipt) for receipt in receipts_for_job(job_id=job.pk)]})


@extend_schema(tags=["original dialect"])
class OriginalMinerViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [IsMiner]
    rate_limit_group = "miner"
    lookup_url_kwarg = "job_id"

    @extend_schema(
        operation_id="original_miners_register",
        parameters=[MINER_NAME],
        request=original.OriginalMinerRegisterSerializer,
        responses={200: original.MinerRegisteredSerializer, **error_responses(400, 409)},
    )
    @action(detail=False, methods=["post"])
    def register(self, request: Request) -> Response:
        """Register the miner of this name, or update it: always 200, as the original tools expect."""
        query = original.MinerQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        body = original.OriginalMinerRegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        known = data["capabilities"]["known"]
        compute = known.get("compute", {})
        miner, created = miner_register(
            owner=request.user,
            name=query.validated_data["miner_id"],
            capabilities=offered_job_types(compute.get("supported_tasks") or []),
            resources=resources_of(known, region=data.get("region")),
            max_concurrent_jobs=data.get("concurrency") or compute.get("max_concurrent_jobs") or 1,
            reported={"capabilities": data["capabilities"]["reported"]},
        )
        return Response(
            {
                "status": "ok",
                "miner_id": miner.name,
                "id": str(miner.pk),
                "job_types": miner.capabilities,
                "created": created,
            }
        )

    @extend_schema(
        operation_id="original_miners_heartbeat",
        parameters=[MINER_NAME],
        request=original.OriginalHeartbeatSerializer,
        responses={200: original.HeartbeatAnswerSerializer, **error_responses(400, 403, 404)},
    )
    @action(detail=False, methods=["post"])
    def heartbeat(self, request: Request) -> Response:
        """A sign of life. `inflight: 0` releases the jobs the coordinator thinks this miner holds (back to the
        queue, no attempt counted); otherwise its leases are renewed."""
        query = original.MinerQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        body = original.OriginalHeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        miner = miner_get_by_name(name=query.validated_data["miner_id"], owner=request.user)
        beat = miner_heartbeat(
            miner=miner,
            status=MINER_STATUS_OF_STATE[data["status"]],
            jobs=[] if data.get("inflight") == 0 else None,
            reported={"heartbeat": data["metadata"]} if "metadata" in data else None,
        )
        return Response(
            {
                "status": "ok",
                "held_jobs": [str(job_id) for job_id in beat.held_jobs],
                "cancelled_jobs": [str(job_id) for job_id in beat.cancelled_jobs],
                "heartbeat_interval": heartbeat_interval(),
            }
        )

    @extend_schema(
        operation_id="original_miners_poll",
        request=original.PollSerializer,
        responses={
            200: original.OriginalAssignmentSerializer,
            204: OpenApiResponse(description="Nothing this miner may take now."),
            **error_responses(400, 403, 404),
        },
    )
    @action(detail=False, methods=["post"])
    def poll(self, request: Request) -> Response:
        """Take one job, for the key's miner that registered or showed a sign of life last; with
        `max_wait_seconds`, wait (up to 4 s) for one when none is pending."""
        body = original.PollSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        miner = miner_latest_of_owner(owner=request.user)
        claim = job_claim_waiting(
            miner=miner,
            limit=1,
            document=original.OriginalAssignmentSerializer().to_representation,
            wait_seconds=min(body.validated_data.get("max_wait_seconds", 0), ORIGINAL_POLL_MAX_WAIT_SECONDS),
        )
        if not claim.documents:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(claim.documents[0])

    def _post(self, request: Request, job_id: str, **report: Any) -> Response:
        miner_id = selectors.attempt_miner_of_owner(job_id=job_id, owner=request.user)
        if miner_id is None:
            raise JobNotFound("None of this API key's miners was handed that job.")
        job, receipt = job_submit_result(miner_id=miner_id, owner=request.user, job_id=job_id, **report)
        return Response(_result_answer(job, receipt))

    @extend_schema(
        operation_id="original_miners_result",
        parameters=[HELD_JOB_ID],
        request=original.OriginalResultSerializer,
        responses={200: original.ResultAnswerSerializer, **error_responses(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def result(self, request: Request, job_id: str) -> Response:
        """Post the result of a job this key's miner holds."""
        body = original.OriginalResultSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._post(
            request,
            job_id,
            status=JobStatus.COMPLETED,
            result=body.validated_data["result"],
            metrics=body.validated_data.get("metrics"),
        )

    @extend_schema(
        operation_id="original_miners_fail",
        parameters=[HELD_JOB_ID],
        request=original.FailSerializer,
        responses={200: original.ResultAnswerSerializer, **error_responses(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def fail(self, request: Request, job_id: str) -> Response:
        """Report that a held job failed; it is tried again (on another miner first) while attempts remain."""
        body = original.FailSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        return self._post(
            request,
            job_id,
            status=JobStatus.FAILED,
            error={"code": data["error_code"], "message": data["error_message"]},
            metrics=data.get("metrics"),
            retryable=True,
        )


def _result_answer(job: Job, receipt: Receipt) -> dict[str, Any]:
    return {
        "job_id": str(job.pk),
        "state": original.state_of(job),
        "receipt": receipt_document(receipt),
    }


NO_CHAIN_NOTE = (
    "This coordinator runs no blockchain: there are no blocks or transactions. Each miner's signed receipts form "
    "a hash chain instead: GET /v1/explorer/receipts."
)


@extend_schema(tags=["original dialect"])
class ExplorerViewSet(RateLimitedViewMixin, viewsets.ViewSet):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    rate_limit_group = "explorer"
    pagination_class = ItemsCursorPage

    @extend_schema(
        operation_id="explorer_receipts",
        parameters=[original.ExplorerQuerySerializer],
        responses={200: original.ExplorerReceiptSerializer(many=True), **error_responses(400)},
    )
    @action(detail=False, methods=["get"])
    def receipts(self, request: Request) -> Response:
        """Public, newest first: each receipt's chain facts (no client, input or result), so anyone can check that a
        miner's chain is unbroken and a client that its own receipts sit in it."""
        query = original.ExplorerQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        receipts = receipts_in_chains(
            miner_id=query.validated_data.get("miner_id"), job_id=query.validated_data.get("job_id")
        )
        paginator = ItemsCursorPage()
        page = paginator.paginate_queryset(receipts, request, view=self)
        return paginator.get_paginated_response(original.ExplorerReceiptSerializer(page, many=True).data)

    @extend_schema(operation_id="explorer_blocks", responses={200: original.EmptyFeedSerializer})
    @action(detail=False, methods=["get"])
    def blocks(self, request: Request) -> Response:
        """Always empty: this coordinator runs no chain (see the note)."""
        return Response({"items": [], "note": NO_CHAIN_NOTE})

    @extend_schema(operation_id="explorer_transactions", responses={200: original.EmptyFeedSerializer})
    @action(detail=False, methods=["get"])
    def transactions(self, request: Request) -> Response:
        """Always empty: this coordinator runs no chain (see the note)."""
        return Response({"items": [], "note": NO_CHAIN_NOTE})
