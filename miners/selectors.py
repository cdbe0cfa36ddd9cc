from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from miners.exceptions import MinerDisabled, MinerNotFound
from miners.models import Miner, MinerStatus
from miners.queries import miner_of_owner


def miner_get_for_owner(*, miner_id: UUID | str, owner: User) -> Miner:
    """The caller's own miner; another owner's miner is indistinguishable from a missing one."""
    try:
        miner = miner_of_owner(miner_id=miner_id, owner_id=owner.pk)
    except (ValueError, ValidationError):
        miner = None
    if miner is None:
        raise MinerNotFound()
    return miner


# The one home of the rule "a miner silent for MINER_HEARTBEAT_TIMEOUT is inactive, whatever its stored status says
# until maintenance catches up": the API, admin, dashboard, metrics and maintenance all read it from here.


def silent_since(*, now: datetime) -> datetime:
    """A miner whose last heartbeat is older than this reads as inactive."""
    return now - timedelta(seconds=settings.MINER_HEARTBEAT_TIMEOUT)


def reads_inactive(*, now: datetime) -> Q:
    """Miners that read as inactive now: stored so, or silent."""
    return Q(status=MinerStatus.INACTIVE) | Q(last_heartbeat__lt=silent_since(now=now))


def effective_miner_status(miner: Miner) -> str:
    """The status as it reads now: a miner silent for MINER_HEARTBEAT_TIMEOUT is inactive before maintenance says so."""
    if miner.last_heartbeat < silent_since(now=timezone.now()):
        return MinerStatus.INACTIVE
    return miner.status


def miner_get_working(*, miner_id: UUID | str, owner: User) -> Miner:
    """The caller's own miner, for heartbeats and polls: refused while an operator has it disabled."""
    miner = miner_get_for_owner(miner_id=miner_id, owner=owner)
    if miner.disabled_at is not None:
        raise MinerDisabled()
    return miner


def another_capable_miner_exists(*, miner: Miner, job_type: str, now: datetime) -> bool:
    """Whether a miner other than this one, working and not inactive, can take jobs of this type."""
    others = Miner.objects.filter(status=MinerStatus.ACTIVE, disabled_at__isnull=True).exclude(
        reads_inactive(now=now)
    ).exclude(pk=miner.pk)
    return any(job_type in other.capabilities for other in others.only("capabilities"))


def miner_latest_of_owner(*, owner: User) -> Miner:
    """The owner's miner that registered or showed a sign of life last: the one a caller that names no miner (the
    original dialect's poll) speaks for. Refused while an operator has it disabled."""
    miner = Miner.objects.filter(owner=owner).order_by("-last_heartbeat", "-registered_at").first()
    if miner is None:
        raise MinerNotFound("This API key's owner has no miner: register one first (POST /v1/miners/register).")
    if miner.disabled_at is not None:
        raise MinerDisabled()
    return miner


def miner_get_by_name(*, name: str, owner: User) -> Miner:
    """The owner's miner of that name, for heartbeats: refused while an operator has it disabled."""
    miner = Miner.objects.filter(owner=owner, name=name).first()
    if miner is None:
        raise MinerNotFound(f"No miner named {name[:100]!r} is registered under this API key's owner.")
    if miner.disabled_at is not None:
        raise MinerDisabled()
    return miner
