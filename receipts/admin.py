import json

from django.contrib import admin
from django.utils.html import format_html

from aitbc_site.admin_site import ReadOnlyModelAdmin, short_id
from receipts.models import Receipt
from receipts.services import Verification, receipt_document, receipt_verify


def _verification(receipt: Receipt) -> Verification:
    return receipt_verify(document=receipt_document(receipt))


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyModelAdmin):
    """Receipts are signed documents: nobody edits one, and each is checked against our keys as it is shown."""

    list_display = [
        short_id, "job_short", "attempt", "miner_short", "sequence", "key_id", "signature_valid", "created_at",
    ]
    list_filter = ["key_id"]
    search_fields = ["^id", "^job__id", "^miner__id", "document_hash"]
    search_help_text = "A receipt, job or miner id or its beginning, or a document hash."
    date_hierarchy = "created_at"
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["id", "job", "attempt", "miner", "client", "sequence", "created_at"]}),
        ("Signature", {"fields": ["key_id", "signature_valid", "verification", "document_hash"]}),
        ("Document as signed", {"fields": ["pretty_document"]}),
    ]

    @admin.display(description="job")
    def job_short(self, receipt: Receipt) -> str:
        return str(receipt.job_id)[:8]

    @admin.display(description="miner")
    def miner_short(self, receipt: Receipt) -> str:
        return str(receipt.miner_id)[:8]

    @admin.display(description="signature valid", boolean=True)
    def signature_valid(self, receipt: Receipt) -> bool:
        return _verification(receipt).valid

    @admin.display(description="verification")
    def verification(self, receipt: Receipt) -> str:
        result = _verification(receipt)
        return "valid" if result.valid else f"invalid: {result.reason}"

    @admin.display(description="document")
    def pretty_document(self, receipt: Receipt) -> str:
        return format_html("<pre>{}</pre>", json.dumps(receipt_document(receipt), indent=2, sort_keys=True))
