"""Jobs whose document no answer could carry (values stored before input was strict): failed, not handed out.

A poll that meets one sets it aside (see `handout`); `quarantine_unrenderable_jobs` finds the rest ahead of time.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from aitbc_site import rendering
from jobs.models import Job, JobEvent, JobStatus
from jobs.selectors import effective_status
from jobs.services.leases import end_attempt_as_cancelled
from jobs.services.settlement import settle
from jobs.services.transitions import SYSTEM, transition

UNRENDERABLE_JOB = "UNRENDERABLE_JOB"

# What a poll answers for a job it hands out (the view's AssignmentSerializer document).
Document = Callable[[Job], Any]


def set_aside_unrenderable(
    *,
    job_id: UUID,
    expected: str,
    problem: rendering.Unrenderable,
    now: datetime,
    reason: str,
    events: list[JobEvent] | None = None,
    expected_handouts: int | None = None,
) -> bool:
    """Fail a pending or running job whose document cannot be rendered, releasing its hold. False if the job
    changed first."""
    where = f" ({', '.join(problem.fields)})" if problem.fields else ""
    with transaction.atomic(savepoint=False):
        failed = transition(
            job_id=job_id,
            expected=expected,
            new=JobStatus.FAILED,
            actor=SYSTEM,
            reason=f"{reason}: {problem.reason}{where}",
            now=now,
            events=events,
            expected_handouts=expected_handouts,
            completed_at=now,
            lease_expires_at=None,
            error={
                "code": UNRENDERABLE_JOB,
                "message": (
                    f"The job's document cannot be rendered as JSON, so no miner is handed it: {problem.reason}."
                ),
                "details": {"fields": problem.fields},
            },
        )
        if failed:
            settle(job=Job.objects.get(pk=job_id), end=JobStatus.FAILED)
    return failed


@dataclass
class UnrenderableJob:
    job_id: UUID
    # As it read when found (the effective status: a pending job past its deadline reads expired).
    status: str
    problem: str
    # "set_aside", "would_set_aside" (a dry run), "left" (already ended: reads answer it with the values replaced),
    # "already_set_aside", or "changed" (it moved while being set aside; a run again judges it anew).
    action: str


def quarantine_unrenderable_jobs(
    *, document: Document, dry_run: bool = False, chunk_size: int = 500
) -> list[UnrenderableJob]:
    """Find stored jobs whose `document` cannot be rendered; fail the pending and running ones as a poll would."""
    found: list[UnrenderableJob] = []
    after: UUID | None = None
    while True:
        # Through the primary key in chunks: the table may be large, and setting jobs aside changes no key.
        chunk = Job.objects.order_by("pk")
        if after is not None:
            chunk = chunk.filter(pk__gt=after)
        jobs = list(chunk[:chunk_size])
        if not jobs:
            return found
        after = jobs[-1].pk
        for job in jobs:
            try:
                rendering.render(document(job))
            except rendering.Unrenderable as problem:
                found.append(_quarantine(job=job, problem=problem, dry_run=dry_run))


def _quarantine(*, job: Job, problem: rendering.Unrenderable, dry_run: bool) -> UnrenderableJob:
    status = effective_status(job)
    found = UnrenderableJob(
        job_id=job.pk,
        status=status,
        problem=problem.reason + (f" ({', '.join(problem.fields)})" if problem.fields else ""),
        action="would_set_aside" if dry_run else "set_aside",
    )
    if status not in (JobStatus.PENDING, JobStatus.RUNNING):
        # An ended job keeps what it stored (a completed one was paid for and its receipt signed).
        already = isinstance(job.error, dict) and job.error.get("code") == UNRENDERABLE_JOB
        found.action = "already_set_aside" if already else "left"
        return found
    if dry_run:
        return found
    now = timezone.now()
    with transaction.atomic():
        moved = set_aside_unrenderable(
            job_id=job.pk,
            expected=status,
            expected_handouts=job.handouts,
            problem=problem,
            now=now,
            reason="quarantine_unrenderable_jobs found that its document cannot be rendered",
        )
        if moved and status == JobStatus.RUNNING:
            end_attempt_as_cancelled(job=job, now=now)
    if not moved:
        found.action = "changed"
    return found
