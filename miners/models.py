import uuid

from django.conf import settings
from django.db import models


class MinerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DRAINING = "draining", "Draining"
    INACTIVE = "inactive", "Inactive"


class Miner(models.Model):
    """A GPU owner's worker. `owner` is the principal that registered it; `name` tells its miners apart (the
    original dialect's `miner_id`); `address` is the wallet it is paid to, or null to pay the owner's own wallet."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="miners")
    name = models.CharField(max_length=100)
    address = models.CharField(max_length=44, null=True, blank=True)
    endpoint = models.URLField(max_length=500, null=True, blank=True)
    capabilities = models.JSONField(default=list)
    resources = models.JSONField(default=dict)
    # What a miner speaking the original dialect reported about itself, kept as sent for operators: its
    # `capabilities` object and its last heartbeat's `metadata`.
    reported = models.JSONField(default=dict, blank=True)
    max_concurrent_jobs = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=16, choices=MinerStatus.choices, default=MinerStatus.ACTIVE)
    last_heartbeat = models.DateTimeField()
    # Set by an operator: the miner's heartbeats and polls are refused (MINER_DISABLED) until re-enabled.
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_by = models.CharField(max_length=150, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-registered_at"]
        indexes = [models.Index(fields=["owner", "-registered_at"], name="miner_owner_idx")]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="miner_owner_name_unique"),
            models.CheckConstraint(
                condition=models.Q(max_concurrent_jobs__gte=1, max_concurrent_jobs__lte=64),
                name="miner_max_concurrent_jobs_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.address or 'pays its owner'})"
