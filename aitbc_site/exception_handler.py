"""Render every error, ours, DRF's and Django's, as `{"error": {"code", "message", "details"}}`."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from aitbc_site.exceptions import ApplicationError

logger = logging.getLogger(__name__)

# Any other APIException answers its own default_code in capitals: our authentication failures (InvalidApiKey,
# InvalidSession) name their codes that way.
_DRF_CODES: dict[type[drf.APIException], str] = {
    drf.ParseError: "MALFORMED_JSON",
    drf.NotAuthenticated: "AUTHENTICATION_REQUIRED",
    drf.PermissionDenied: "PERMISSION_DENIED",
    drf.NotFound: "NOT_FOUND",
    drf.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    drf.NotAcceptable: "NOT_ACCEPTABLE",
    drf.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    drf.Throttled: "RATE_LIMITED",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _drf_error(exc: drf.APIException) -> tuple[str, str, dict[str, Any]]:
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return "VALIDATION_ERROR", "The request is not valid.", detail
    for exception_class, code in _DRF_CODES.items():
        if isinstance(exc, exception_class):
            return code, str(exc.detail), {}
    return exc.default_code.upper(), str(exc.detail), {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: our errors carry their code; DRF's get a stable one; anything else is a logged 500."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        status_code, body = exc.status_code, error_body(exc.code, exc.message, exc.details)
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Ratelimited):
        # django-ratelimit's decorator raises this PermissionDenied subclass: it is a 429, not a 403.
        status_code, body = status.HTTP_429_TOO_MANY_REQUESTS, error_body("RATE_LIMITED", "Too many requests.")
        headers["Retry-After"] = "60"
    elif isinstance(exc, Http404):
        status_code, body = status.HTTP_404_NOT_FOUND, error_body("NOT_FOUND", "Not found.")
    elif isinstance(exc, PermissionDenied):
        # Django's own (a decorator or a check in a view): DRF's default handler makes it a 403 too, so must we.
        status_code, body = status.HTTP_403_FORBIDDEN, error_body("PERMISSION_DENIED", "Permission denied.")
    elif isinstance(exc, drf.APIException):
        status_code = exc.status_code
        body = error_body(*_drf_error(exc))
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
    else:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
        body = error_body("INTERNAL_ERROR", "Internal server error.")
    set_rollback()
    return Response(body, status=status_code, headers=headers)


def json_error_response(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_response(404, "NOT_FOUND", "No such endpoint.")


def handler500(request: HttpRequest) -> JsonResponse:
    return json_error_response(500, "INTERNAL_ERROR", "Internal server error.")


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_response(400, "BAD_REQUEST", "Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_response(403, "PERMISSION_DENIED", "Permission denied.")
