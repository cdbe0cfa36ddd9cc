from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class ExchangeConfig(AppConfig):
    name = "exchange"
    verbose_name = "Exchange"

    def ready(self) -> None:
        # Validate the receiving wallet at start, so a mistyped key stops the server instead of the first payment.
        from exchange.wallet import validate_extended_public_key

        if settings.BITCOIN_XPUB:
            try:
                validate_extended_public_key(settings.BITCOIN_XPUB)
            except ValueError as error:
                raise ImproperlyConfigured(f"BITCOIN_XPUB is not usable: {error}") from None
        if settings.EXCHANGE_MIN_BTC > settings.EXCHANGE_MAX_BTC:
            raise ImproperlyConfigured("EXCHANGE_MIN_BTC must not be above EXCHANGE_MAX_BTC")
