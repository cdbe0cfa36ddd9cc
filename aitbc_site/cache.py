"""The embedded default's shared cache: diskcache, tuned for the rate limiter's counters on the request path."""

import os
from typing import Any

from diskcache import DjangoCache, FanoutCache
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from aitbc_site.env import serving_greenlets

# The process's diskcache objects, by process (a forked worker makes its own), directory and settings.
_SHARED: dict[tuple[Any, ...], FanoutCache] = {}


class PersistentDiskCache(DjangoCache):
    """diskcache's Django backend, minus the costs it pays on every request, or every connection.

    Django makes a cache object per thread, which under gevent is per greenlet: per client connection. diskcache's
    object opens and sets up every shard's database when made (several milliseconds), and keeps a connection per
    thread. So the underlying cache is made once per process and shared; under gevent its connections are per OS
    thread, the worker's one, since no cache operation lets another greenlet run before it is done.

    Django closes every cache when a request finishes; diskcache then drops its per-thread SQLite connections and
    opens them again, re-reading its settings table, on the next request. Its connections are per thread and it
    reopens them by itself after a fork, so they can safely live as long as the worker.

    django-ratelimit counts with `add()` and then `incr()`, and diskcache's `add()` takes SQLite's write lock even
    when the key exists, which for a counter is nearly always. Looking first is a read, which WAL serves beside the
    writer; only a missing (or expired) key pays for the write.
    """

    def __init__(self, directory: str, params: dict[str, Any]) -> None:
        BaseCache.__init__(self, params)
        shards, timeout = params.get("SHARDS", 8), params.get("DATABASE_TIMEOUT", 0.010)
        options = params.get("OPTIONS", {})
        key = (os.getpid(), directory, shards, timeout, repr(sorted(options.items())))
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = FanoutCache(directory, shards, timeout, **options)
            if serving_greenlets():
                from gevent.monkey import get_original

                for shard in shared._shards:
                    shard._local = get_original("threading", "local")()
        self._cache = shared

    def close(self, **kwargs: Any) -> None:
        return None


    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None, **kwargs: Any
    ) -> bool:
        if self.has_key(key, version=version):
            return False
        return super().add(key, value, timeout, version=version, **kwargs)
