from django.apps import AppConfig


class OriginalConfig(AppConfig):
    """The original AITBC project's API (`/v1/jobs…`, `/v1/miners/…`, `/v1/explorer/…`), served alongside ours
    over the same services: serializers and views only, no models."""

    name = "original"
    verbose_name = "Original AITBC dialect"
