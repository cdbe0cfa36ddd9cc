"""The miners app's hand-written statements: every SQL text and `statements` call of the app lives here."""

from functools import cache
from typing import NamedTuple
from uuid import UUID

from accounts.models import User
from aitbc_site import statements
from miners.models import Miner

_MINER_COLUMNS = statements.Columns(Miner, alias="m")
_USER_ID_COLUMNS = statements.Columns(User, ("id",), alias="u")


def miner_of_owner(*, miner_id: UUID | str, owner_id: UUID) -> Miner | None:
    """The whole miner if it is this owner's. Raises ValueError or ValidationError for a malformed id."""
    return _MINER_COLUMNS.get(id=miner_id, owner=owner_id)


@cache
def _payee_sql() -> str:
    u_id, u_wallet = statements.column(User, "id"), statements.column(User, "wallet_address")
    u_service = statements.column(User, "is_service")
    m_id, m_address, m_owner = (statements.column(Miner, name) for name in ("id", "address", "owner"))
    users, miners = statements.table(User), statements.table(Miner)
    return (
        f"SELECT w.{u_id}, m.{m_address}, o.{u_id}, o.{u_service} FROM {miners} m"
        f" JOIN {users} o ON o.{u_id} = m.{m_owner} LEFT JOIN {users} w ON w.{u_wallet} = m.{m_address}"
        f" WHERE m.{m_id} = %s"
    )


class Payee(NamedTuple):
    """Who a miner's earnings go to, as stored: the user of its payout wallet (None until that wallet has one), the
    wallet, and its owner (paid when there is no wallet, unless a service user)."""

    wallet_user_id: UUID | None
    address: str | None
    owner_id: UUID
    owner_is_service: bool


def payee(*, miner_id: UUID) -> Payee:
    row = statements.fetch_one(_payee_sql(), [statements.db_value(Miner, "id", miner_id)])
    if row is None:
        raise Miner.DoesNotExist(miner_id)
    wallet_user, address, owner, owner_is_service = row
    return Payee(
        wallet_user_id=None if wallet_user is None else _USER_ID_COLUMNS.load((wallet_user,)).pk,
        address=address,
        owner_id=_USER_ID_COLUMNS.load((owner,)).pk,
        owner_is_service=bool(owner_is_service),
    )
