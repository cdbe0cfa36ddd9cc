"""Plain factory functions: a row with sensible defaults, any field overridable."""

from datetime import timedelta
from typing import Any

from django.utils import timezone

from accounts.models import User
from accounts.services import service_user_create
from jobs.models import Job, JobStatus
from miners.models import Miner


def make_user(label: str = "test") -> User:
    return service_user_create(label=f"{label}-{User.objects.count()}")


def make_miner(**overrides: Any) -> Miner:
    fields: dict[str, Any] = {
        "owner": overrides.pop("owner", None) or make_user("miner"),
        "address": "ait1" + "ab" * 20,
        "capabilities": ["llm_inference"],
        "last_heartbeat": timezone.now(),
        **overrides,
    }
    return Miner.objects.create(**fields)


def make_job(**overrides: Any) -> Job:
    now = timezone.now()
    status = overrides.get("status", JobStatus.PENDING)
    fields: dict[str, Any] = {
        "client": overrides.pop("client", None) or make_user("client"),
        "job_type": "llm_inference",
        "parameters": {},
        "max_attempts": 3,
        "max_runtime_seconds": 3600,
        "created_at": now,
        "updated_at": now,
        "not_before": now,
        "expires_at": now + timedelta(hours=1),
        "attempts": 1 if status == JobStatus.RUNNING else 0,
        "lease_expires_at": now + timedelta(minutes=2) if status == JobStatus.RUNNING else None,
        **overrides,
    }
    return Job.objects.create(**fields)
