"""What a change to jobs wakes (`aitbc_site.wakeups`): `pending:<job type>` when a job of that type becomes pending
(submitted or requeued), for the miners waiting in a long-poll; `job:<id>` when a job changes (an event of its
timeline, or new output), for its client waiting or streaming. Each is published after the change commits."""

from collections.abc import Sequence
from uuid import UUID

from aitbc_site import committed, wakeups
from jobs import queries
from jobs.models import JobEvent, JobStatus


def pending_topic(job_type: str) -> str:
    return f"pending:{job_type}"


def job_topic(job_id: UUID | str) -> str:
    return f"job:{job_id}"


def publish_submitted(*, job_type: str) -> None:
    """A job of `job_type` is being created: wake the miners waiting for that type once it commits."""
    wakeups.publish_on_commit([pending_topic(job_type)])


def publish_output(*, job_id: UUID) -> None:
    """The job's output grew: wake its stream's readers once the chunks commit."""
    wakeups.publish_on_commit([job_topic(job_id)])


def publish_job_changes(events: Sequence[object]) -> None:
    """The committed-events subscriber: wake whoever waits on these jobs, and the miners that could take the ones
    that became pending again."""
    job_events = [event for event in events if isinstance(event, JobEvent)]
    if not job_events:
        return
    topics = {job_topic(event.job_id) for event in job_events}
    requeued = [event.job_id for event in job_events if event.to_status == JobStatus.PENDING]
    if requeued:
        topics.update(pending_topic(job_type) for job_type in queries.job_types_of(job_ids=requeued))
    wakeups.publish(topics)


def subscribe() -> None:
    committed.subscribe(publish_job_changes)
