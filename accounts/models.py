import uuid
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import models

from aitbc_site.amounts import AmountField


class User(AbstractUser):
    """Operators log in with a password; wallet users (a later issue) by their wallet; service users own keys."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Canonical spelling `ait1` + 40 lowercase hex, or null for operators and service users.
    wallet_address = models.CharField(max_length=44, unique=True, null=True, blank=True)
    # Owners of keys from API_KEYS and of keys issued without an owner: never billed, never log in.
    is_service = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.wallet_address or self.username


class ApiKeyRole(models.TextChoices):
    CLIENT = "client", "Client"
    MINER = "miner", "Miner"
    ADMIN = "admin", "Admin"


class ApiKey(models.Model):
    """A key issued into the database. Only its SHA-256 is stored; `prefix` finds it and names it in lists."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=ApiKeyRole.choices)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {self.prefix}…)"


class LoginChallenge(models.Model):
    """A Sign-In with Ethereum message waiting for its wallet's signature. Any login attempt uses it up."""

    id = models.BigAutoField(primary_key=True)
    address = models.CharField(max_length=44)
    nonce = models.CharField(max_length=64, unique=True)
    message = models.TextField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"challenge {self.nonce} for {self.address}"


class UserSession(models.Model):
    """A wallet login. Only the token's SHA-256 is stored."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="wallet_sessions")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"session of {self.user} until {self.expires_at:%Y-%m-%d %H:%M}"


class AccountKind(models.TextChoices):
    AVAILABLE = "available", "Available"
    HELD = "held", "Held"
    PLATFORM_FEES = "platform_fees", "Platform fees"
    EXCHANGE_DEPOSITS = "exchange_deposits", "Exchange deposits"
    ADJUSTMENTS = "adjustments", "Operator adjustments"


USER_ACCOUNT_KINDS = (AccountKind.AVAILABLE, AccountKind.HELD)


class LedgerAccount(models.Model):
    """One balance of the double-entry ledger: a user's available or held AITBC, or a platform account.

    `balance` is a running total kept in the same transaction as the entries that change it (check_ledger proves it
    equals their sum). Platform accounts are the counterparts of money entering or leaving users (deposits from
    the exchange, operator adjustments) and may go negative; users' accounts never may, and the database refuses it.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_accounts")
    kind = models.CharField(max_length=20, choices=AccountKind.choices)
    balance = AmountField(default=Decimal("0"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="ledger_account_per_user_kind"),
            models.UniqueConstraint(
                fields=["kind"], condition=models.Q(user__isnull=True), name="ledger_platform_kind"
            ),
            models.CheckConstraint(
                condition=models.Q(user__isnull=True) | models.Q(kind__in=USER_ACCOUNT_KINDS),
                name="ledger_user_account_kinds",
            ),
            models.CheckConstraint(
                condition=models.Q(user__isnull=True) | models.Q(balance__gte=0),
                name="ledger_user_balance_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or 'platform'} {self.kind}: {self.balance}"


class PostingKind(models.TextChoices):
    JOB_HOLD = "job_hold", "Job price held"
    JOB_CAPTURE = "job_capture", "Job paid"
    JOB_RELEASE = "job_release", "Job hold released"
    DEPOSIT = "deposit", "Deposit"
    ADJUSTMENT = "adjustment", "Operator adjustment"


class Posting(models.Model):
    """One balanced movement of money. `reference` is unique, so retrying a movement can never apply it twice."""

    id = models.BigAutoField(primary_key=True)
    reference = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=PostingKind.choices)
    memo = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}"


class LedgerEntry(models.Model):
    """An immutable line of a posting: a signed amount on one account. A posting's entries sum to zero."""

    id = models.BigAutoField(primary_key=True)
    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount = AmountField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at", "-id"], name="ledger_entry_by_account")]
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_entry_not_zero")]

    def __str__(self) -> str:
        return f"{self.amount:+} on {self.account_id} ({self.posting_id})"
