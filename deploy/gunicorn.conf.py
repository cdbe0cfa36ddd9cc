"""gunicorn settings for every mode: `gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application`.

Values come from the same environment as Django's settings. Workers default to one per core; each worker is gunicorn's
gevent worker, serving every connection in a greenlet of its own, so requests that wait (a miner's long-poll, a
client's event stream) cost a little memory and no thread (README, "Server model").
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# The settings module, named before any worker starts: gevent's patching (first thing in a worker) inspects every
# object the master imported, Django's lazy settings among them, which raise if no settings module is named.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aitbc_site.settings")

# The project root, so the command works from any directory (systemd, Docker and `make run` all use it).
chdir = str(Path(__file__).resolve().parent.parent)

# Metrics from all workers are summed by prometheus_client's multiprocess mode, which needs this directory set
# before any worker imports prometheus_client.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(tempfile.gettempdir()) / f"aitbc-prometheus-{os.environ.get('API_PORT', '8000')}"),
)

bind = f"{os.environ.get('API_HOST', '127.0.0.1')}:{os.environ.get('API_PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
# gunicorn's gevent worker, answering the requests it cannot parse in the API's JSON error envelope.
worker_class = "aitbc_site.gunicorn_classes.EnvelopeGeventWorker"
# Connections one worker serves at once: waiting miners and streaming clients each hold one.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS") or 4000)
# gunicorn's own limits, stated because the OpenAPI document promises them (414 and 431 in the error envelope).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = 30
keepalive = 5
# HUP re-reads this file and replaces the workers one by one, each finishing its requests first (graceful_timeout).
# Recycle workers now and then so a slow leak cannot grow without bound; the jitter keeps them from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or 10000)
max_requests_jitter = max_requests // 10
# gunicorn's control socket (gunicornc) defaults to one path per user, so two instances on one machine would take it
# from each other, and a service user without a writable home fails to make it. Operators steer gunicorn with
# signals (systemctl reload sends HUP); GUNICORN_CONTROL_SOCKET names a socket path for those who want gunicornc.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True
# Only the nginx in front may say a request came over HTTPS (X-Forwarded-Proto); list its address on other hosts.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Every line gunicorn writes is JSON too, through the formatter Django's logging uses (aitbc_site/logs.py). The access
# log (GUNICORN_ACCESS_LOG=- for standard output) records method, path without the query string, status and
# duration with the request id; never the headers, which carry keys and session tokens.
_access_log = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = "%(m)s %(U)s %(s)s %(B)s %(M)sms"
_json_handler: dict[str, Any] = {"formatter": "json", "filters": ["request_id"]}
_access_handler: dict[str, Any]
if _access_log == "-":
    _access_handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", **_json_handler}
elif _access_log:
    _access_handler = {"class": "logging.FileHandler", "filename": _access_log, **_json_handler}
else:
    _access_handler = {"class": "logging.NullHandler"}
# Formats an access line only when a handler writes it.
logger_class = "aitbc_site.gunicorn_classes.Logger"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "aitbc_site.logs.RequestIdFilter"}},
    "formatters": {"json": {"()": "aitbc_site.logs.JsonLineFormatter"}},
    "handlers": {
        "json": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", **_json_handler},
        "access": _access_handler,
    },
    "root": {"level": "INFO", "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["json"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}
# Python warnings (a missing static directory, a deprecation) go through logging as well, so they are JSON lines
# too instead of bare text on stderr; workers inherit this when they fork.
logging.captureWarnings(True)


def on_starting(server: Any) -> None:
    # Files left by a previous run would be summed into this run's counters. Empty the directory rather than remove
    # it: under systemd it is the RuntimeDirectory, which the service user may fill but not delete.
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    # Each worker runs the periodic maintenance in a background thread (embedded default: no cron needed). The
    # maintenance is safe to run concurrently, so several workers doing it only costs a few idle queries.
    from aitbc_site.maintenance import start_background_maintenance

    start_background_maintenance()
