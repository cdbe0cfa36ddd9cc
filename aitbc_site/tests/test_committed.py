"""The after-commit hook: subscribers hear of stored events only once their transaction commits."""

from collections.abc import Iterator, Sequence

import pytest
from django.db import transaction

from aitbc_site import committed


@pytest.fixture
def heard() -> Iterator[list[tuple[object, ...]]]:
    batches: list[tuple[object, ...]] = []

    def listener(events: Sequence[object]) -> None:
        batches.append(tuple(events))

    committed.subscribe(listener)
    yield batches
    committed.unsubscribe(listener)


@pytest.mark.django_db(transaction=True)
def test_subscribers_hear_events_after_commit_in_order(heard):
    with transaction.atomic():
        committed.stored(["a", "b"])
        committed.stored(["c"])
        assert heard == []
    assert heard == [("a", "b"), ("c",)]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_tells_nobody(heard):
    with pytest.raises(RuntimeError), transaction.atomic():
        committed.stored(["lost"])
        raise RuntimeError("the change fails")
    assert heard == []


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_subscribers_hear_at_once(heard):
    committed.stored(["now"])
    assert heard == [("now",)]


@pytest.mark.django_db(transaction=True)
def test_a_failing_subscriber_does_not_silence_the_others(heard, caplog):
    def broken(events: Sequence[object]) -> None:
        raise ValueError("subscriber bug")

    committed.subscribe(broken)
    try:
        with transaction.atomic():
            committed.stored(["x"])
    finally:
        committed.unsubscribe(broken)
    assert heard == [("x",)]
    assert "subscriber to committed events failed" in caplog.text


def test_nothing_is_registered_without_subscribers():
    # No database access is allowed here: stored() with no subscriber must not touch the connection.
    committed.stored(["unheard"])
