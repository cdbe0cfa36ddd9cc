"""The embedded default's shared cache: diskcache, tuned for the rate limiter's counters on the request path."""

from typing import Any

from diskcache import DjangoCache
from django.core.cache.backends.base import DEFAULT_TIMEOUT


class PersistentDiskCache(DjangoCache):
    """diskcache's Django backend, minus two costs it pays on every request.

    Django closes every cache when a request finishes; diskcache then drops its per-thread SQLite connections and
    opens them again, re-reading its settings table, on the next request. Its connections are per thread and it
    reopens them by itself after a fork, so they can safely live as long as the worker.

    django-ratelimit counts with `add()` and then `incr()`, and diskcache's `add()` takes SQLite's write lock even
    when the key exists, which for a counter is nearly always. Looking first is a read, which WAL serves beside the
    writer; only a missing (or expired) key pays for the write.
    """

    def close(self, **kwargs: Any) -> None:
        return None

    def release_own_connections(self) -> None:
        """Close the calling thread's (greenlet's) connections: a request about to wait a long while gives them
        back rather than keep one open per waiting connection; they reopen on its next use."""
        self._cache.close()

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None, **kwargs: Any
    ) -> bool:
        if self.has_key(key, version=version):
            return False
        return super().add(key, value, timeout, version=version, **kwargs)
