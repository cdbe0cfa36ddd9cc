"""Miners: registration. Depends on accounts only; jobs build on it."""

from typing import Any
from uuid import UUID

from django.utils import timezone

from accounts.models import User
from miners.models import Miner, MinerStatus
from miners.selectors import miner_get_for_owner


def miner_register(
    *,
    owner: User,
    address: str,
    capabilities: list[str],
    endpoint: str | None = None,
    resources: dict[str, Any] | None = None,
    max_concurrent_jobs: int = 1,
    miner_id: UUID | None = None,
) -> tuple[Miner, bool]:
    """Register a miner, or update the caller's own miner when `miner_id` is given; returns (miner, created)."""
    now = timezone.now()
    fields = {
        "address": address,
        "endpoint": endpoint,
        "capabilities": capabilities,
        "resources": resources or {},
        "max_concurrent_jobs": max_concurrent_jobs,
        "status": MinerStatus.ACTIVE,
        "last_heartbeat": now,
    }
    if miner_id is None:
        return Miner.objects.create(owner=owner, **fields), True
    miner = miner_get_for_owner(miner_id=miner_id, owner=owner)
    for name, value in fields.items():
        setattr(miner, name, value)
    miner.save(update_fields=[*fields, "updated_at"])
    return miner, False
