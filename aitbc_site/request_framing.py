"""Request bodies sent with `Transfer-Encoding: chunked`, made into ordinary ones before Django sees them.

A WSGI server that accepts a chunked body (gunicorn does) passes it on as `wsgi.input` with no CONTENT_LENGTH, and
Django reads a request without a length as having no body: a chunked JSON body would silently be taken as empty.
This WSGI wrapper reads such a body up to the size cap and hands Django the bytes with their length. What it cannot
hand on (a body over the cap, a malformed chunk) it marks in the environ for `RequestBodyLimitMiddleware` to answer
in the API's envelope, with an empty body.
"""

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from gunicorn.http.errors import NoMoreData, ParseException

BODY_PROBLEM = "aitbc.body_problem"
# Set in the environ by an answer given without reading the whole body (413, a broken chunk): the rest is still
# unread on the connection, so the server must close it. An application may not send `Connection` itself (PEP 3333
# forbids hop-by-hop headers, and wsgiref asserts on them); gunicorn_classes.EnvelopeThreadWorker reads this.
CLOSE_CONNECTION = "aitbc.close_connection"
TOO_LARGE = "too_large"
MALFORMED = "malformed"

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# gunicorn raises its parse errors (a bad chunk size, a missing terminator) and NoMoreData (the client stopped
# mid-body) from `wsgi.input.read`; any server may raise OSError or ValueError.
_FRAMING_ERRORS = (ParseException, NoMoreData, OSError, ValueError)


class ChunkedBodyReader:
    def __init__(self, application: WSGIApplication) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH"):
            self._read_chunked(environ)
        return self.application(environ, start_response)

    def _read_chunked(self, environ: dict[str, Any]) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = b""
        try:
            body = environ["wsgi.input"].read(limit + 1)
        except _FRAMING_ERRORS:
            environ[BODY_PROBLEM] = MALFORMED
        if len(body) > limit:
            environ[BODY_PROBLEM] = TOO_LARGE
        if BODY_PROBLEM in environ:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
