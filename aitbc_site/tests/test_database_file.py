"""The embedded default's SQLite database is readable by its owner only, and so is the directory it is made in."""

import os
import stat
from pathlib import Path

from aitbc_site.testing import run_manage


def test_a_new_sqlite_database_and_its_directory_are_made_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "data" / "coordinator.db"
    env = {**os.environ, "SECRET_KEY": "tests-only", "DATABASE_URL": f"sqlite:///{database}",
           "CACHE_DIR": str(tmp_path / "cache")}
    old_umask = os.umask(0o022)  # a common default: files world-readable unless made otherwise
    try:
        run_manage("migrate", "--no-input", env=env)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
    for file in database.parent.glob("coordinator.db*"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert database.stat().st_size > 0


def test_loading_the_settings_alone_creates_no_database(tmp_path: Path) -> None:
    # A build step (collectstatic as root in the Dockerfile) must leave nothing the service user could not open.
    database = tmp_path / "data" / "coordinator.db"
    env = {**os.environ, "SECRET_KEY": "tests-only", "DATABASE_URL": f"sqlite:///{database}",
           "CACHE_DIR": str(tmp_path / "cache")}

    run_manage("check", env=env)

    assert not database.parent.exists()
