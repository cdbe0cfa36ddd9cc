import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


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
