"""The worker and logger classes deploy/gunicorn.conf.py gives gunicorn.

The worker is gunicorn's gevent one: each connection is a greenlet, so a miner's long-poll or a client's event
stream waiting on the server is an event in a loop, not a thread (README, "Server model"). It differs from gunicorn's
in two ways:
- it answers the requests it rejects itself in the API's error envelope: gunicorn turns away a request it cannot
  parse (a request line over `limit_request_line`, too many or too large headers, a malformed line or header) before
  Django sees it, with an HTML page. A client of a JSON API, and the OpenAPI document that promises the envelope for
  every error, should get the envelope there too;
- when it is told to stop (TERM, a HUP reload replacing it, `max_requests`), the requests waiting in it end at once
  with their empty answer instead of holding the worker's graceful shutdown for the rest of their wait.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

import gevent
from gunicorn import glogging, util
from gunicorn.http import errors
from gunicorn.workers.ggevent import GeventWorker

from aitbc_site.request_framing import CLOSE_CONNECTION

# How often a worker looks whether it has been told to stop, to end its waiting requests.
STOP_CHECK_SECONDS = 0.2

# Status, reason phrase and our error code for each parse failure answered here; gunicorn keeps the rest (its 500s,
# 501 for an unknown transfer coding, 417, proxy-protocol and TLS failures), which a client of the API cannot cause
# by the request's content alone.
_PARSE_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    errors.LimitRequestLine: (414, "URI Too Long", "URI_TOO_LONG"),
    errors.LimitRequestHeaders: (431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE"),
    errors.InvalidRequestLine: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.InvalidRequestMethod: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.InvalidHTTPVersion: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.InvalidHeader: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.InvalidHeaderName: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.ObsoleteFolding: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.InvalidChunkSize: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.ChunkMissingTerminator: (400, "Bad Request", "MALFORMED_REQUEST"),
    errors.InvalidChunkExtension: (400, "Bad Request", "MALFORMED_REQUEST"),
}


def envelope_response(status: int, reason: str, code: str, message: str) -> bytes:
    # The body `exception_handler.error_body` makes, written here because gunicorn loads this class before the
    # application: importing DRF (and so Django's settings) this early is not ours to do.
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


class EnvelopeGeventWorker(GeventWorker):
    def run(self) -> None:
        gevent.spawn(self._end_waits_when_stopping)
        super().run()

    def _end_waits_when_stopping(self) -> None:
        while self.alive:
            gevent.sleep(STOP_CHECK_SECONDS)
        # Imported only now: the application (and Django's settings) is loaded after this class.
        from aitbc_site import wakeups

        wakeups.end_all_waits()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = _honouring_connection_close(self.wsgi)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        answer = next((answer for kind, answer in _PARSE_ERRORS.items() if isinstance(exc, kind)), None)
        if answer is None:
            super().handle_error(req, client, addr, exc)
            return
        status, reason, code = answer
        # gunicorn's own line for a rejected request, so the log reads the same as before.
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        message = f"The request was rejected before it reached the API: {exc}"
        try:
            util.write_nonblock(client, envelope_response(status, reason, code, message))
        except OSError:
            self.log.debug("Failed to send error message.")


def _honouring_connection_close(application: Callable[..., Any]) -> Callable[..., Any]:
    """The application, able to have the connection closed after an answer by setting
    `request_framing.CLOSE_CONNECTION` in the environ (gunicorn then answers `Connection: close`).

    After an answer given without reading the whole body (413, a broken chunk), gunicorn would keep the connection
    alive and read the unread rest as the next request. `start_response` is bound to gunicorn's response object,
    which can be told to close."""

    def application_closing_on_request(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get(CLOSE_CONNECTION):
                start_response.__self__.force_close()
            return start_response(status, headers, exc_info)

        return application(environ, start)

    return application_closing_on_request


class Logger(glogging.Logger):
    """gunicorn's logger, which builds no access-log line when nothing would write it.

    gunicorn formats the line for every request whenever a logging configuration is given (ours always is, for JSON
    lines), even when the access logger only has a NullHandler: a few percent of a request's CPU for nothing.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.writes_access_log = self.access_log.propagate or any(
            not isinstance(handler, logging.NullHandler) for handler in self.access_log.handlers
        )

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.writes_access_log:
            super().access(resp, req, environ, request_time)
