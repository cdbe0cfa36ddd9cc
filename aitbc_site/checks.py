"""System checks for configuration that imports fine but is wrong for production (`check --deploy`)."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def receipt_signing_key_is_configured(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.RECEIPT_SIGNING_KEY:
        return []
    return [
        Warning(
            "RECEIPT_SIGNING_KEY is not set: receipts are signed with a key generated into "
            f"{settings.RECEIPT_SIGNING_KEY_FILE}, which is lost with that file and differs between app nodes.",
            hint="Set RECEIPT_SIGNING_KEY to 64 hex digits (an Ed25519 seed) kept in your secret store.",
            id="aitbc.W001",
        )
    ]
