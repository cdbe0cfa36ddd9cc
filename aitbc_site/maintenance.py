"""Periodic maintenance inside the server, for the embedded default where no cron or systemd timer runs."""

import logging
import random
import threading

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


def run_maintenance_once() -> None:
    """What `cleanup_miners` and `check_payments` do, in one round."""
    from exchange.services import check_open_payments
    from jobs.services.maintenance import catch_up_stored_state

    counts = {**catch_up_stored_state(), **check_open_payments()}
    if any(counts.values()):
        logger.info("maintenance: %s", counts)


def _loop(interval: int, stop: threading.Event) -> None:
    # Start at a random point of the interval so the workers do not all run at the same moment.
    while not stop.wait(interval * random.uniform(0.5, 1.0)):
        try:
            run_maintenance_once()
        except Exception:
            # A failed round (database restarting, say) must not kill the thread: log it and try next round.
            logger.exception("maintenance round failed")
        finally:
            close_old_connections()


def start_background_maintenance() -> threading.Event | None:
    interval = settings.MAINTENANCE_INTERVAL_SECONDS
    if interval <= 0:
        return None
    stop = threading.Event()
    threading.Thread(target=_loop, args=(interval, stop), name="maintenance", daemon=True).start()
    return stop
