"""The one place where code runs after a state change a user could be told about has committed.

Every such change is written as a stored event (a job's `JobEvent`, a payment's `PaymentEvent`) in the same
transaction as the change itself. The code that stores events then calls `stored(events)`: once that transaction
commits, each subscriber is called with them, in the order they were stored. A transaction that rolls back calls
nobody, so a subscriber never hears of a change that did not happen. Webhooks and live streams attach here.

A subscriber runs in the request that made the change, after its commit: it must be quick and must not raise into
that request (an exception is logged and the next subscriber still runs). Work that may be slow or fail (an HTTP
call) belongs in a queue the subscriber fills, not in the subscriber itself.
"""

import logging
from collections.abc import Callable, Sequence
from functools import partial

from django.db import transaction

logger = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[object]], None]

_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call `subscriber` with every batch of events whose transaction commits from now on."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def stored(events: Sequence[object]) -> None:
    """Hand `events`, just written in the current transaction, to the subscribers once it commits.

    Called outside a transaction (autocommit), the events are already committed and subscribers run at once.
    With no subscribers nothing is registered at all, so the hot path pays one truth test.
    """
    if not _subscribers or not events:
        return
    transaction.on_commit(partial(_deliver, tuple(events)))


def _deliver(events: tuple[object, ...]) -> None:
    for subscriber in list(_subscribers):
        try:
            subscriber(events)
        except Exception:
            # The change is committed whatever a subscriber does; one failing must not hide it from the others.
            logger.exception("A subscriber to committed events failed: %r", subscriber)
