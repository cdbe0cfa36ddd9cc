"""A job live, as Server-Sent Events: its timeline (`/events`) and its partial output (`/stream`).

Both streams read the database, send what is new, then sleep until the job changes (`jobs.topics`) and read again;
they end with the job. While nothing happens they write a comment every STREAM_KEEPALIVE_SECONDS, which keeps
proxies from closing them and lets the server notice a reader that left (the write fails, the stream is closed).
A stream also ends when its worker stops (a reload) and after STREAM_MAX_SECONDS: the reader reconnects with
`Last-Event-ID` and misses nothing.

Event ids. Timeline: the event's position in the job's timeline (1 for the first), as the plain listing shows it.
Output: a chunk's `position` (the plain listing's), and `reset-<attempt>` for the reset that discards the chunks of
an attempt that ended without a result. Resuming after either sends exactly what follows it.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer

from aitbc_site import wakeups
from aitbc_site.rendering import JSONRenderer
from jobs import selectors
from jobs.exceptions import InvalidStreamPosition
from jobs.models import TERMINAL_STATUSES, AttemptOutcome, Job, JobStatus
from jobs.serializers import JobEventSerializer, JobOutputChunkSerializer
from jobs.topics import job_topic

EVENT_STREAM = "text/event-stream"
# Rows one read sends at most, so a long backlog goes out in several writes rather than one large one.
READ_BATCH = 200
KEEPALIVE = b": keep-alive\n\n"
# The id of an output stream's last event: a reader that resumes after it is answered 204, which tells a browser's
# EventSource to stop reconnecting.
END_EVENT_ID = "end"


class EventStreamRenderer(BaseRenderer):
    """Lets a view be asked for `text/event-stream`; the view answers such a request with a stream of its own."""

    media_type = EVENT_STREAM
    format = "event-stream"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data)


def wants_event_stream(request: Any) -> bool:
    """Whether to answer with a stream: asked for one, and not by HEAD, whose body nobody would read (and whose
    reader leaving the server would never notice)."""
    return request.method == "GET" and isinstance(getattr(request, "accepted_renderer", None), EventStreamRenderer)


def event_stream_response(events: Iterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type=EVENT_STREAM)
    response["Cache-Control"] = "no-cache"
    # nginx (scaled mode) passes each event on as it comes instead of buffering the response.
    response["X-Accel-Buffering"] = "no"
    return response


def sse(*, event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    # Rendered JSON holds no raw newline, so one `data:` line carries it.
    return f"{head}event: {event}\ndata: ".encode() + JSONRenderer().render(data) + b"\n\n"


class StreamClock:
    """When a stream must end (STREAM_MAX_SECONDS after it began, or its worker stopping)."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + settings.STREAM_MAX_SECONDS

    def running(self) -> bool:
        return not wakeups.stopping() and time.monotonic() < self.deadline

    def sleep(self, waiter: wakeups.Waiter) -> bytes | None:
        """Wait for the job to change; the keep-alive comment to write if it did not."""
        wakeups.release_connections()
        timeout = min(settings.STREAM_KEEPALIVE_SECONDS, self.deadline - time.monotonic())
        return None if waiter.wait(timeout) else KEEPALIVE


def timeline_stream(*, job: Job, position: int) -> Iterator[bytes]:
    """The job's timeline after `position`, live, ending after its terminal event."""
    clock = StreamClock()
    with wakeups.listening([job_topic(job.pk)]) as waiter:
        while clock.running():
            # The status first: if it is an end state, every event up to it is stored, so an empty read after it
            # means the reader has them all.
            ended = selectors.job_status(job_id=job.pk) in TERMINAL_STATUSES
            events = list(selectors.job_events(job=job)[position : position + READ_BATCH])
            written: list[bytes] = []
            terminal = False
            for event in events:
                position += 1
                event.position = position
                written.append(sse(event="status", data=JobEventSerializer(event).data, event_id=str(position)))
                terminal = event.to_status in TERMINAL_STATUSES
                if terminal:
                    break
            # Written without a pooled connection: a reader that reads slowly must not hold one meanwhile.
            wakeups.release_connections()
            yield from written
            if terminal:
                return
            if len(events) == READ_BATCH:
                continue
            if ended:
                return
            keepalive = clock.sleep(waiter)
            if keepalive:
                yield keepalive


