"""Django's SQLite backend, which makes a new database file and its directory readable by their owner only.

SQLite creates a missing database file with the process's umask (usually world-readable), and its -wal and -shm
files take the database file's mode. The database holds every balance, key hash and session, so the file is made
here, mode 0600 in a 0700 directory, just before SQLite first opens it. Only when a connection opens, not when the
settings load: a build step that merely imports them (collectstatic as root in the Dockerfile) must leave no file
behind that the service user could not open.
"""

import os
from pathlib import Path
from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        _create_owner_only(str(conn_params["database"]))
        return super().get_new_connection(conn_params)


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
