from datetime import timedelta
from functools import cache
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import User
from aitbc_site import statements
from miners.exceptions import MinerDisabled, MinerNotFound
from miners.models import Miner, MinerStatus

_MINER_COLUMNS = statements.Columns(Miner, alias="m")


@cache
def _owned_miner_sql() -> str:
    m_id, m_owner = statements.column(Miner, "id"), statements.column(Miner, "owner")
    return f"SELECT {_MINER_COLUMNS.sql} FROM {statements.table(Miner)} m WHERE m.{m_id} = %s AND m.{m_owner} = %s"


def miner_get_for_owner(*, miner_id: UUID | str, owner: User) -> Miner:
    """The caller's own miner; another owner's miner is indistinguishable from a missing one."""
    try:
        params = [statements.db_value(Miner, "id", miner_id), statements.db_value(Miner, "owner", owner.pk)]
    except (ValueError, ValidationError):
        raise MinerNotFound() from None
    row = statements.fetch_one(_owned_miner_sql(), params)
    if row is None:
        raise MinerNotFound()
    return _MINER_COLUMNS.load(row)


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
