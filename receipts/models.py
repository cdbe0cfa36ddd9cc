from django.conf import settings
from django.db import models


class Receipt(models.Model):
    """A signed record of one result a miner posted. `document` is the receipt exactly as signed, proof included;
    it is served verbatim and never rebuilt from the columns, which only index it."""

    id = models.UUIDField(primary_key=True, editable=False)
    job = models.ForeignKey("jobs.Job", on_delete=models.PROTECT, related_name="receipts")
    attempt = models.PositiveSmallIntegerField()
    miner = models.ForeignKey("miners.Miner", on_delete=models.PROTECT, related_name="receipts")
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="receipts")
    # Position in the miner's chain, from 1; `prev_hash` inside the document links to number sequence - 1.
    sequence = models.PositiveIntegerField()
    document = models.TextField()
    # "sha256:" + hex of `document`: what the miner's next receipt names as its prev_hash.
    document_hash = models.CharField(max_length=71)
    key_id = models.CharField(max_length=16)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt"], name="receipt_one_per_attempt"),
            models.UniqueConstraint(fields=["miner", "sequence"], name="receipt_chain_position_unique"),
        ]
        indexes = [
            models.Index(fields=["job", "created_at"], name="receipt_job_timeline"),
            # The public explorer's feeds, newest first: every receipt, and one miner's chain.
            models.Index(fields=["created_at"], name="receipt_timeline"),
            models.Index(fields=["miner", "created_at"], name="receipt_miner_timeline"),
        ]

    def __str__(self) -> str:
        return f"receipt {self.id} for job {self.job_id} attempt {self.attempt}"
