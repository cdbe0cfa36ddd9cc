from rest_framework import status

from aitbc_site.exceptions import ApplicationError, NotFound


class ExchangeDisabled(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "EXCHANGE_DISABLED"
    default_message = "The exchange is not configured: neither BITCOIN_XPUB nor BITCOIN_ADDRESS is set."


class AmountOutOfRange(ApplicationError):
    code = "AMOUNT_OUT_OF_RANGE"
    default_message = "The amount is outside what the exchange accepts."


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"
    default_message = "No payment with that id belongs to the caller."


class InvalidPaymentState(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "INVALID_PAYMENT_STATE"
    default_message = "The payment's state does not allow this."
