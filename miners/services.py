"""Miners: registration, liveness, purging and who a miner is paid to. Depends on accounts only; jobs build on it."""

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from accounts.services import wallet_user_for
from miners import queries
from miners.exceptions import MinerNameTaken
from miners.models import Miner, MinerStatus
from miners.selectors import miner_get_for_owner, silent_since


def miner_register(
    *,
    owner: User,
    capabilities: list[str],
    address: str | None = None,
    name: str | None = None,
    endpoint: str | None = None,
    resources: dict[str, Any] | None = None,
    max_concurrent_jobs: int = 1,
    miner_id: UUID | None = None,
    reported: dict[str, Any] | None = None,
) -> tuple[Miner, bool]:
    """Register a miner, or update the owner's miner that `miner_id` or `name` names; returns (miner, created).

    A new miner without a name is named by its id. `reported` (the original dialect's self-description) is kept
    when not given."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "address": address,
        "endpoint": endpoint,
        "capabilities": capabilities,
        "resources": resources or {},
        "max_concurrent_jobs": max_concurrent_jobs,
        "status": MinerStatus.ACTIVE,
        "last_heartbeat": now,
    }
    if reported is not None:
        fields["reported"] = reported
    if miner_id is not None:
        miner = miner_get_for_owner(miner_id=miner_id, owner=owner)
        if name is not None and name != miner.name:
            if Miner.objects.filter(owner=owner, name=name).exists():
                raise MinerNameTaken(details={"name": name})
            fields["name"] = name
        return _update_miner(miner, fields), False
    if name is None:
        miner = Miner(owner=owner, **fields)
        miner.name = str(miner.pk)
        miner.save(force_insert=True)
        return miner, True
    existing = Miner.objects.filter(owner=owner, name=name).first()
    if existing is not None:
        return _update_miner(existing, fields), False
    try:
        with transaction.atomic():
            return Miner.objects.create(owner=owner, name=name, **fields), True
    except IntegrityError:
        # The same miner registering twice at once: the other request created it, so this one updates it.
        return _update_miner(Miner.objects.get(owner=owner, name=name), fields), False


def _update_miner(miner: Miner, fields: dict[str, Any]) -> Miner:
    for field, value in fields.items():
        setattr(miner, field, value)
    try:
        with transaction.atomic():
            miner.save(update_fields=[*fields, "updated_at"])
    except IntegrityError:
        # Renamed to a name another request gave one of the owner's miners meanwhile.
        raise MinerNameTaken(details={"name": fields.get("name")}) from None
    return miner


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


def miner_record_heartbeat(
    *, miner: Miner, status: str | None, now: datetime, reported: dict[str, Any] | None = None
) -> Miner:
    """Store a heartbeat: the status it reports (an inactive miner that reports none is active again), and what
    the miner `reported` of itself merged into what it reported before."""
    if status is not None:
        miner.status = status
    elif miner.status == MinerStatus.INACTIVE:
        miner.status = MinerStatus.ACTIVE
    miner.last_heartbeat = now
    values: dict[str, Any] = {"last_heartbeat": now, "status": miner.status, "updated_at": now}
    if reported is not None:
        miner.reported = values["reported"] = {**miner.reported, **reported}
    Miner.objects.filter(pk=miner.pk).update(**values)
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


def payee_of(*, miner_id: UUID) -> UUID | None:
    """The user a miner's earnings go to, in one read: its payout wallet's user (created the first time it earns),
    else its owner; None for a service user's miner without a payout wallet, which earns nothing."""
    stored = queries.payee(miner_id=miner_id)
    if stored.address is None:
        return None if stored.owner_is_service else stored.owner_id
    if stored.wallet_user_id is not None:
        return stored.wallet_user_id
    return wallet_user_for(address=stored.address).pk
