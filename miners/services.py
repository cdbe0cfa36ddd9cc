"""Miners: registration, liveness, purging and who a miner is paid to. Depends on accounts only; jobs build on it."""

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from accounts.services import wallet_user_for
from miners import queries
from miners.models import Miner, MinerStatus
from miners.selectors import miner_get_for_owner, silent_since


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


# --- liveness ---------------------------------------------------------------------------------------------------


def miner_touch(*, miner: Miner, now: datetime) -> None:
    """A poll counts as a sign of life: bring back an inactive miner, keep a draining one draining.

    A miner polling several times a second would write its row as often; a sign of life only has to be fresher
    than the liveness timeout, so it is written when a tenth of the timeout has passed (or the status changes).
    """
    new_status = MinerStatus.DRAINING if miner.status == MinerStatus.DRAINING else MinerStatus.ACTIVE
    fresh_since = now - timedelta(seconds=settings.MINER_HEARTBEAT_TIMEOUT / 10)
    if new_status == miner.status and miner.last_heartbeat is not None and miner.last_heartbeat > fresh_since:
        return
    Miner.objects.filter(pk=miner.pk).update(last_heartbeat=now, status=new_status)
    miner.last_heartbeat, miner.status = now, new_status


def miner_record_heartbeat(*, miner: Miner, status: str | None, now: datetime) -> Miner:
    """Store a heartbeat: the status it reports (an inactive miner that reports none is active again)."""
    if status is not None:
        miner.status = status
    elif miner.status == MinerStatus.INACTIVE:
        miner.status = MinerStatus.ACTIVE
    miner.last_heartbeat = now
    Miner.objects.filter(pk=miner.pk).update(last_heartbeat=now, status=miner.status, updated_at=now)
    return miner


def mark_silent_miners_inactive(*, now: datetime) -> int:
    """Store `inactive` for miners silent longer than MINER_HEARTBEAT_TIMEOUT (they already read as inactive)."""
    return Miner.objects.filter(
        status__in=[MinerStatus.ACTIVE, MinerStatus.DRAINING], last_heartbeat__lt=silent_since(now=now)
    ).update(status=MinerStatus.INACTIVE, updated_at=now)


def purge_inactive_miners(*, inactive_for: timedelta, now: datetime) -> int:
    """Delete miners silent for `inactive_for` that never held a job or earned a receipt.

    Miners with a history stay as the archive."""
    purgeable = Miner.objects.filter(last_heartbeat__lt=now - inactive_for).exclude(
        Q(jobs__isnull=False) | Q(attempts__isnull=False) | Q(receipts__isnull=False)
    )
    deleted, _ = Miner.objects.filter(pk__in=list(purgeable.values_list("pk", flat=True))).delete()
    return deleted


# --- payouts ----------------------------------------------------------------------------------------------------


def payee_of(*, miner_id: UUID) -> UUID:
    """The user of the wallet a miner is paid to: one read, and the user created the first time it earns."""
    payee = queries.payee_user_id(miner_id=miner_id)
    if payee is not None:
        return payee
    return wallet_user_for(address=Miner.objects.values_list("address", flat=True).get(pk=miner_id)).pk
