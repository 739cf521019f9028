"""Cursors newer than the stream (issue 11, defect 3): a `Last-Event-ID` from the future, u64 max,
or one from a Redis whose clock ran ahead must never make the service (or the long poll) swallow
the next events in silence. Either the cursor is refused with a 400 naming it, or the client gets
the documented `reset` (reason `cursor-ahead`) and then the events published after it connected;
a long poll answers at once with `"reset": true` and the stream's newest id.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from reliability_helpers import Stack

from sidestream.bus import Bus, connect, parse_cursor
from sidestream.testing import StreamReader

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.redis]

U64 = 2**64 - 1
FUTURE = {
    "far-future": lambda latest: "99999999999999-0",
    "u64-max": lambda latest: f"{U64}-{U64}",
    "a-minute-ahead": lambda latest: f"{parse_cursor(latest)[0] + 60_000}-0",
}


def _refused_naming_cursor(response: httpx.Response, names: tuple[str, ...]) -> bool:
    if response.status_code != 400:
        return False
    text = json.dumps(json.loads(response.read())).lower()
    return any(name in text for name in names)


@pytest.mark.parametrize("make", FUTURE.values(), ids=FUTURE.keys())
def test_stream_cursor_from_the_future_is_not_silence(stack: Stack, make: object) -> None:
    channel = f"user:{stack.tag}-future-{time.monotonic_ns()}"
    bus = Bus(connect(stack.redis_url))
    try:
        first = bus.publish(channel, "before")
        cursor = make(first)  # type: ignore[operator]
        token = stack.tokens.issue("f", subscribe=[channel])
        url = f"{stack.service.base}/events"
        params = {"channel": channel, "token": token}
        headers = {"Accept": "text/event-stream", "Last-Event-ID": cursor}
        marks = stack.logs()
        with httpx.stream("GET", url, params=params, headers=headers, timeout=10) as response:
            if _refused_naming_cursor(response, ("cursor", "last-event-id")):
                return
            assert response.status_code == 200, response.read()
            stream = StreamReader(response)
            stream.read_until(lambda: b"\n\n" in stream.raw)  # open: now publish
            published = bus.publish(channel, "after")
            stream.read_until(lambda: any(e.data == "after" for e in stream.events))
        assert [e.data for e in stream.events if e.event in (None, "message")] == ["after"]
        resets = [json.loads(e.data) for e in stream.events if e.event == "reset"]
        assert [r["reason"] for r in resets] == ["cursor-ahead"], stream.events
        assert stream.parser.last_event_id == published
        assert "Traceback" not in stack.log_since(marks)
    finally:
        bus.redis.delete(bus.stream_key(channel))
        bus.redis.close()


@pytest.mark.parametrize("make", FUTURE.values(), ids=FUTURE.keys())
def test_long_poll_cursor_from_the_future_is_not_silence(stack: Stack, make: object) -> None:
    name = f"{stack.tag}-lp{time.monotonic_ns() % 10**9}"
    channel = f"user:{name}"
    bus = Bus(connect(stack.redis_url), prefix=stack.ext_prefix)
    try:
        first = bus.publish(channel, "before")
        cursor = make(first)  # type: ignore[operator]
        with httpx.Client(base_url=stack.ext.base, timeout=15) as client:
            assert client.post("/login", json={"user": name}).status_code == 200
            timer = threading.Timer(1.0, bus.publish, (channel, "after"))
            timer.start()
            try:
                reply = client.get(f"/poll/{channel}", params={"last_id": cursor, "timeout": 4})
            finally:
                timer.join()
        if _refused_naming_cursor(reply, ("last_id",)):
            return
        assert reply.status_code == 200, reply.text
        body = reply.json()
        # At once, not after the wait: a reset to refetch from, and where to poll on from.
        assert body["reset"] is True and body["last_id"] == first, body
    finally:
        bus.redis.delete(bus.stream_key(channel))
        bus.redis.close()
