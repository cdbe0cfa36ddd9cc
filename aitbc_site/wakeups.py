"""Wake-ups: requests that wait (a miner's long-poll, a client waiting on its job or streaming it) sleep on an event
and are woken when something they wait for may have happened, in this worker or any other.

A waiter names the topics it waits for (`pending:<job type>`, `job:<id>`) and registers before it looks, so a change
committed between its look and its sleep still wakes it. A change publishes its topics after its transaction
commits: the waiters of this process are woken directly, and the channel (`wakeup_channels`) carries the topics to
every other worker, on this machine or another, which wakes its own. A wake-up only says "look again": a waiter
always re-reads the database, so a lost or spurious one costs at most a wait or a query, never a job.

Waiting is `threading.Event`, which gunicorn's gevent worker has patched into a greenlet's event: a thousand
waiters are a thousand small objects in one thread. The cost of a publish does not grow with the number of waiters,
only with the number of workers (one datagram or one NOTIFY to each).
"""

import logging
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from django.db import connections, transaction

from aitbc_site.env import serving_greenlets
from aitbc_site.metrics import WAITING_REQUESTS

logger = logging.getLogger(__name__)


class Waiter:
    """One waiting request's event."""

    __slots__ = ("_event", "topics")

    def __init__(self, topics: Collection[str]) -> None:
        self.topics = frozenset(topics)
        self._event = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds have passed; True if woken. A wake-up that came while the waiter
        was not sleeping (it was reading the database) is not lost: this returns at once."""
        woken = self._event.wait(max(0.0, timeout))
        self._event.clear()
        return woken

    def wake(self) -> None:
        self._event.set()


_lock = threading.Lock()
_waiters_by_topic: dict[str, set[Waiter]] = {}
_stopping = threading.Event()


@contextmanager
def listening(topics: Collection[str]) -> Iterator[Waiter]:
    """Register a waiter for `topics` for the duration of the block; look at the database inside it, then wait."""
    if serving_greenlets():
        # Only a server has other processes to hear from; a single process (tests, runserver) wakes its own.
        from aitbc_site.wakeup_channels import channel

        try:
            channel().listen(wake_local)
        except Exception:
            # Waiting still works: this worker's waiters then wake on their own workers' changes and their time.
            logger.exception("Could not listen for other workers' wake-ups")
    waiter = Waiter(topics)
    with _lock:
        for topic in waiter.topics:
            _waiters_by_topic.setdefault(topic, set()).add(waiter)
    WAITING_REQUESTS.inc()
    try:
        yield waiter
    finally:
        WAITING_REQUESTS.dec()
        with _lock:
            for topic in waiter.topics:
                waiters = _waiters_by_topic.get(topic)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del _waiters_by_topic[topic]


def stopping() -> bool:
    """Whether this worker is stopping: a waiting request should then answer at once with what it has."""
    return _stopping.is_set()


def end_all_waits() -> None:
    """The worker is stopping: every waiting request ends now (and any that starts waits no more)."""
    _stopping.set()
    with _lock:
        waiters = {waiter for group in _waiters_by_topic.values() for waiter in group}
    for waiter in waiters:
        waiter.wake()


def waiting_count() -> int:
    with _lock:
        return len({waiter for group in _waiters_by_topic.values() for waiter in group})


def wake_local(topics: Collection[str] | None) -> None:
    """Wake this process's waiters for any of `topics`; None wakes every waiter."""
    with _lock:
        if topics is None:
            waiters = [waiter for group in _waiters_by_topic.values() for waiter in group]
        else:
            waiters = [waiter for topic in topics for waiter in _waiters_by_topic.get(topic, ())]
    for waiter in waiters:
        waiter.wake()


def publish(topics: Collection[str]) -> None:
    """Wake the waiters for `topics` everywhere: call it once the change it announces is committed."""
    if not topics:
        return
    wake_local(topics)
    from aitbc_site.wakeup_channels import channel

    try:
        channel().send(topics)
    except Exception:
        # The change is committed; a wake-up that does not reach another worker only delays its waiters.
        logger.exception("Could not send wake-ups for %s", sorted(topics))


def publish_on_commit(topics: Collection[str]) -> None:
    """Publish `topics` when the current transaction commits (at once outside one); never if it rolls back."""
    transaction.on_commit(lambda: publish(topics))


def release_connections() -> None:
    """Give back this request's pooled database connection before it sleeps: a thousand waiters must not hold a
    thousand PostgreSQL connections. A SQLite connection is kept: it is a file handle and some memory (measured
    in bench/README.md), while reopening it (a file open and its PRAGMAs) would cost more CPU than the poll itself."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block and connection.vendor != "sqlite":
            connection.close()
