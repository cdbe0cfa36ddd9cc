import getpass
import uuid
from argparse import ArgumentParser
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import ledger
from accounts.addresses import canonical_address
from accounts.models import Posting, User
from accounts.selectors import user_balance
from accounts.services import wallet_user_for
from aitbc_site import amounts
from aitbc_site.exceptions import ApplicationError, InvalidAddress

# What the posting's columns hold (PostgreSQL refuses more; SQLite would keep it): checked here to say so clearly.
MEMO_LENGTH = Posting._meta.get_field("memo").max_length
ACTOR_LENGTH = Posting._meta.get_field("actor").max_length
ACTOR_PREFIX = "operator:"  # how ledger.adjust records the operator


def _amount(text: str) -> Decimal:
    try:
        amount = amounts.parse(text)
    except ValueError as error:
        raise CommandError(f"AMOUNT {text!r} is {error}.") from None
    if amount <= 0:
        raise CommandError(f"AMOUNT must be positive, not {text}: this command only adds AITBC.")
    if not amounts.in_range(amount):
        raise CommandError(f"AMOUNT {text} is beyond the largest amount accepted, {amounts.MAX_TEXT}.")
    return amount


def _operator(given: str | None) -> str:
    if given is not None:
        return given
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # getpass finds no name when neither LOGNAME/USER nor the password database knows this process's user
        # (a container running an unnamed uid).
        raise CommandError("Cannot tell who you are: pass --operator NAME.") from None


def _user(identifier: str) -> User:
    """The user named by username, id or wallet address; a wallet nobody has used yet gets its user, as when a
    wallet first logs in or earns."""
    user = User.objects.filter(username=identifier).first()
    if user is None and _is_uuid(identifier):
        user = User.objects.filter(pk=identifier).first()
    if user is not None:
        return user
    try:
        address = canonical_address(identifier)
    except InvalidAddress:
        raise CommandError(
            f"No user {identifier!r}: give a username, a user id, or a wallet address (0x…, ait1… or aitbc1…)."
        ) from None
    return wallet_user_for(address=address)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class Command(BaseCommand):
    help = (
        "Credit AITBC to a user's available balance (development funding): an operator adjustment in the ledger, "
        "balanced against the platform's adjustments account and recorded with the operator and the reason. "
        "Refused when DEBUG is off (production) unless --force."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("user", metavar="USER_OR_WALLET", help="username, user id or wallet address")
        parser.add_argument("amount", metavar="AMOUNT", help='AITBC to add, a positive decimal such as "100"')
        parser.add_argument("--reason", required=True, help="why; recorded with the posting")
        parser.add_argument("--operator", help="who is crediting (default: the name you are logged in as)")
        parser.add_argument("--force", action="store_true", help="credit even though DEBUG is off (production)")

    def handle(
        self, *args: Any, user: str, amount: str, reason: str, operator: str | None, force: bool, **options: Any
    ) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "DEBUG is off, so this is taken for production, where money is not made from nothing. "
                "Use --force if you mean it (it is recorded as an operator adjustment like any other)."
            )
        value = _amount(amount)
        if not reason.strip():
            raise CommandError("--reason must say why: it is recorded with the posting.")
        if len(reason) > MEMO_LENGTH:
            raise CommandError(f"--reason is recorded in at most {MEMO_LENGTH} characters; this one has {len(reason)}.")
        who = _operator(operator)
        if not who.strip():
            raise CommandError("--operator must name someone: it is recorded with the posting.")
        if len(f"{ACTOR_PREFIX}{who}") > ACTOR_LENGTH:
            raise CommandError(f"--operator is recorded in at most {ACTOR_LENGTH - len(ACTOR_PREFIX)} characters.")
        reference = f"adjustment:credit:{uuid.uuid4()}"
        # One transaction: a wallet user created for a credit the ledger then refuses is not left behind.
        with transaction.atomic():
            account_holder = _user(user)
            try:
                ledger.adjust(
                    user_id=account_holder.pk, amount=value, reason=reason, operator=who, reference=reference
                )
            except ApplicationError as error:
                raise CommandError(f"{account_holder}: {error.message}") from None
        available = user_balance(user=account_holder)["available"]
        self.stdout.write(
            f"Credited {value:.8f} AITBC to {account_holder} (user {account_holder.pk}) by operator {who}; "
            f"available balance now {available:.8f}. Posting {reference}."
        )
