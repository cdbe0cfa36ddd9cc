"""The request id: accepted from X-Request-ID (a proxy's or a client's) or generated, returned, and put on every log
line written while the request is served.

gunicorn's master imports this module (for the log formatter) before any worker patches the standard library for
gevent, so it must not import Django's request machinery, which brings the database layer with it: that would be
created unpatched, shared by every greenlet of a worker. Django's types are for annotations only.
"""

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
# Accept only a sane token, so a caller cannot inject text into the logs through the header.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[["HttpRequest"], "HttpResponse"]) -> None:
        self.get_response = get_response

    def __call__(self, request: "HttpRequest") -> "HttpResponse":
        offered = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = offered if _ACCEPTABLE.match(offered) else uuid.uuid4().hex
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response
