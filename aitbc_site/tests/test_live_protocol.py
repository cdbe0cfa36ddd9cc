"""HTTP framing against a real gunicorn server: chunked bodies, answers that close the connection, the Host check on
every route, HEAD, and a body nested deep enough to overflow a C stack, which must leave every worker alive."""

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from aitbc_site.testing import LiveServer, live_server
from conftest import live_env

pytestmark = pytest.mark.live

API_KEY = "live-protocol-key"
CAP = 1024 * 1024


@pytest.fixture
def server(live_database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with live_server(env=live_env(live_database_url, API_KEYS=API_KEY), log_path=tmp_path / "gunicorn.log") as server:
        yield server


def exchange(server: LiveServer, raw: bytes, *, read_timeout: float = 10) -> tuple[bytes, bool]:
    """Send raw bytes on a fresh connection; return everything the server answered and whether it closed the
    connection after its answer (the read ended on EOF rather than on the time-out)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout) as sock:
        sock.sendall(raw)
        received = b""
        deadline = time.monotonic() + read_timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
            if _complete(received):
                sock.settimeout(1)
        return received, False


def _complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(separator and length and len(body) >= int(length.group(1)))


def request(method: str, path: str, *, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def status_and_headers(answer: bytes) -> tuple[int, str]:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1")
    return int(head.split()[1]), head.lower()


JOB = b'{"job_type": "llm_inference", "parameters": {"prompt": "sent in chunks"}}'
AUTH_JSON = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}


def test_a_chunked_body_is_read_like_any_other(server: LiveServer) -> None:
    headers = {**AUTH_JSON, "Transfer-Encoding": "chunked"}
    answer, _ = exchange(server, request("POST", "/v1/client/jobs", headers=headers, body=chunked(JOB[:20], JOB[20:])))

    status, _ = status_and_headers(answer)
    assert status == 201, answer
    assert b'"prompt":"sent in chunks"' in answer


def test_a_chunked_body_over_the_cap_is_413_and_the_connection_closes(server: LiveServer) -> None:
    body = b'{"job_type": "llm_inference", "parameters": {"pad": "' + b"x" * CAP + b'"}}'
    answer, closed = exchange(server, request(
        "POST", "/v1/client/jobs", headers={**AUTH_JSON, "Transfer-Encoding": "chunked"}, body=chunked(body)
    ))

    status, head = status_and_headers(answer)
    assert status == 413 and b"PAYLOAD_TOO_LARGE" in answer
    assert "connection: close" in head and closed
    assert httpx.get(f"{server.url}/v1/client/jobs", headers={"X-Api-Key": API_KEY}).json()["results"] == []


def test_a_malformed_chunk_is_400_malformed_request_and_the_connection_closes(server: LiveServer) -> None:
    answer, closed = exchange(server, request(
        "POST", "/v1/client/jobs", headers={**AUTH_JSON, "Transfer-Encoding": "chunked"}, body=b"zz\r\n{}\r\n0\r\n\r\n"
    ))

    status, head = status_and_headers(answer)
    assert status == 400 and b"MALFORMED_REQUEST" in answer
    assert "connection: close" in head and closed


def test_a_body_declared_over_the_cap_is_413_and_the_connection_closes(server: LiveServer) -> None:
    answer, closed = exchange(server, request(
        "POST", "/v1/client/jobs", headers={**AUTH_JSON, "Content-Length": str(CAP + 1)}, body=b"{" * 1000
    ))

    status, head = status_and_headers(answer)
    assert status == 413 and b"PAYLOAD_TOO_LARGE" in answer
    assert "connection: close" in head and closed


def test_an_ordinary_answer_keeps_the_connection_alive(server: LiveServer) -> None:
    answer, closed = exchange(server, request("GET", "/v1/job-types", headers={}), read_timeout=3)

    status, head = status_and_headers(answer)
    assert status == 200 and "connection: keep-alive" in head and not closed


def test_a_host_outside_allowed_hosts_is_refused_on_every_route_but_the_probes(server: LiveServer) -> None:
    foreign = {"Host": "attacker.example"}
    for path in ("/v1/job-types", "/v1/client/jobs", "/openapi.json", "/admin/login/", "/no/such/path"):
        response = httpx.get(f"{server.url}{path}", headers={**foreign, "X-Api-Key": API_KEY})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["code"] == "INVALID_HOST", path
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{server.url}{path}", headers=foreign).status_code == 200, path


def test_head_answers_a_read_without_a_body_and_refuses_the_poll(server: LiveServer) -> None:
    auth = {"X-Api-Key": API_KEY}
    job = httpx.post(f"{server.url}/v1/client/jobs", headers=auth, json={"job_type": "llm_inference", "parameters": {}})
    miner = httpx.post(f"{server.url}/v1/miner/register", headers=auth,
                       json={"address": "ait1" + "ab" * 20, "capabilities": ["llm_inference"]}).json()

    read = httpx.head(f"{server.url}/v1/client/jobs/{job.json()['id']}", headers=auth)
    poll = httpx.head(f"{server.url}/v1/miner/jobs", params={"miner_id": miner["id"]}, headers=auth)

    assert read.status_code == 200 and read.content == b""
    assert read.headers["content-type"] == "application/json"
    assert poll.status_code == 405 and "HEAD" not in poll.headers["allow"]
    assert httpx.get(f"{server.url}/v1/client/jobs/{job.json()['id']}", headers=auth).json()["status"] == "pending"


def _worker_pids(log: str) -> set[str]:
    return set(re.findall(r"Booting worker with pid: (\d+)", log))


def test_bodies_nested_60000_deep_leave_every_worker_alive(server: LiveServer, tmp_path: Path) -> None:
    before = _worker_pids((tmp_path / "gunicorn.log").read_text())
    bodies = {
        "/v1/users/challenge": b"[" * 60_000,
        "/v1/receipts/verify": b'{"address": ' + b"[" * 60_000 + b"]" * 60_000 + b"}",
        "/v1/client/jobs": b'{"job_type": "llm_inference", "parameters": {"x": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
    }
    for path, body in bodies.items():
        for _ in range(4):
            response = httpx.post(f"{server.url}{path}", content=body, headers=AUTH_JSON, timeout=10)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["error"]["code"] == "JSON_TOO_DEEP"

    log = (tmp_path / "gunicorn.log").read_text()
    assert _worker_pids(log) == before and len(before) == 2
    assert not re.search(r"SIGSEGV|SIGKILL|Worker \(pid:\d+\) (was sent|exited)", log), log[-3000:]
