"""The hand-written statements store and read back exactly what the ORM does, on SQLite and on PostgreSQL."""

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, transaction
from django.db.models.signals import post_init
from django.db.transaction import TransactionManagementError
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Posting, PostingKind
from aitbc_site import statements
from jobs.models import Job, JobStatus
from jobs.tests.factories import make_job, make_miner, make_user

pytestmark = pytest.mark.django_db

JOBS = statements.Columns(Job, alias="j")


def every_field(job: Job) -> dict[str, object]:
    return {field.attname: getattr(job, field.attname) for field in Job._meta.concrete_fields}


def job_row(job_id: object) -> tuple[object, ...]:
    row = statements.fetch_one(
        f"SELECT {JOBS.sql} FROM {statements.table(Job)} j WHERE j.{statements.column(Job, 'id')} = %s",
        [statements.db_value(Job, "id", job_id)],
    )
    assert row is not None
    return row


def read_back(job_id: object) -> Job:
    return JOBS.load(job_row(job_id))


def a_job_with_every_kind_of_value() -> Job:
    now = timezone.now()
    return Job(
        client=make_user(),
        job_type="llm_inference",
        parameters={"prompt": "ünïcode ✓", "nested": {"list": [1, 2.5, None, True]}},
        requirements={"min_gpu_memory_gb": 24},
        req_min_gpu_memory_gb=24.0,
        req_gpu_model=None,
        priority=7,
        status=JobStatus.PENDING,
        max_attempts=3,
        max_runtime_seconds=600,
        created_at=now,
        updated_at=now,
        not_before=now,
        expires_at=now + timedelta(hours=1),
        price=Decimal("12.34567891"),
        billed=True,
        idempotency_key="key-1",
        idempotency_request={"job_type": "llm_inference"},
    )


def test_a_row_inserted_by_hand_reads_back_through_the_orm_unchanged() -> None:
    job = a_job_with_every_kind_of_value()

    statements.insert([job])

    assert every_field(Job.objects.get(pk=job.pk)) == every_field(job)
    assert not job._state.adding


def test_a_row_read_by_hand_equals_the_one_the_orm_reads() -> None:
    job = make_job(miner=make_miner(), status=JobStatus.RUNNING, result={"text": "hi"}, price=Decimal("0.1"))

    loaded = read_back(job.pk)

    assert every_field(loaded) == every_field(Job.objects.get(pk=job.pk))
    assert model_to_dict(loaded) == model_to_dict(Job.objects.get(pk=job.pk))


def test_a_loaded_instance_holds_the_state_the_orm_gives_one() -> None:
    job = make_job(miner=make_miner(), status=JobStatus.RUNNING)

    loaded, from_orm = read_back(job.pk), Job.objects.get(pk=job.pk)

    assert vars(loaded).keys() == vars(from_orm).keys()
    assert (loaded._state.adding, loaded._state.db) == (from_orm._state.adding, from_orm._state.db)
    assert (loaded._state.adding, loaded._state.db) == (False, "default")
    assert loaded == from_orm and loaded.get_deferred_fields() == set()


def test_instances_are_built_by_the_model_while_a_signal_listens_for_it() -> None:
    job = make_job()
    initialised: list[Job] = []

    def record(sender: type[Job], instance: Job, **kwargs: Any) -> None:
        initialised.append(instance)

    post_init.connect(record, sender=Job)
    try:
        loaded = read_back(job.pk)
    finally:
        post_init.disconnect(record, sender=Job)

    assert initialised == [loaded] and every_field(loaded) == every_field(job)


def test_some_columns_make_an_instance_with_the_rest_deferred() -> None:
    job = make_job()
    columns = statements.Columns(Job, ("status", "id"), alias="j")

    row = statements.fetch_one(
        f"SELECT {columns.sql} FROM {statements.table(Job)} j WHERE j.{statements.column(Job, 'id')} = %s",
        [statements.db_value(Job, "id", job.pk)],
    )
    loaded = columns.load(row)

    assert (loaded.pk, loaded.status) == (job.pk, JobStatus.PENDING)
    assert loaded.get_deferred_fields() == {field.attname for field in Job._meta.concrete_fields} - {"id", "status"}
    assert loaded.parameters == job.parameters


