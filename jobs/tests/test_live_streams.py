"""Against a real gunicorn server (2 gevent workers) on a database file or PostgreSQL: a client's event streams
follow a running job live, across workers; resuming with Last-Event-ID loses and repeats nothing; an attempt whose
lease lapsed is reset and its late chunks never reach the stream; readers that leave free their streams."""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitbc_site.testing import LiveServer, live_server
from conftest import live_env
from jobs.tests.test_live_waiting import client, register, submit, waiting_requests

pytestmark = pytest.mark.live

API_KEY = "live-waiting-key"
SSE = {"Accept": "text/event-stream"}
# Every wait for a reader to catch up is bounded by this.
CATCH_UP_SECONDS = 10


@pytest.fixture
def server(live_database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    env = live_env(live_database_url, API_KEYS=API_KEY, STREAM_KEEPALIVE_SECONDS="1", JOB_LEASE_SECONDS="3",
                   JOB_RETRY_BACKOFF_SECONDS="1")
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=2) as live:
        yield live


class Reader(threading.Thread):
    """Reads one event stream into `events` until it ends, or until `stop_after` events."""

    def __init__(self, server: LiveServer, path: str, *, last_event_id: str | None = None,
                 stop_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.url = server.url + path
        self.headers = {**SSE, "X-Api-Key": API_KEY, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        self.stop_after = stop_after
        self.events: list[dict[str, Any]] = []
        self.ended = False

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"] == "text/event-stream"
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if self.stop_after == 0:
                    return
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if fields:
                    self.events.append({"id": fields.get("id"), "event": fields["event"],
                                        "data": json.loads(fields["data"])})
                    fields = {}
                    if self.stop_after is not None and len(self.events) >= self.stop_after:
                        return
        self.ended = True

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.events) >= count, self.events


def take(http: httpx.Client, miner_id: str, job_id: str) -> None:
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while time.monotonic() < deadline:
        results = http.get("/v1/miner/jobs", params={"miner_id": miner_id, "wait": 1}).json()["results"]
        if results:
            assert [job["id"] for job in results] == [job_id]
            return
    raise AssertionError("the job was never handed out")


def post_chunk(http: httpx.Client, miner_id: str, job_id: str, seq: int, data: str) -> httpx.Response:
    return http.post(f"/v1/miner/jobs/{job_id}/output",
                     json={"miner_id": miner_id, "chunks": [{"seq": seq, "data": data}]})


def finish(http: httpx.Client, miner_id: str, job_id: str) -> None:
    posted = http.post("/v1/miner/result", json={"miner_id": miner_id, "job_id": job_id, "status": "completed",
                                                 "result": {}})
    assert posted.status_code == 200, posted.text


def test_the_output_stream_relays_each_chunk_as_it_is_posted(server: LiveServer) -> None:
    with client(server) as http:
        miner_id = register(http, 1)
        job_id = submit(http)
        take(http, miner_id, job_id)
        reader = Reader(server, f"/v1/client/jobs/{job_id}/stream")
        reader.start()
        for seq in range(20):
            assert post_chunk(http, miner_id, job_id, seq, f"token{seq} ").status_code == 200
            # Each chunk reaches the reader while the job still runs, before the next is posted.
            reader.wait_for(seq + 1)
        finish(http, miner_id, job_id)
        reader.join(timeout=CATCH_UP_SECONDS)

    assert reader.ended
    assert [event["data"]["data"] for event in reader.events[:-1]] == [f"token{seq} " for seq in range(20)]
    assert reader.events[-1] == {"id": "end", "event": "end", "data": {"status": "completed"}}


def test_resuming_with_last_event_id_loses_and_repeats_nothing(server: LiveServer) -> None:
    with client(server) as http:
        miner_id = register(http, 2)
        job_id = submit(http)
        take(http, miner_id, job_id)
        first = Reader(server, f"/v1/client/jobs/{job_id}/stream", stop_after=5)
        first.start()
        for seq in range(10):
            assert post_chunk(http, miner_id, job_id, seq, f"{seq},").status_code == 200
        first.join(timeout=CATCH_UP_SECONDS)
        second = Reader(server, f"/v1/client/jobs/{job_id}/stream", last_event_id=first.events[-1]["id"])
        second.start()
        second.wait_for(5)
        for seq in range(10, 15):
            assert post_chunk(http, miner_id, job_id, seq, f"{seq},").status_code == 200
        finish(http, miner_id, job_id)
        second.join(timeout=CATCH_UP_SECONDS)

    received = [event["data"]["seq"] for event in first.events + second.events if event["event"] == "output"]
    assert received == list(range(15))
    assert second.ended


def test_the_timeline_streams_live_and_ends_with_the_job(server: LiveServer) -> None:
    with client(server) as http:
        miner_id = register(http, 3)
        job_id = submit(http)
        reader = Reader(server, f"/v1/client/jobs/{job_id}/events")
        reader.start()
        time.sleep(0.3)
        take(http, miner_id, job_id)
        reader.wait_for(1)
        finish(http, miner_id, job_id)
        reader.join(timeout=CATCH_UP_SECONDS)
        listed = http.get(f"/v1/client/jobs/{job_id}/events").json()["results"]

    assert reader.ended
    assert [event["data"] for event in reader.events] == listed
    assert [event["data"]["to"] for event in reader.events] == ["running", "completed"]


def test_chunks_after_a_lapsed_lease_never_reach_the_stream(server: LiveServer) -> None:
    with client(server) as http:
        first = register(http, 4)
        second = register(http, 5)
        job_id = submit(http)
        take(http, first, job_id)
        reader = Reader(server, f"/v1/client/jobs/{job_id}/stream")
        reader.start()
        assert post_chunk(http, first, job_id, 0, "first attempt").status_code == 200
        reader.wait_for(1)
        # The first miner goes quiet; its lease (3 s) lapses and the second miner's poll requeues and then takes it.
        take(http, second, job_id)
        late = post_chunk(http, first, job_id, 1, "too late")
        assert late.status_code == 409, late.text
        assert post_chunk(http, second, job_id, 0, "second attempt").status_code == 200
        finish(http, second, job_id)
        reader.join(timeout=CATCH_UP_SECONDS)

    assert [(event["event"], event["data"].get("data")) for event in reader.events] == [
        ("output", "first attempt"), ("reset", None), ("output", "second attempt"), ("end", None),
    ]


def test_readers_that_leave_mid_stream_free_their_streams(server: LiveServer) -> None:
    with client(server) as http:
        job_id = submit(http)
        readers = [Reader(server, f"/v1/client/jobs/{job_id}/events", stop_after=0) for _ in range(10)]
        for reader in readers:
            # stop_after=0: the reader leaves as soon as the stream's first line arrives (the keep-alive).
            reader.start()
        for reader in readers:
            reader.join(timeout=CATCH_UP_SECONDS)
        # Each stream notices its reader left at its next keep-alive (1 s here) and ends.
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while waiting_requests(http.get("/metrics").text) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert waiting_requests(http.get("/metrics").text) == 0
