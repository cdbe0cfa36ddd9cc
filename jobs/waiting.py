"""Waiting on jobs: a miner's long-poll and a client waiting for its job to change, on `aitbc_site.wakeups`.

What wakes a waiter is in `jobs.topics`.

A waiter registers, then looks at the database, then sleeps until woken or its time is up, and looks again: the
hand-out stays the one compare-and-set of `job_claim`, so of two woken miners one gets the job and the other goes
back to sleep. Before sleeping it gives back its database connection.
"""

import time
from uuid import UUID

from django.conf import settings

from accounts.models import User
from aitbc_site import wakeups
from jobs import selectors
from jobs.models import TERMINAL_STATUSES, Job
from jobs.selectors import effective_status
from jobs.services.handout import ClaimResult, job_claim
from jobs.services.unrenderable import Document
from jobs.topics import job_topic, pending_topic
from miners.models import Miner


def effective_wait(seconds: float) -> float:
    """How long a request asking for `seconds` waits: at most LONG_POLL_MAX_SECONDS (a gate shortens it), and well
    inside the miner liveness timeout, so a miner that only waits is never taken for gone."""
    return max(0.0, min(seconds, settings.LONG_POLL_MAX_SECONDS, settings.MINER_HEARTBEAT_TIMEOUT / 3))


def job_claim_waiting(*, miner: Miner, limit: int, document: Document, wait_seconds: float) -> ClaimResult:
    """`job_claim`, and if it found no job the miner may take, wait up to `wait_seconds` for one."""
    wait = effective_wait(wait_seconds)
    if wait <= 0:
        return job_claim(miner=miner, limit=limit, document=document)
    deadline = time.monotonic() + wait
    with wakeups.listening([pending_topic(job_type) for job_type in miner.capabilities]) as waiter:
        while True:
            claim = job_claim(miner=miner, limit=limit, document=document, look_first=True)
            remaining = deadline - time.monotonic()
            if claim.reason != "no_matching_jobs" or remaining <= 0 or wakeups.stopping():
                return claim
            wakeups.release_connections()
            if not waiter.wait(remaining):
                # Nothing came: no need to look again (a job that did would have woken the waiter). A job whose
                # retry back-off ended meanwhile wakes nobody; the miner's next poll finds it.
                return claim
            # Woken: an operator may have drained or changed the miner meanwhile.
            miner.refresh_from_db(fields=["status", "max_concurrent_jobs", "resources", "last_heartbeat"])


def job_wait_for_client(*, job_id: UUID | str, client: User, wait_seconds: float, until_change: bool) -> Job:
    """The client's job, once it has ended (or, `until_change`, its status is no longer what it was when asked)
    or `wait_seconds` have passed."""
    job = selectors.job_get_for_client(job_id=job_id, client=client)
    wait = effective_wait(wait_seconds)
    if wait <= 0 or effective_status(job) in TERMINAL_STATUSES:
        return job
    asked_in = job.status
    deadline = time.monotonic() + wait
    with wakeups.listening([job_topic(job.pk)]) as waiter:
        while True:
            # Read after registering: a change committed since the first read has woken the waiter already.
            job = selectors.job_get_for_client(job_id=job.pk, client=client)
            remaining = deadline - time.monotonic()
            ended = effective_status(job) in TERMINAL_STATUSES or (until_change and job.status != asked_in)
            if ended or remaining <= 0 or wakeups.stopping():
                return job
            wakeups.release_connections()
            waiter.wait(remaining)
