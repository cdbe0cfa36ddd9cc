"""The embedded default's cache: diskcache kept open across requests, with an add() that reads before it writes."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aitbc_site.cache import PersistentDiskCache


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[PersistentDiskCache]:
    cache = PersistentDiskCache(str(tmp_path / "cache"), {})
    yield cache
    cache._cache.close()


def test_add_stores_a_missing_key_and_leaves_a_present_one(cache: PersistentDiskCache) -> None:
    assert cache.add("counter", 1, timeout=60)
    assert not cache.add("counter", 5, timeout=60)
    assert cache.get("counter") == 1
    assert cache.incr("counter") == 2


def test_add_replaces_an_expired_key(cache: PersistentDiskCache) -> None:
    assert cache.add("counter", 7, timeout=0.05)
    time.sleep(0.1)

    assert cache.add("counter", 1, timeout=60)
    assert cache.get("counter") == 1


def test_close_at_the_end_of_a_request_keeps_the_cache_working(cache: PersistentDiskCache) -> None:
    cache.set("key", "value")
    connection = cache._cache._shards[0]._con

    cache.close()

    assert cache.get("key") == "value"
    assert cache._cache._shards[0]._con is connection
