"""The one way a job's status changes: `transition`, a compare-and-set that stores the change as an event.

Only the services of this package call it. It moves no money: a caller that ends a job calls
`settlement.settle` next to it, in the same transaction.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction

from aitbc_site import committed
from jobs import queries
from jobs.models import JOB_TRANSITIONS, Job, JobEvent

SYSTEM = "system"
CLIENT = "client"


def miner_actor(miner_id: UUID) -> str:
    return f"miner:{miner_id}"


def operator_actor(name: str) -> str:
    return f"operator:{name}"


def transition(
    *,
    job_id: UUID,
    expected: str,
    new: str,
    actor: str,
    reason: str,
    now: datetime,
    job: Job | None = None,
    expected_handouts: int | None = None,
    events: list[JobEvent] | None = None,
    **fields: Any,
) -> bool:
    """Move a job from `expected` to `new` if, and only if, it is still in `expected`; record the event.

    Returns False when another request changed the job first: of two racing callers exactly one changes the row,
    on every database. `expected_handouts` narrows it to one hand-out: a job requeued and handed to another miner
    since it was read is `running` again, but not the same attempt. A caller holding the job's instance passes it
    as `job`: it then gets the written fields, so nobody reads the row back. A caller moving many jobs in one
    transaction passes `events`: the event is added to it, and the caller stores them all with `record_events`
    before the transaction ends.
    """
    if (expected, new) not in JOB_TRANSITIONS:
        raise ValueError(f"illegal job transition {expected} → {new}")
    # No savepoint of its own: nothing here recovers from a failed statement, so an error must end the caller's
    # whole transaction anyway, and a savepoint per change is a large share of a hand-out's statements.
    with transaction.atomic(savepoint=False):
        values = {"status": new, "updated_at": now, **fields}
        if not queries.change_status(
            job_id=job_id, expected=expected, expected_handouts=expected_handouts, values=values
        ):
            return False
        event = JobEvent(job_id=job_id, at=now, from_status=expected, to_status=new, actor=actor, reason=reason)
        if events is None:
            record_events([event])
        else:
            events.append(event)
    if job is not None:
        job.status, job.updated_at = new, now
        for name, value in fields.items():
            setattr(job, name, value)
    return True


def record_events(events: list[JobEvent]) -> None:
    """Store status changes' events in the current transaction, and hand them to the after-commit hook."""
    queries.insert_events(events)
    committed.stored(events)
