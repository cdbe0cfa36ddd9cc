"""The hostile-input gate runs only when asked for, through .ci/hostile.sh (AITBC_HOSTILE=sqlite or postgres).

It is not part of `make test` (`pytest -q`): it starts its own gunicorn, sends thousands of requests, some of them a
mebibyte, and takes minutes, where the suite is the developer's quick loop. A folder that collects nothing unless
its variable is set is the least surprising way to keep it out: `pytest -q` stays as it is, no marker has to be
remembered on the command line, and nothing in pytest.ini or the root conftest changes. (`pytest hostile` alone
collects nothing and says so: "no tests ran".)
"""

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from hostile.world import World, database_url_for, start_world

DATABASE_KIND = os.environ.get("AITBC_HOSTILE", "")
collect_ignore_glob = [] if DATABASE_KIND in ("sqlite", "postgres") else ["*.py"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    # .ci/hostile.sh stops an overlong run with TERM; gunicorn runs in a session of its own, so it is stopped by the
    # fixture's teardown, which a KeyboardInterrupt lets run and TERM's default action would not.
    signal.signal(signal.SIGTERM, _interrupt)
    # Under .ci/hostile.sh's own directory, which it removes when done; the server's log stays there until then.
    work = Path(tempfile.mkdtemp(prefix=f"aitbc-hostile-{DATABASE_KIND}-", dir=os.environ.get("AITBC_HOSTILE_WORK")))
    world = start_world(database_url_for(DATABASE_KIND, work), work)
    print(f"\n[hostile] {DATABASE_KIND}: gunicorn on port {world.port}, log {world.log_path}")
    try:
        yield world
    finally:
        world.server.stop()
