"""Against a real gunicorn server: the requests gunicorn turns away before Django sees them are answered in the API's
error envelope, with the status the OpenAPI document lists, and the server goes on serving. And gunicorn's logger, as
the project's config sets it up, builds access lines only when they are written."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from aitbc_site.settings import BASE_DIR
from aitbc_site.testing import LiveServer, live_server
from conftest import live_env

pytestmark = pytest.mark.live

API_KEY = "worker-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("worker")
    # Only parse failures are exercised: no request reaches the database, so an unmigrated file is enough.
    env = live_env(f"sqlite:///{directory / 'unused.db'}", API_KEYS=API_KEY)
    # As systemd, Docker and `make run` start it: the config names the settings module itself.
    env.pop("DJANGO_SETTINGS_MODULE", None)
    with live_server(env=env, log_path=directory / "gunicorn.log", workers=1) as live:
        yield live


def raw_exchange(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends bytes no HTTP client library would send, and reads the answer up to the close gunicorn ends it with."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def assert_envelope(response: httpx.Response, *, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["details"] == {}


def test_a_request_line_over_the_limit_is_a_414_envelope(server: LiveServer) -> None:
    query = "&".join(f"limit={index}" for index in range(800))

    response = httpx.get(f"{server.url}/v1/client/jobs?{query}", headers={"X-Api-Key": API_KEY}, timeout=10)

    assert_envelope(response, status=414, code="URI_TOO_LONG")
    assert "4094" in response.json()["error"]["message"]


def test_more_than_100_headers_is_a_431_envelope(server: LiveServer) -> None:
    headers = {f"X-Filler-{index}": "x" for index in range(101)}

    response = httpx.get(f"{server.url}/v1/client/jobs", headers={"X-Api-Key": API_KEY, **headers}, timeout=10)

    assert_envelope(response, status=431, code="HEADERS_TOO_LARGE")


def test_a_header_over_8190_bytes_is_a_431_envelope(server: LiveServer) -> None:
    response = httpx.get(
        f"{server.url}/v1/client/jobs", headers={"X-Api-Key": API_KEY, "X-Filler": "x" * 9000}, timeout=10
    )

    assert_envelope(response, status=431, code="HEADERS_TOO_LARGE")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad\x00Name: 1\r\n\r\n",
        b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    ],
    ids=["header-name", "http-version", "method", "obsolete-folding"],
)
def test_a_request_that_is_not_valid_http_is_a_400_envelope(server: LiveServer, request_bytes: bytes) -> None:
    status, headers, body = raw_exchange(server, request_bytes)

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert httpx.Response(status, content=body).json()["error"]["code"] == "MALFORMED_REQUEST"


def test_the_server_goes_on_answering_after_rejecting_requests(server: LiveServer) -> None:
    raw_exchange(server, b"G@T / HTTP/1.1\r\n\r\n")
    httpx.get(f"{server.url}/health?{'x' * 5000}", timeout=10)

    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


# gunicorn's own command-line application, reading deploy/gunicorn.conf.py as `gunicorn -c` does, then its logger.
LOGGER_PROBE = """
import sys
sys.argv = ["gunicorn", "-c", "deploy/gunicorn.conf.py", "aitbc_site.wsgi:application"]
from gunicorn.app.wsgiapp import WSGIApplication
config = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").cfg
logger = config.logger_class(config)
print(type(logger).__module__, logger.writes_access_log)
if not logger.writes_access_log:
    logger.access(None, None, None, None)  # would fail building the line from nothing
"""


@pytest.mark.parametrize(("access_log", "writes"), [("", "False"), ("-", "True")])
def test_the_logger_builds_access_lines_only_when_an_access_log_is_configured(access_log: str, writes: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", LOGGER_PROBE], cwd=BASE_DIR, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GUNICORN_ACCESS_LOG": access_log},
    )

    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["aitbc_site.gunicorn_classes", writes]
