"""Request-level guards that must run before any view reads the request."""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from aitbc_site.exception_handler import json_error_response
from aitbc_site.request_framing import BODY_PROBLEM, CLOSE_CONNECTION, TOO_LARGE

# Load balancers and scrapers address a node directly, by an address ALLOWED_HOSTS need not list.
HOST_CHECK_EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})


class AllowedHostMiddleware:
    """Answer 400 INVALID_HOST for a Host header ALLOWED_HOSTS does not name, on every route but the probes.

    Django checks the Host only where something calls `request.get_host()` (building an absolute URL, CSRF), so
    without this most API answers would be served to any Host, the cache-poisoning and DNS-rebinding openings that
    ALLOWED_HOSTS exists to close."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in HOST_CHECK_EXEMPT_PATHS:
            try:
                request.get_host()
            except DisallowedHost:
                return json_error_response(400, "INVALID_HOST", "This server does not serve the Host requested.")
        return self.get_response(request)


class QueryStringGuardMiddleware:
    """Answer 400 VALIDATION_ERROR for a query string carrying NUL, which no text column on PostgreSQL can hold
    and no parameter of the API needs; Django would pass it on to a filter as it is."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if query and ("%00" in query or "\x00" in query):
            return json_error_response(400, "VALIDATION_ERROR", "NUL characters are not accepted in the query.")
        return self.get_response(request)


class RequestBodyLimitMiddleware:
    """Answer 413 PAYLOAD_TOO_LARGE for bodies over DATA_UPLOAD_MAX_MEMORY_SIZE, and 400 MALFORMED_REQUEST for a
    chunked body whose framing is broken (`request_framing.ChunkedBodyReader` read it).

    Django enforces that limit only when `request.body` or form data is read; DRF's parsers read the raw stream, so
    without this a 50 MiB JSON body would be parsed in full. Both answers close the connection: the rest of the body
    is still unread on it, so nothing after it can be read as the next request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        problem = request.META.get(BODY_PROBLEM)
        if problem:
            if problem == TOO_LARGE:
                return self._too_big(request, limit)
            broken = json_error_response(400, "MALFORMED_REQUEST", "The chunked body's framing is broken.")
            return _closing(request, broken)
        try:
            declared_length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _closing(request, json_error_response(400, "BAD_REQUEST", "Content-Length is not a number."))
        if declared_length > limit:
            return self._too_big(request, limit)
        if declared_length:
            try:
                # Reading `body` enforces the limit on the bytes actually sent and caches them for the parser;
                # the value itself is not needed here.
                _ = request.body
            except RequestDataTooBig:
                return self._too_big(request, limit)
        return self.get_response(request)

    @staticmethod
    def _too_big(request: HttpRequest, limit: int) -> HttpResponse:
        message = f"Request bodies are limited to {limit} bytes."
        return _closing(request, json_error_response(413, "PAYLOAD_TOO_LARGE", message))


def _closing(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """`response`, after which the server is asked to close the connection (`request_framing.CLOSE_CONNECTION`)."""
    request.META[CLOSE_CONNECTION] = True
    return response
