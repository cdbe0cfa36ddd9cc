"""Request-level guards that must run before any view parses a body."""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from aitbc_site.exception_handler import json_error_response


class RequestBodyLimitMiddleware:
    """Answer 413 PAYLOAD_TOO_LARGE for bodies over DATA_UPLOAD_MAX_MEMORY_SIZE.

    Django enforces that limit only when `request.body` or form data is read; DRF's parsers read the raw stream, so
    without this a 50 MiB JSON body would be parsed in full.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            declared_length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error_response(400, "BAD_REQUEST", "Content-Length is not a number.")
        if declared_length > limit:
            return self._too_big(limit)
        if declared_length or "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            try:
                # Reading `body` enforces the limit on the bytes actually sent and caches them for the parser;
                # the value itself is not needed here.
                _ = request.body
            except RequestDataTooBig:
                return self._too_big(limit)
        return self.get_response(request)

    @staticmethod
    def _too_big(limit: int) -> HttpResponse:
        return json_error_response(413, "PAYLOAD_TOO_LARGE", f"Request bodies are limited to {limit} bytes.")
