"""The after-commit hook: subscribers hear of stored events only once their transaction commits."""

from collections.abc import Sequence

import pytest
from django.db import transaction

from aitbc_site import committed
from jobs import topics


@pytest.mark.django_db(transaction=True)
def test_subscribers_hear_events_after_commit_in_order(committed_batches):
    with transaction.atomic():
        committed.stored(["a", "b"])
        committed.stored(["c"])
        assert committed_batches == []
    assert committed_batches == [("a", "b"), ("c",)]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_tells_nobody(committed_batches):
    with pytest.raises(RuntimeError), transaction.atomic():
        committed.stored(["lost"])
        raise RuntimeError("the change fails")
    assert committed_batches == []


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_subscribers_hear_at_once(committed_batches):
    committed.stored(["now"])
    assert committed_batches == [("now",)]


@pytest.mark.django_db(transaction=True)
def test_a_failing_subscriber_does_not_silence_the_others(committed_batches, caplog):
    def broken(events: Sequence[object]) -> None:
        raise ValueError("subscriber bug")

    committed.subscribe(broken)
    try:
        with transaction.atomic():
            committed.stored(["x"])
    finally:
        committed.unsubscribe(broken)
    assert committed_batches == [("x",)]
    assert "subscriber to committed events failed" in caplog.text


def test_nothing_is_registered_without_subscribers():
    # No database access is allowed here: stored() with no subscriber must not touch the connection. The jobs
    # app's wake-ups subscribe at start; they are set aside for the test.
    committed.unsubscribe(topics.publish_job_changes)
    try:
        committed.stored(["unheard"])
    finally:
        topics.subscribe()
