"""Requests on a raw socket: the gate must send what no well-behaved client library would (NUL bytes and invalid
UTF-8 in headers, a foreign Host, malformed chunks, lone surrogates in JSON), and see exactly what came back,
including a connection the server closed without an answer (a worker that died under the request)."""

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

# A request the server is still chewing on after this long has outlived gunicorn's own worker timeout (30 s).
READ_TIMEOUT_SECONDS = 60.0


@dataclass
class Probe:
    """One request of the gate and what the issue says its answer must be."""

    method: str
    target: str  # path and query, already percent-encoded as it goes on the request line
    label: str  # what is hostile about it, for the report
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes | None = None
    chunked: bytes | None = None  # the body already in chunked transfer coding, sent as is
    # The answer for this input: `refuse` wants a 4xx; `status`/`code` pin it exactly.
    refuse: bool = False
    status: int | None = None
    code: str | None = None


@dataclass
class Answer:
    status: int  # 0: the connection ended without a response
    headers: dict[str, str]
    body: bytes
    seconds: float
    closed_after: bool = True  # only measured by `send_keep_alive`

    def json(self) -> Any:
        return json.loads(self.body)


def _request_bytes(probe: Probe, host: str) -> bytes:
    names = {name.lower() for name, _ in probe.headers}
    lines = [f"{probe.method} {probe.target} HTTP/1.1".encode("latin-1")]
    if "host" not in names:
        lines.append(b"Host: " + host.encode())
    for name, value in probe.headers:
        lines.append(name.encode("latin-1") + b": " + value)
    if probe.chunked is not None:
        lines.append(b"Transfer-Encoding: chunked")
        payload = probe.chunked
    else:
        payload = probe.body or b""
        if probe.body is not None and "content-length" not in names:
            lines.append(f"Content-Length: {len(payload)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _parse(raw: bytes, *, head_only: bool) -> tuple[int, dict[str, str], bytes]:
    head, separator, rest = raw.partition(b"\r\n\r\n")
    if not separator:
        return 0, {}, raw
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only:
        return status, headers, rest
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body, data = body + data[:size], data[size + 2:]
        return status, headers, body
    if "content-length" in headers:
        return status, headers, rest[: int(headers["content-length"])]
    return status, headers, rest


def send(port: int, probe: Probe) -> Answer:
    """Send the probe on a connection of its own (`Connection: close`, so requests spread over the workers, which
    accept connections) and read the whole answer."""
    if not any(name.lower() == "connection" for name, _ in probe.headers):
        probe = Probe(**{**probe.__dict__, "headers": [*probe.headers, ("Connection", b"close")]})
    started = time.monotonic()
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_SECONDS) as sock:
        try:
            sock.sendall(_request_bytes(probe, f"127.0.0.1:{port}"))
        except OSError:
            pass  # the server may answer (413) and close before it has read a large body: read what it said
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    status, headers, body = _parse(b"".join(chunks), head_only=probe.method == "HEAD")
    return Answer(status=status, headers=headers, body=body, seconds=time.monotonic() - started)


def send_keep_alive(port: int, probe: Probe) -> Answer:
    """Send the probe on a keep-alive connection and report whether the server closed it after answering: an
    answer sent before the body was read must close the connection, or the unread body is taken as the next
    request."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(_request_bytes(probe, f"127.0.0.1:{port}"))
        except OSError:
            pass
        raw = b""
        closed = False
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        try:
            while time.monotonic() < deadline:
                status, headers, body = _parse(raw, head_only=False)
                length = int(headers.get("content-length", -1)) if status else -1
                if status and length >= 0 and len(body) >= length:
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                raw += chunk
            if not closed:
                # The answer is complete; a closing server sends EOF now, an open one keeps waiting (keepalive 5 s).
                sock.settimeout(2)
                closed = sock.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except TimeoutError:
            closed = False
    status, headers, body = _parse(raw, head_only=False)
    return Answer(status=status, headers=headers, body=body, seconds=time.monotonic() - started, closed_after=closed)
