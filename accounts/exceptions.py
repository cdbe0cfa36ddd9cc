from rest_framework import status

from aitbc_site.exceptions import ApplicationError, NotFound


class InsufficientFunds(ApplicationError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    code = "INSUFFICIENT_FUNDS"
    default_message = "The available balance does not cover this."


class InvalidNonce(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "INVALID_NONCE"
    default_message = "The nonce is unknown, used, expired or for another address. Ask for a new challenge."


class InvalidSignature(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "INVALID_SIGNATURE"
    default_message = "The signature was not made by this address's key over the challenge message."


class ChallengeForAnotherSite(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "CHALLENGE_FOR_ANOTHER_SITE"
    default_message = (
        "The challenge names another domain or URI than the one this login reached. Ask for a challenge here."
    )


class UserNotFound(NotFound):
    code = "USER_NOT_FOUND"
    default_message = "No such user is visible to the caller."


class ApiKeyNotFound(NotFound):
    code = "API_KEY_NOT_FOUND"
    default_message = "No such API key belongs to the caller."
