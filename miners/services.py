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


def miner_set_draining(*, miner: Miner) -> Miner:
    """Hand the miner no new jobs; it finishes those it holds. Its next `active` heartbeat undoes this."""
    Miner.objects.filter(pk=miner.pk).update(status=MinerStatus.DRAINING, updated_at=timezone.now())
    miner.status = MinerStatus.DRAINING
    return miner


def miner_disable(*, miner: Miner, operator: str) -> Miner:
    """Refuse the miner's heartbeats and polls until an operator re-enables it."""
    now = timezone.now()
    Miner.objects.filter(pk=miner.pk).update(disabled_at=now, disabled_by=operator, updated_at=now)
    miner.disabled_at, miner.disabled_by = now, operator
    return miner


def miner_enable(*, miner: Miner) -> Miner:
    Miner.objects.filter(pk=miner.pk).update(disabled_at=None, disabled_by="", updated_at=timezone.now())
    miner.disabled_at, miner.disabled_by = None, ""
    return miner
