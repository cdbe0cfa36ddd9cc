from rest_framework import status

# AmountOutOfRange is shared by every amount the API takes; imported here too, where the exchange has always had it.
from aitbc_site.exceptions import AmountOutOfRange, ApplicationError, NotFound

__all__ = [
    "AmountOutOfRange", "ChainUnavailable", "ExchangeDisabled", "InvalidPaymentState", "NoFreshAddress",
    "PaymentNotFound",
]


class ExchangeDisabled(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "EXCHANGE_DISABLED"
    default_message = "The exchange is not configured: neither BITCOIN_XPUB nor BITCOIN_ADDRESS is set."


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"
    default_message = "No payment with that id belongs to the caller."


class InvalidPaymentState(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "INVALID_PAYMENT_STATE"
    default_message = "The payment's state does not allow this."


class ChainUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "CHAIN_UNAVAILABLE"
    default_message = (
        "The bitcoin backend cannot be reached, so no payment address can be checked and issued now; try again shortly."
    )


class NoFreshAddress(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "NO_FRESH_ADDRESS"
    default_message = "Every receive address tried already has history on the chain; try again."
