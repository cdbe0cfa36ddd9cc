from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import User
from aitbc_site import statements
from miners.exceptions import MinerDisabled, MinerNotFound
from miners.models import Miner, MinerStatus

_MINER_COLUMNS = statements.Columns(Miner, alias="m")


def miner_get_for_owner(*, miner_id: UUID | str, owner: User) -> Miner:
    """The caller's own miner; another owner's miner is indistinguishable from a missing one."""
    try:
        miner = _MINER_COLUMNS.get(id=miner_id, owner=owner.pk)
    except (ValueError, ValidationError):
        miner = None
    if miner is None:
        raise MinerNotFound()
    return miner


def effective_miner_status(miner: Miner) -> str:
    """The status as it reads now: a miner silent for MINER_HEARTBEAT_TIMEOUT is inactive before maintenance says so."""
    if miner.last_heartbeat < timezone.now() - timedelta(seconds=settings.MINER_HEARTBEAT_TIMEOUT):
        return MinerStatus.INACTIVE
    return miner.status


def miner_get_working(*, miner_id: UUID | str, owner: User) -> Miner:
    """The caller's own miner, for heartbeats and polls: refused while an operator has it disabled."""
    miner = miner_get_for_owner(miner_id=miner_id, owner=owner)
    if miner.disabled_at is not None:
        raise MinerDisabled()
    return miner