def timeline_finished(*, job: Job, position: int) -> bool:
    """Whether a reader that has the timeline up to `position` has it all: the job ended and nothing follows."""
    return position > 0 and selectors.job_status(job_id=job.pk) in TERMINAL_STATUSES and not selectors.job_events(
        job=job
    )[position : position + 1].exists()


def timeline_position(last_event_id: str | None) -> int:
    if not last_event_id:
        return 0
    if not last_event_id.isdigit() or len(last_event_id) > 9:
        raise InvalidStreamPosition(details={"last_event_id": last_event_id[:100]})
    return int(last_event_id)


@dataclass
class OutputCursor:
    """Where an output stream stands: after the chunk at `position`; `attempt` is the attempt whose chunks the
    reader has been sent and not had reset (None: none); attempts below `from_attempt` are done with."""

    position: int = 0
    attempt: int | None = None
    from_attempt: int = 0


def output_stream(*, job: Job, cursor: "OutputCursor") -> Iterator[bytes]:
    """The job's partial output after `cursor`, live: each attempt's chunks in order, a `reset` when an attempt
    whose chunks were sent ends without a result, and an `end` event with the job's final status."""
    clock = StreamClock()
    with wakeups.listening([job_topic(job.pk)]) as waiter:
        while clock.running():
            # The job first, then its chunks: chunks are only kept while their attempt holds the lease, so none can
            # follow a status read as ended, and none of an attempt read as over.
            status, current_attempt = selectors.job_status_and_handouts(job_id=job.pk)
            chunks = list(
                selectors.output_chunks(job=job)
                .filter(pk__gt=cursor.position, attempt__gte=cursor.from_attempt)
                .order_by("pk")[:READ_BATCH]
            )
            written: list[bytes] = []
            for chunk in chunks:
                if cursor.attempt is not None and chunk.attempt != cursor.attempt:
                    written.append(_reset(cursor))
                cursor.attempt, cursor.position = chunk.attempt, chunk.pk
                written.append(sse(event="output", data=JobOutputChunkSerializer(chunk).data, event_id=str(chunk.pk)))
            if written:
                wakeups.release_connections()
                yield from written
            if len(chunks) == READ_BATCH:
                continue
            # Every chunk kept before the job was read has been sent: judge by what was read. The attempt whose
            # chunks were sent is over unless the job still runs it; over without a result, it is reset.
            attempt_is_live = status == JobStatus.RUNNING and current_attempt == cursor.attempt
            if cursor.attempt is not None and not attempt_is_live:
                if selectors.attempt_outcome(job_id=job.pk, number=cursor.attempt) != AttemptOutcome.COMPLETED:
                    yield _reset(cursor)
                    continue
            if status in TERMINAL_STATUSES:
                yield sse(event="end", data={"status": status}, event_id=END_EVENT_ID)
                return
            keepalive = clock.sleep(waiter)
            if keepalive:
                yield keepalive


def _reset(cursor: OutputCursor) -> bytes:
    assert cursor.attempt is not None
    attempt = cursor.attempt
    cursor.attempt, cursor.from_attempt = None, attempt + 1
    return sse(event="reset", data={"attempt": attempt}, event_id=f"reset-{attempt}")


def output_cursor(job: Job, last_event_id: str | None) -> OutputCursor | None:
    """Where to resume after `last_event_id`; None after the end (nothing more will come)."""
    if not last_event_id:
        return OutputCursor()
    if last_event_id == END_EVENT_ID:
        return None
    if last_event_id.startswith("reset-") and last_event_id[6:].isdigit() and len(last_event_id) < 16:
        return OutputCursor(from_attempt=int(last_event_id[6:]) + 1)
    if last_event_id.isdigit() and len(last_event_id) < 19:
        attempt = selectors.output_chunk_attempt(job=job, position=int(last_event_id))
        if attempt is not None:
            return OutputCursor(position=int(last_event_id), attempt=attempt, from_attempt=attempt)
    raise InvalidStreamPosition(details={"last_event_id": last_event_id[:100]})
