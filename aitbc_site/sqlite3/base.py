"""Django's SQLite backend, which makes a new database file and its directory readable by their owner only, and
under gevent waits for SQLite's write lock without stopping the worker.

SQLite creates a missing database file with the process's umask (usually world-readable), and its -wal and -shm
files take the database file's mode. The database holds every balance, key hash and session, so the file is made
here, mode 0600 in a 0700 directory, just before SQLite first opens it. Only when a connection opens, not when the
settings load: a build step that merely imports them (collectstatic as root in the Dockerfile) must leave no file
behind that the service user could not open.

SQLite waits for a lock another process holds in its busy handler, which sleeps in C: under gunicorn's gevent worker
that would stop every request of the worker, not just the one waiting. There the driver's own wait is turned off
and a statement SQLite answers "database is locked" is tried again after a sleep gevent can switch away from, for
as long as the configured timeout. Retrying is safe: a statement refused for a lock did nothing (with BEGIN IMMEDIATE
the lock is taken, or refused, by BEGIN itself, before any write of the transaction).
"""

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from django.db.backends.sqlite3 import base

from aitbc_site.env import serving_greenlets

T = TypeVar("T")
# The first and the longest sleep between two tries of a statement refused for a lock.
FIRST_RETRY_SECONDS = 0.001
LONGEST_RETRY_SECONDS = 0.02
# Held by the one statement of this process retrying for the lock; gevent's lock once the worker has patched threading.
_refused_statements = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        _create_owner_only(str(conn_params["database"]))
        if serving_greenlets():
            conn_params = {**conn_params, "factory": CooperativeConnection, "timeout": 0}
            CooperativeConnection.busy_timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
        return super().get_new_connection(conn_params)


def _retrying_on_lock(run: Callable[[], T], timeout: float, *, in_transaction: bool) -> T:
    try:
        return run()
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
    # Refused for the lock: queue behind this worker's other refused statements, so that one at a time tries again
    # (a thousand greenlets each retrying would spend the CPU the lock's holder needs to finish). Not a statement
    # inside a transaction, which may be the one the lock's holder of this worker waits for.
    deadline = time.monotonic() + timeout
    with contextlib.nullcontext() if in_transaction else _refused_statements:
        delay = FIRST_RETRY_SECONDS
        while True:
            # time.sleep is gevent's here: the worker serves its other requests meanwhile.
            time.sleep(delay)
            try:
                return run()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)


class _RetryingCursor:
    """A cursor whose statements wait cooperatively for SQLite's lock (mixed into the driver's cursor classes)."""

    busy_timeout: float

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        return _retrying_on_lock(
            lambda: super(_RetryingCursor, self).execute(sql, parameters), self.busy_timeout,
            in_transaction=self.connection.in_transaction,  # type: ignore[attr-defined]
        )

    def executemany(self, sql: str, parameters: Any) -> Any:
        return _retrying_on_lock(
            lambda: super(_RetryingCursor, self).executemany(sql, parameters), self.busy_timeout,
            in_transaction=self.connection.in_transaction,  # type: ignore[attr-defined]
        )


@cache
def _retrying(cursor_class: type, busy_timeout: float) -> type:
    return type(f"Retrying{cursor_class.__name__}", (_RetryingCursor, cursor_class), {"busy_timeout": busy_timeout})


class CooperativeConnection(sqlite3.Connection):
    busy_timeout = 5.0

    def cursor(self, factory: type = sqlite3.Cursor) -> Any:  # type: ignore[override]
        return super().cursor(factory=_retrying(factory, self.busy_timeout))

    def execute(self, sql: str, parameters: Any = ()) -> Any:  # type: ignore[override]
        # The driver's shortcut (Django's backend runs the PRAGMAs of a new connection with it) makes its cursor
        # without the factory.
        return self.cursor().execute(sql, parameters)


def _create_owner_only(name: str) -> None:
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass  # another worker made it first, the same way
