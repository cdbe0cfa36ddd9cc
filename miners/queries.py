"""The miners app's hand-written statements: every SQL text and `statements` call of the app lives here."""

from functools import cache
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
    m_id, m_address = statements.column(Miner, "id"), statements.column(Miner, "address")
    return (
        f"SELECT u.{u_id} FROM {statements.table(Miner)} m JOIN {statements.table(User)} u"
        f" ON u.{u_wallet} = m.{m_address} WHERE m.{m_id} = %s"
    )


def payee_user_id(*, miner_id: UUID) -> UUID | None:
    """The user of the wallet the miner is paid to, None until that wallet has a user."""
    row = statements.fetch_one(_payee_sql(), [statements.db_value(Miner, "id", miner_id)])
    return None if row is None else _USER_ID_COLUMNS.load(row).pk
