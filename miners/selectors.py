from uuid import UUID

from accounts.models import User
from miners.exceptions import MinerNotFound
from miners.models import Miner


def miner_get_for_owner(*, miner_id: UUID | str, owner: User) -> Miner:
    """The caller's own miner; another owner's miner is indistinguishable from a missing one."""
    try:
        return Miner.objects.get(pk=miner_id, owner=owner)
    except (Miner.DoesNotExist, ValueError):
        raise MinerNotFound() from None