def test_update_changes_only_rows_matching_every_condition_and_none_means_is_null() -> None:
    miner = make_miner()
    job = make_job()
    now = timezone.now()

    assert statements.update(Job, where={"id": job.pk, "status": JobStatus.RUNNING}, values={"priority": 9}) == 0
    assert statements.update(Job, where={"id": job.pk, "miner": None}, values={"miner": miner, "started_at": now}) == 1
    assert statements.update(Job, where={"id": job.pk, "miner": None}, values={"priority": 9}) == 0

    job.refresh_from_db()
    assert (job.miner_id, job.started_at, job.priority) == (miner.pk, now, 0)


def test_a_json_null_and_sql_null_stay_apart() -> None:
    job = make_job(result={"kept": True})

    statements.update(Job, where={"id": job.pk}, values={"result": None, "parameters": {"x": None}})

    job.refresh_from_db()
    assert (job.result, job.parameters) == (None, {"x": None})


def test_insert_returning_pk_numbers_the_row_and_a_conflict_inserts_nothing() -> None:
    now = timezone.now()
    first = Posting(reference="ref-1", kind=PostingKind.DEPOSIT, created_at=now)
    again = Posting(reference="ref-1", kind=PostingKind.ADJUSTMENT, created_at=now)

    assert statements.insert_returning_pk(first, on_conflict_do_nothing=("reference",)) is True
    assert statements.insert_returning_pk(again, on_conflict_do_nothing=("reference",)) is False

    assert first.pk is not None and again.pk is None
    assert list(Posting.objects.values_list("pk", "kind")) == [(first.pk, PostingKind.DEPOSIT)]


def test_a_statement_breaking_a_constraint_raises_djangos_integrity_error() -> None:
    posting = Posting(reference="twice", kind=PostingKind.DEPOSIT, created_at=timezone.now())
    statements.insert([posting])

    with pytest.raises(IntegrityError), transaction.atomic():
        statements.insert([Posting(reference="twice", kind=PostingKind.DEPOSIT, created_at=timezone.now())])


def test_no_statement_runs_in_a_transaction_an_error_has_broken() -> None:
    with transaction.atomic():
        with pytest.raises(IntegrityError), transaction.atomic(savepoint=False):
            statements.insert([Posting(reference="p", kind=PostingKind.DEPOSIT, created_at=timezone.now())] * 2)

        with pytest.raises(TransactionManagementError):
            statements.fetch_one(f"SELECT COUNT(*) FROM {statements.table(Posting)}", [])


def test_statements_are_reported_to_whoever_watches_the_queries() -> None:
    job = make_job()

    with CaptureQueriesContext(connection) as captured:
        read_back(job.pk)
        statements.update(Job, where={"id": job.pk}, values={"priority": 3})

    assert [query["sql"].split()[0] for query in captured.captured_queries] == ["SELECT", "UPDATE"]
    seen: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        read_back(job.pk)

    assert len(seen) == 1 and seen[0].startswith("SELECT")


def test_each_thread_runs_its_statements_on_the_connection_django_gives_it() -> None:
    statements.fetch_one("SELECT 1", [])
    main_threads = connections["default"]
    opened_in_thread: list[bool] = []

    def run_one_statement() -> None:
        try:
            statements.fetch_one("SELECT 1", [])
            own = connections["default"]
            opened_in_thread.append(own is not main_threads and own.connection is not None)
        finally:
            connections.close_all()

    worker = threading.Thread(target=run_one_statement)
    worker.start()
    worker.join(timeout=10)

    assert opened_in_thread == [True]
    assert statements.fetch_one("SELECT 1", []) == (1,)


def test_a_row_without_the_columns_asked_for_is_refused() -> None:
    row = job_row(make_job().pk)

    with pytest.raises(ValueError, match=r"no \d+ columns"):
        JOBS.load(row[:-1])
    with pytest.raises(ValueError, match=r"no \d+ columns"):
        JOBS.load(row, start=1)


def test_get_finds_the_row_equal_on_every_named_field_or_none() -> None:
    job = make_job()

    found = JOBS.get(id=job.pk, client=job.client_id)

    assert found is not None and every_field(found) == every_field(Job.objects.get(pk=job.pk))
    assert JOBS.get(id=job.pk, client=make_user().pk) is None
    with pytest.raises(ValidationError):
        JOBS.get(id="not-a-uuid")
