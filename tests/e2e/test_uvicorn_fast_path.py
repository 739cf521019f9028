"""The hub's uvicorn fast path (writing shared bytes straight to the connection) relies on
uvicorn's private request-cycle objects. When an upgrade changes them the service still works, on
the generic path, but loses about half its fan-out throughput: this test makes that loud."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from sidestream import servers
from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.service import create_app
from sidestream.sse import Event, EventStreamParser
from sidestream.testing import serve_asgi


def publish_and_read(bus: Bus, channel: str, chunks: Iterator[bytes]) -> tuple[str, list[Event]]:
    """Publish "hello" on `channel`; its id, and the first events the open stream then parses."""
    event_id = bus.publish(channel, "hello")
    parser = EventStreamParser()
    events: list[Event] = []
    while not events:
        events = parser.feed(next(chunks))
    return event_id, events


def test_under_uvicorn_the_hub_writes_events_directly(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    framed: list[bytes] = []
    frame = servers.http_chunk
    monkeypatch.setattr(servers, "http_chunk", lambda body: framed.append(body) or frame(body))
    service_bus = AsyncBus(connect_async("memory://"), prefix=key_prefix)
    app = create_app(service_bus, authorize=allow_everyone, heartbeat=30)
    bus = Bus(connect("memory://"), prefix=key_prefix)
    with (
        serve_asgi(app) as base,
        httpx.stream("GET", f"{base}/events", params={"channel": "fast"}, timeout=10) as stream,
    ):
        chunks = stream.iter_raw()
        next(chunks)  # retry: and id: of the starting position: the stream is open
        [subscriber] = app.hub._subscribers
        assert subscriber._direct is not None, (
            "uvicorn's request cycle no longer looks as sidestream.servers.UvicornConnection "
            "expects (flow.write_paused, disconnected, response_complete): the fast path is off"
        )
        event_id, events = publish_and_read(bus, "fast", chunks)
        assert [(e.id, e.data) for e in events] == [(event_id, "hello")]
        assert app.hub.stats().delivered >= 1
        assert len(framed) == 1 and b"hello" in framed[0], (
            "uvicorn's request cycle no longer has chunked_encoding and transport: events go "
            "through its send(), framed once per stream instead of once per event"
        )


def test_an_event_is_framed_as_uvicorn_frames_a_chunk_once_for_every_stream() -> None:
    body = b"id: 1-0\ndata: hello\n\n"
    framed = servers.http_chunk(body)
    assert framed == b"".join([b"%x\r\n" % len(body), body, b"\r\n"])  # uvicorn's framing
    assert servers.http_chunk(body) is framed  # the same event again: no new bytes
    other = servers.http_chunk(b"x" * 300)
    assert other == b"12c\r\n" + b"x" * 300 + b"\r\n"


def test_fast_path_false_serves_through_the_generic_adapter_and_says_so(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    service_bus = AsyncBus(connect_async("memory://"), prefix=key_prefix)
    app = create_app(service_bus, authorize=allow_everyone, heartbeat=30, fast_path=False)
    bus = Bus(connect("memory://"), prefix=key_prefix)
    with (
        caplog.at_level(logging.INFO, logger="sidestream.servers"),
        serve_asgi(app) as base,
        httpx.stream("GET", f"{base}/events", params={"channel": "slow"}, timeout=10) as stream,
    ):
        chunks = stream.iter_raw()
        next(chunks)
        [subscriber] = app.hub._subscribers
        assert subscriber._direct is None  # every event takes the queue
        event_id, events = publish_and_read(bus, "slow", chunks)
        assert [(e.id, e.data) for e in events] == [(event_id, "hello")]
    said = [r.getMessage() for r in caplog.records if r.name == "sidestream.servers"]
    assert "http connections are served by the generic adapter (fast_path=False)" in said


class _Flow:
    write_paused = False


class _Cycle:
    """The parts of uvicorn's httptools request cycle the adapter reads."""

    def __init__(self) -> None:
        self.flow, self.disconnected, self.response_complete = _Flow(), False, False
        self.chunked_encoding = True
        self.written: list[bytes] = []
        self.transport = self
        self.sent: list[dict[str, object]] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        pass

    async def receive(self) -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, object]) -> None:
        self.sent.append(message)


async def test_a_middleware_that_wraps_send_keeps_every_event_going_through_it() -> None:
    """A compressor or a byte counter wraps `send` and passes `receive` on: writing framed
    chunks to the transport would bypass it (a gzip body with plain chunks spliced in)."""
    cycle = _Cycle()
    through: list[dict[str, object]] = []

    async def wrapped(message: dict[str, object]) -> None:
        through.append(message)
        await cycle.send(message)

    for send, framed in ((cycle.send, True), (wrapped, False)):
        cycle.written.clear()
        conn = servers.connection({"type": "http", "method": "GET"}, cycle.receive, send)
        write = conn.direct_writer(lambda: None)
        assert write is not None and write(b"data: x\n\n")
        assert cycle.written == ([servers.http_chunk(b"data: x\n\n")] if framed else [])
    assert [m["body"] for m in through] == [b"data: x\n\n"]


def test_an_empty_body_frames_to_nothing_not_to_the_last_chunk() -> None:
    assert servers.http_chunk(b"") == b""  # b"0\r\n\r\n" would end the response
