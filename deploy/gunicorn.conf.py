"""gunicorn settings for every mode: `gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application`.

Values come from the same environment as Django's settings. Workers default to one per core; each worker serves
several requests at once with threads, since most of a request is spent waiting on the database.
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Metrics from all workers are summed by prometheus_client's multiprocess mode, which needs this directory set
# before any worker imports prometheus_client.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(Path(tempfile.gettempdir()) / f"aitbc-prometheus-{os.environ.get('API_PORT', '8000')}")
)

bind = f"{os.environ.get('API_HOST', '127.0.0.1')}:{os.environ.get('API_PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = 30
keepalive = 5
# HUP re-reads this file and replaces the workers one by one, each finishing its requests first (graceful_timeout).
# Recycle workers now and then so a slow leak cannot grow without bound; the jitter keeps them from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or 10000)
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server: Any) -> None:
    # Files left by a previous run would be summed into this run's counters.
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    # Each worker runs the periodic maintenance in a background thread (embedded default: no cron needed). The
    # maintenance is safe to run concurrently, so several workers doing it only costs a few idle queries.
    from aitbc_site.maintenance import start_background_maintenance

    start_background_maintenance()
