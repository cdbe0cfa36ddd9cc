"""How wake-ups (`aitbc_site.wakeups`) travel between worker processes.

- SQLite (the embedded default, every worker on one machine): each process that has waiters binds a UNIX datagram
  socket in a directory named after the database file; a publish sends one datagram to each other socket there.
  No service, no polling: a worker with no waiters reads nothing, and a publish costs one send per worker.
- PostgreSQL (scaled mode, several nodes): each process that has waiters LISTENs on one channel over a connection
  of its own, and a publish is one NOTIFY, which PostgreSQL delivers to every listener on every node.

Either way a listener is a thread (a greenlet under gevent) started when the process first has a waiter; a message
it gets wakes that process's waiters of the topics it names. A message carries its sender's id so a process does
not wake its own waiters twice.
"""

import atexit
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

from django.db import connection

logger = logging.getLogger(__name__)

# Wakes the process's waiters of these topics; None wakes them all (after a gap in which messages may have been lost).
Wake = Callable[[Collection[str] | None], None]

# PostgreSQL's limit on a NOTIFY payload is 8000 bytes; topics are sent in messages below it.
PAYLOAD_LIMIT = 7000
NOTIFY_CHANNEL = "aitbc_wakeups"
# A listener whose connection failed tries again after this long; its waiters still end when their waits do.
RECONNECT_SECONDS = 1.0
# A listener's connection that has carried nothing this long is checked (a NOTIFY to itself would not do: a TCP
# connection that died silently is found by the keepalives asked for below).
LISTEN_TIMEOUT_SECONDS = 60.0
# How long a send waits for room in a worker's queue (a few datagrams deep) before giving that wake-up up.
SEND_TIMEOUT_SECONDS = 0.05
# Peers are re-read when the directory changes, and at least this often (a change within the clock's granularity
# of the previous read would not show in its mtime).
PEER_RESCAN_SECONDS = 1.0


def _split(sender: str, topics: Collection[str]) -> list[bytes]:
    """`topics` as messages of at most PAYLOAD_LIMIT bytes, each `sender` then its topics, one per line."""
    messages: list[bytes] = []
    lines: list[str] = [sender]
    size = len(sender)
    for topic in sorted(topics):
        if size + len(topic) + 1 > PAYLOAD_LIMIT and len(lines) > 1:
            messages.append("\n".join(lines).encode())
            lines, size = [sender], len(sender)
        lines.append(topic)
        size += len(topic) + 1
    messages.append("\n".join(lines).encode())
    return messages


def _parse(message: bytes | str) -> tuple[str, list[str]]:
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    sender, *topics = text.split("\n")
    return sender, topics


class Channel:
    """The transport one process uses; `listen` is idempotent, and restarts the listener in a forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listening_pid: int | None = None
        self._sender = ""

    @property
    def sender(self) -> str:
        return self._sender

    def listen(self, wake: Wake) -> None:
        if self._listening_pid == os.getpid():
            return
        with self._lock:
            if self._listening_pid == os.getpid():
                return
            self._sender = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            self._start_listener(wake)
            self._listening_pid = os.getpid()

    def send(self, topics: Collection[str]) -> None:
        raise NotImplementedError

    def _start_listener(self, wake: Wake) -> None:
        raise NotImplementedError


class DatagramChannel(Channel):
    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._receiver: socket.socket | None = None
        self._receiver_path: Path | None = None
        self._sender_socket: socket.socket | None = None
        self._sender_pid: int | None = None
        # The other processes' sockets, re-read only when the directory changed (a worker started or ended).
        self._peers: list[str] = []
        self._peers_version: int | None = None
        self._peers_read_at = 0.0

    def _start_listener(self, wake: Wake) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{os.getpid()}.sock"
        path.unlink(missing_ok=True)
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(path))
        atexit.register(path.unlink, missing_ok=True)
        self._receiver, self._receiver_path = receiver, path
        threading.Thread(target=self._receive, args=(receiver, wake), name="wakeups", daemon=True).start()

    def _receive(self, receiver: socket.socket, wake: Wake) -> None:
        while True:
            try:
                message = receiver.recv(65536)
                sender, topics = _parse(message)
                if sender != self.sender:
                    wake(topics)
            except Exception:
                logger.exception("A wake-up could not be received")

    def _peer_paths(self) -> list[str]:
        try:
            version = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return []
        if version != self._peers_version or time.monotonic() - self._peers_read_at > PEER_RESCAN_SECONDS:
            own = str(self._receiver_path) if self._listening_pid == os.getpid() else None
            self._peers = [entry.path for entry in os.scandir(self.directory) if entry.path != own]
            self._peers_version, self._peers_read_at = version, time.monotonic()
        return self._peers

    def send(self, topics: Collection[str]) -> None:
        peers = self._peer_paths()
        if not peers:
            return
        if self._sender_pid != os.getpid():
            self._sender_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # Under gevent a send that finds a worker's queue full waits for room cooperatively, briefly.
            self._sender_socket.settimeout(SEND_TIMEOUT_SECONDS)
            self._sender_pid = os.getpid()
        assert self._sender_socket is not None
        for message in _split(self.sender, topics):
            for peer in peers:
                try:
                    self._sender_socket.sendto(message, peer)
                except (ConnectionRefusedError, FileNotFoundError):
                    # A worker that ended without removing its socket (killed): nobody reads it any more.
                    Path(peer).unlink(missing_ok=True)
                except (BlockingIOError, TimeoutError):
                    # Its queue stayed full: that worker's waiters for these topics wait out their time instead.
                    logger.warning("A worker's wake-up queue is full; a wake-up to %s was dropped", peer)


class PostgresChannel(Channel):
    def _start_listener(self, wake: Wake) -> None:
        # The connection's settings are read now, in the request that first waits: under the test runner that is
        # the test database.
        parameters = connection.get_connection_params()
        parameters.pop("cursor_factory", None)
        parameters.pop("context", None)
        parameters.pop("prepare_threshold", None)
        threading.Thread(target=self._receive, args=(parameters, wake), name="wakeups", daemon=True).start()

    def _receive(self, parameters: dict[str, object], wake: Wake) -> None:
        import psycopg

        while True:
            try:
                with psycopg.connect(
                    **parameters, autocommit=True, keepalives=1, keepalives_idle=30, keepalives_interval=10,
                    keepalives_count=3,
                ) as listener:  # type: ignore[arg-type]
                    listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    # Anything published before LISTEN took effect (the first waiter's, or during a reconnect) was
                    # not heard: every waiter looks again.
                    wake(None)
                    while True:
                        for notification in listener.notifies(timeout=LISTEN_TIMEOUT_SECONDS):
                            sender, topics = _parse(notification.payload)
                            if sender != self.sender:
                                wake(topics)
            except Exception:
                logger.exception("The wake-up listener lost its connection; reconnecting")
                time.sleep(RECONNECT_SECONDS)

    def send(self, topics: Collection[str]) -> None:
        with connection.cursor() as cursor:
            for message in _split(self.sender or "-", topics):
                cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, message.decode()])


_channel: Channel | None = None


def channel() -> Channel:
    global _channel
    if _channel is None:
        _channel = _make_channel()
    return _channel


def _make_channel() -> Channel:
    if connection.vendor == "postgresql":
        return PostgresChannel()
    # Named after the database file, so every process using it (workers, a second server) finds the others, and
    # short enough for a socket path (108 bytes) wherever the file lies.
    name = hashlib.sha256(str(connection.settings_dict["NAME"]).encode()).hexdigest()[:16]
    return DatagramChannel(Path(tempfile.gettempdir()) / f"aitbc-wakeups-{name}")
