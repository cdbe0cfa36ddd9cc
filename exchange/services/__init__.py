"""Exchange: payment requests for AITBC in bitcoin, watching the chain, and crediting each payment exactly once.

App dependencies point one way: accounts ← exchange. One module per stage of a payment's life:

    rates.py          the BTC→AITBC rate (rate_set)
    creation.py       opening a payment request: the quote and its address (payment_create)
    watching.py       checking the chain and moving payments along (payment_check, check_open_payments …)
    crediting.py      confirming and crediting, once (payment_confirm_by_operator)
    expiry.py         expiring a payment, and the end of its late grace (payment_expire_by_operator)
    late_deposits.py  bitcoin that reached a closed payment, held for an operator (late_deposit_credit …)
    transitions.py    the one compare-and-set that changes a payment's status, and the event of each change

Code outside the app imports from here; the app's own modules import from the module that holds a name.
"""

from exchange.services.creation import RECEIVE_INDEX_SCAN_LIMIT, SHARED_ADDRESS_SLOTS, payment_create
from exchange.services.crediting import payment_confirm_by_operator
from exchange.services.expiry import payment_expire_by_operator
from exchange.services.late_deposits import late_deposit_close, late_deposit_credit, late_deposits_record
from exchange.services.rates import rate_set
from exchange.services.watching import (
    DEPOSIT_WATCH_INTERVAL,
    check_open_payments,
    payment_check,
    payment_refresh_if_stale,
)

__all__ = [
    "DEPOSIT_WATCH_INTERVAL",
    "RECEIVE_INDEX_SCAN_LIMIT",
    "SHARED_ADDRESS_SLOTS",
    "check_open_payments",
    "late_deposit_close",
    "late_deposit_credit",
    "late_deposits_record",
    "payment_check",
    "payment_confirm_by_operator",
    "payment_create",
    "payment_expire_by_operator",
    "payment_refresh_if_stale",
    "rate_set",
]
