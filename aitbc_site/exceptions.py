"""The one hierarchy of errors the API answers with. Each class has a stable `code` listed in the README."""

from typing import Any

from rest_framework import status


class ApplicationError(Exception):
    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "BAD_REQUEST"
    default_message: str = "The request cannot be served."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(ApplicationError):
    code = "VALIDATION_ERROR"
    default_message = "The request is not valid."


class AmountOutOfRange(ApplicationError):
    code = "AMOUNT_OUT_OF_RANGE"
    default_message = "The amount is outside the range accepted."


class InvalidJobType(ApplicationError):
    code = "INVALID_JOB_TYPE"
    default_message = "The specified job type is not supported."


class InvalidAddress(ApplicationError):
    code = "INVALID_ADDRESS"
    default_message = "Not a valid AITBC wallet address."


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "NOT_FOUND"
    default_message = "Not found."


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "CONFLICT"
    default_message = "The request conflicts with the current state."
