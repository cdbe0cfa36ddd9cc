from django.apps import AppConfig


class AitbcSiteConfig(AppConfig):
    name = "aitbc_site"
    verbose_name = "AITBC site"

    def ready(self) -> None:
        from aitbc_site import checks  # noqa: F401  (registers the system checks)
