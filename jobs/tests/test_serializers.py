"""The job documents are written by hand for speed; they must say exactly what their declared fields say."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework import serializers

from jobs.models import Job, JobStatus
from jobs.serializers import AssignmentSerializer, JobSerializer
from jobs.tests.factories import make_job, make_miner

pytestmark = pytest.mark.django_db


def _jobs_in_every_shape() -> list[Job]:
    now = timezone.now()
    miner = make_miner()
    return [
        make_job(),
        make_job(status=JobStatus.PENDING, expires_at=now - timedelta(seconds=1), priority=9),
        make_job(
            status=JobStatus.RUNNING, miner=miner, started_at=now, progress=0.25, handouts=2,
            requirements={"models": ["llama"], "region": "eu"}, parameters={"prompt": "ünïcode", "n": [1, 2.5, None]},
        ),
        make_job(
            status=JobStatus.COMPLETED, miner=miner, started_at=now, completed_at=now, progress=1.0,
            result={"text": "hi", "nested": {"a": True}}, price=Decimal("12.5"),
        ),
        make_job(status=JobStatus.FAILED, completed_at=now, error={"code": "OOM", "message": "out of memory"}),
    ]


def _by_declared_fields(serializer: serializers.Serializer, job: Job) -> dict:
    return dict(serializers.Serializer.to_representation(serializer, job))


@pytest.mark.parametrize("serializer_class", [JobSerializer, AssignmentSerializer])
def test_the_written_document_is_what_the_declared_fields_give(serializer_class: type[serializers.Serializer]) -> None:
    for stored in _jobs_in_every_shape():
        job = Job.objects.get(pk=stored.pk)
        serializer = serializer_class(job)

        assert serializer.data == _by_declared_fields(serializer, job)
        assert list(serializer.data) == list(serializer.fields)
