"""Plain helpers for the exchange tests: buyers with sessions, payments, the clock, and what the ledger holds."""

import hashlib
import secrets
from datetime import timedelta
from decimal import Decimal

from django.db.models import F
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Posting, PostingKind, User, UserSession
from accounts.selectors import ledger_problems, user_balance
from accounts.services import wallet_user_for
from exchange import services
from exchange.models import Payment

# BIP 84's published test vector: the account key m/84'/0'/0' of "abandon abandon … about", and its first receive
# addresses m/84'/0'/0'/0/0 and 0/1.
BIP84_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
BIP84_RECEIVE_0 = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
BIP84_RECEIVE_1 = "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
# Some other wallet's address, for the shared-address mode.
SHARED_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


def make_buyer(label: str) -> User:
    """A wallet user, as the first login creates it."""
    return wallet_user_for(address="ait1" + hashlib.sha256(label.encode()).hexdigest()[:40])


def session_api(user: User) -> APIClient:
    """A client holding a live wallet session of `user` (as a login would have created it)."""
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    UserSession.objects.create(
        user=user,
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    api = APIClient()
    api.credentials(HTTP_X_SESSION_TOKEN=token)
    return api


def make_payment(user: User, *, btc: str | None = None, aitbc: str | None = None) -> Payment:
    if btc is None and aitbc is None:
        btc = "0.001"
    return services.payment_create(
        user=user,
        btc_amount=Decimal(btc) if btc is not None else None,
        aitbc_amount=Decimal(aitbc) if aitbc is not None else None,
    )


def check(payment: Payment) -> Payment:
    """One round of `check_payments`, then the payment as stored."""
    services.check_open_payments()
    payment.refresh_from_db()
    return payment


def age(payment: Payment, *, seconds: float) -> Payment:
    """Move the payment `seconds` into the past: as if it had been created (and checked) that much earlier."""
    delta = timedelta(seconds=seconds)
    Payment.objects.filter(pk=payment.pk).update(
        created_at=F("created_at") - delta,
        expires_at=F("expires_at") - delta,
        seen_at=F("seen_at") - delta,
        last_checked_at=F("last_checked_at") - delta,
        confirmed_at=F("confirmed_at") - delta,
        deposit_watch_until=F("deposit_watch_until") - delta,
    )
    payment.refresh_from_db()
    return payment


def age_past_expiry(payment: Payment, *, by: float = 1) -> Payment:
    return age(payment, seconds=(payment.expires_at - timezone.now()).total_seconds() + by)


def deposits_of(payment: Payment) -> list[Posting]:
    return list(Posting.objects.filter(reference=f"exchange-payment:{payment.pk}", kind=PostingKind.DEPOSIT))


def available(user: User) -> Decimal:
    return user_balance(user=user)["available"]


def assert_credited_once(payment: Payment, amount: str) -> None:
    """One deposit posting for the payment, the user's available balance is exactly `amount`, the ledger balances."""
    payment.refresh_from_db()
    assert payment.status == "confirmed"
    assert payment.credited_aitbc == Decimal(amount)
    postings = deposits_of(payment)
    assert len(postings) == 1, postings
    assert [entry.amount for entry in postings[0].entries.filter(account__user=payment.user)] == [Decimal(amount)]
    assert available(payment.user) == Decimal(amount)
    assert ledger_problems() == []


def assert_nothing_credited(payment: Payment) -> None:
    payment.refresh_from_db()
    assert payment.credited_aitbc is None
    assert deposits_of(payment) == []
    assert available(payment.user) == 0
