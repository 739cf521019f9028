"""sidestream.hub: one subscription per process, exact resume, bounded queues, reconnects.

Every test runs on the embedded fakeredis and on real Redis (`backend_url`).
"""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.backoff

from sidestream.bus import AsyncBus, connect_async
from sidestream.errors import InvalidArgument, InvalidChannel, InvalidCursor, Unavailable
from sidestream.hub import HEARTBEAT, Hub, Subscriber, close_event, parse_stream_cursor
from sidestream.sse import Event, EventStreamParser


@pytest.fixture
def bus(async_bus: AsyncBus) -> AsyncBus:
    return async_bus


@pytest.fixture
async def hub(bus: AsyncBus) -> AsyncIterator[Hub]:
    async with Hub(bus, heartbeat=60) as running:
        yield running


async def numsub(bus: AsyncBus, channel: str) -> int:
    [(_, count)] = await bus.redis.pubsub_numsub(bus.live_channel(channel))
    return int(count)


async def wait_numsub(bus: AsyncBus, channel: str, expected: int) -> int:
    for _ in range(200):
        count = await numsub(bus, channel)
        if count == expected:
            return count
        await asyncio.sleep(0.01)
    return count


async def read(sub: Subscriber, count: int, timeout: float = 3.0) -> list[Event]:
    """Parse `count` events from the subscriber's preamble and chunks."""
    parser = EventStreamParser()
    events = parser.feed(sub.preamble)
    sub.preamble = b""
    async with asyncio.timeout(timeout):
        while len(events) < count:
            chunk = await sub.next_chunk()
            assert chunk, f"stream ended after {events}"
            events += parser.feed(chunk)
    return events


async def test_one_subscription_per_channel_whatever_the_number_of_subscribers(
    hub: Hub, bus: AsyncBus
) -> None:
    subs = [await hub.subscribe(["a", "b"]) for _ in range(30)]
    subs += [await hub.subscribe(["b"]) for _ in range(30)]
    assert await numsub(bus, "a") == 1
    assert await numsub(bus, "b") == 1
    assert hub.stats().channels == 2
    assert hub.stats().open_streams == 60
    for sub in subs:
        hub.finish(sub)
    assert await wait_numsub(bus, "a", 0) == 0
    assert await wait_numsub(bus, "b", 0) == 0
    assert hub.stats().channels == 0


async def test_channel_is_released_when_its_last_subscriber_leaves(hub: Hub, bus: AsyncBus) -> None:
    first, second = await hub.subscribe(["news"]), await hub.subscribe(["news"])
    hub.finish(first)
    await asyncio.sleep(0.05)
    assert await numsub(bus, "news") == 1
    hub.finish(second)
    assert await wait_numsub(bus, "news", 0) == 0


async def test_each_event_is_encoded_once_and_shared(hub: Hub, bus: AsyncBus) -> None:
    subs = [await hub.subscribe(["orders"]) for _ in range(3)]
    event_id = await bus.publish("orders", '{"id": 1}', event="created")
    chunks = [await asyncio.wait_for(sub.next_chunk(), 3) for sub in subs]
    assert chunks[0] == f'event: created\nid: {event_id}\ndata: {{"id": 1}}\n\n'.encode()
    assert chunks[1] is chunks[0] and chunks[2] is chunks[0]  # the very same bytes object
    assert hub.stats().delivered == 3


async def test_fresh_subscriber_starts_at_the_latest_id(hub: Hub, bus: AsyncBus) -> None:
    await bus.publish("c", "old")
    latest = await bus.publish("c", "older")
    sub = await hub.subscribe(["c"])
    assert sub.preamble == f"id: {latest}\n\n".encode()  # sets lastEventId, dispatches nothing
    new = await bus.publish("c", "new")
    [event] = await read(sub, 1)
    assert (event.data, event.id) == ("new", new)


async def test_resume_replays_exactly_the_missed_events_then_live(hub: Hub, bus: AsyncBus) -> None:
    ids = [await bus.publish("c", f"e{n}") for n in range(5)]
    sub = await hub.subscribe(["c"], cursor=ids[1])
    live = await bus.publish("c", "e5")
    events = await read(sub, 4)
    assert [e.data for e in events] == ["e2", "e3", "e4", "e5"]
    assert [e.id for e in events] == [*ids[2:], live]
    assert sub.cursor == live


async def test_resume_racing_with_publishes_has_no_gap_and_no_duplicate(
    hub: Hub, bus: AsyncBus
) -> None:
    first = await bus.publish("race", "0")
    keep_publishing = asyncio.create_task(_publish_many(bus, "race", 1, 60))
    subs = []
    for _ in range(5):  # join while events keep coming
        subs.append(await hub.subscribe(["race"], cursor=first))
        await asyncio.sleep(0.005)
    await keep_publishing
    for sub in subs:
        events = await read(sub, 59)
        assert [e.data for e in events] == [str(n) for n in range(1, 60)]


async def _publish_many(bus: AsyncBus, channel: str, start: int, stop: int) -> None:
    for n in range(start, stop):
        await bus.publish(channel, str(n))
        await asyncio.sleep(0.001)


async def test_cursor_at_or_after_the_latest_id_replays_nothing(hub: Hub, bus: AsyncBus) -> None:
    latest = await bus.publish("c", "seen")
    sub = await hub.subscribe(["c"], cursor=latest)
    assert sub.preamble == f"id: {latest}\n\n".encode()
    await bus.publish("c", "next")
    assert [e.data for e in await read(sub, 1)] == ["next"]


async def test_cursor_older_than_history_gets_a_reset_event(hub: Hub, bus: AsyncBus) -> None:
    ids = [await bus.publish("c", f"e{n}") for n in range(5)]
    await bus.redis.xtrim(bus.stream_key("c"), maxlen=2, approximate=False)  # e0..e2 gone
    sub = await hub.subscribe(["c"], cursor=ids[0])
    [reset] = await read(sub, 1)
    assert reset.event == "reset"
    assert json.loads(reset.data) == {
        "channel": "c",
        "latest_id": ids[4],
        "reason": "history-gap",
    }
    assert reset.id == ids[4]  # the client continues from the latest id, after reloading
    after = await bus.publish("c", "after")
    assert [(e.data, e.id) for e in await read(sub, 1)] == [("after", after)]


async def test_several_channels_use_a_cursor_naming_each(hub: Hub, bus: AsyncBus) -> None:
    a1 = await bus.publish("a", "a1")
    sub = await hub.subscribe(["a", "b"])
    assert sub.preamble == f"id: a={a1},b=0-0\n\n".encode()
    b1 = await bus.publish("b", "b1")
    a2 = await bus.publish("a", "a2")
    events = await read(sub, 2)
    assert [(e.data, e.id) for e in events] == [("b1", f"a={a1},b={b1}"), ("a2", f"a={a2},b={b1}")]
    hub.finish(sub)
    b2 = await bus.publish("b", "b2")  # missed while away
    again = await hub.subscribe(["a", "b"], cursor=events[0].id)
    replayed = await read(again, 2)
    assert [(e.data, e.id) for e in replayed] == [
        ("a2", f"a={a2},b={b1}"),
        ("b2", f"a={a2},b={b2}"),
    ]


async def test_live_only_events_have_no_id(hub: Hub, bus: AsyncBus) -> None:
    sub = await hub.subscribe(["typing"])
    assert await bus.publish_live("typing", "alice") == 1
    assert await asyncio.wait_for(sub.next_chunk(), 3) == b"data: alice\n\n"


async def test_slow_consumer_is_cut_off_while_a_healthy_one_keeps_up(bus: AsyncBus) -> None:
    async with Hub(bus, queue_size=5, heartbeat=60, cutoff_grace=0.05) as hub:
        stalled = await hub.subscribe(["feed"])
        aborted: list[bool] = []
        stalled.abort = lambda: aborted.append(True)
        healthy = await hub.subscribe(["feed"])
        reader = asyncio.create_task(read(healthy, 20))
        for n in range(20):
            await bus.publish("feed", str(n))
            await asyncio.sleep(0.002)
        assert [e.data for e in await reader] == [str(n) for n in range(20)]
        assert hub.stats().cutoffs == 1
        # The stalled one lost its queue and gets one last event saying why, then the end.
        assert await stalled.next_chunk() == close_event("slow-consumer")
        assert await stalled.next_chunk() == b""
        await asyncio.sleep(0.1)
        assert aborted == [True]  # it did not finish within cutoff_grace
        assert await numsub(bus, "feed") == 1  # the healthy one still holds the channel


async def test_idle_subscribers_get_heartbeats(bus: AsyncBus) -> None:
    async with Hub(bus, heartbeat=0.05) as hub:
        sub = await hub.subscribe(["quiet"])
        assert await asyncio.wait_for(sub.next_chunk(), 1) == HEARTBEAT
        assert await asyncio.wait_for(sub.next_chunk(), 1) == HEARTBEAT


async def test_reconnect_replays_what_was_published_while_disconnected(
    bus: AsyncBus, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full delay every time, so the events below are published while the hub is away.
    # (The listener waits with redis-py's FullJitterBackoff, which draws with random.uniform.)
    monkeypatch.setattr(redis.backoff, "random", types.SimpleNamespace(uniform=lambda a, b: b))
    async with Hub(bus, heartbeat=60, reconnect_delay=(0.3, 0.3)) as hub:
        sub = await hub.subscribe(["r"])
        before = await hub.subscribe(["r"])
        one = await bus.publish("r", "1")
        assert [e.data for e in await read(sub, 1)] == ["1"]
        session: Any = hub.listener.session
        await session.pubsub.connection.disconnect()
        await bus.publish("r", "2")
        await bus.publish("r", "3")
        late = await hub.subscribe(["r"])  # joins while the hub is reconnecting
        await bus.publish("r", "4")
        assert [e.data for e in await read(sub, 3)] == ["2", "3", "4"]
        assert [e.data for e in await read(before, 4)] == ["1", "2", "3", "4"]
        # The late one starts at the last id the hub delivered, so it gets what came after.
        assert late.preamble == f"id: {one}\n\n".encode()
        assert [e.data for e in await read(late, 3)] == ["2", "3", "4"]
        stats = hub.stats()
        assert (stats.reconnects, stats.connected) == (1, True)
        assert stats.replayed >= 2  # 2 and 3 came from the Stream, never live
        if backend_url != "memory://":  # fakeredis keeps a dropped connection subscribed
            assert await numsub(bus, "r") == 1


async def test_subscribe_fails_fast_when_redis_does_not_answer(key_prefix: str) -> None:
    client = connect_async("redis://127.0.0.1:1/0")  # nothing listens on port 1
    async with Hub(AsyncBus(client, prefix=key_prefix), ready_timeout=0.3) as hub:
        with pytest.raises(Unavailable, match="did not confirm"):
            await hub.subscribe(["x"])
        assert hub.stats().connected is False
        assert hub.stats().open_streams == 0
    await client.aclose()


async def test_drain_sends_the_queue_then_the_final_bytes(hub: Hub, bus: AsyncBus) -> None:
    sub = await hub.subscribe(["d"])
    await bus.publish("d", "last")
    await asyncio.sleep(0.05)
    hub.begin_drain(lambda: b"retry: 7000\n\n")
    assert (await sub.next_chunk()).endswith(b"data: last\n\n")
    assert await sub.next_chunk() == b"retry: 7000\n\n"
    assert await sub.next_chunk() == b""
    with pytest.raises(Unavailable):
        await hub.subscribe(["d"])


async def test_expire_at_closes_the_stream(hub: Hub, bus: AsyncBus) -> None:
    sub = await hub.subscribe(["e"])
    hub.expire_at(sub, asyncio.get_running_loop().time() + 0.05, close_event("expired"))
    assert await asyncio.wait_for(sub.next_chunk(), 1) == close_event("expired")
    assert await sub.next_chunk() == b""


async def test_bad_arguments_raise_typed_errors(hub: Hub, bus: AsyncBus) -> None:
    with pytest.raises(InvalidChannel):
        await hub.subscribe(["no spaces"])
    with pytest.raises(InvalidCursor):
        await hub.subscribe(["a"], cursor="yesterday")
    with pytest.raises(InvalidCursor, match="single id"):
        await hub.subscribe(["a", "b"], cursor="1-0")
    with pytest.raises(InvalidArgument):
        Hub(bus, queue_size=0)
    with pytest.raises(InvalidArgument):
        Hub(bus, heartbeat=0)


def test_parse_stream_cursor() -> None:
    assert parse_stream_cursor("5-1", ["a"]) == {"a": "5-1"}
    assert parse_stream_cursor("a=5-1", ["a"]) == {"a": "5-1"}
    assert parse_stream_cursor("a=5-1,b=6-0,zz=1-0", ["a", "b"]) == {"a": "5-1", "b": "6-0"}
    with pytest.raises(InvalidCursor, match="pairs"):
        parse_stream_cursor("a b=5-1", ["a"])
    with pytest.raises(InvalidCursor):
        parse_stream_cursor("a=soon", ["a"])


# --- bad messages from outside the bus (issue 11, defects 1 and 3) --------------------------------


async def publish_raw(bus: AsyncBus, channel: str, payload: bytes) -> None:
    """What another producer writing Redis directly could put on a live channel."""
    await bus.redis.publish(bus.live_channel(channel), payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"not-an-id\n\nhello",  # an id that is not a stream id
        b"1-0\nbad\rtype\nhello",  # an event type with CR
        b"1-0\n\n\xff\xfe not utf-8",  # data that is not UTF-8
        b"no newlines at all",  # not the bus's format
        b"99999999999999-0\n\nfrom the future",  # an id far ahead of the stream's own
    ],
    ids=["bad-id", "cr-in-type", "not-utf8", "no-format", "id-far-ahead"],
)
async def test_a_poison_message_is_skipped_and_counted_and_harms_nothing(
    hub: Hub, bus: AsyncBus, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    poisoned, other = await hub.subscribe(["p"]), await hub.subscribe(["q"])
    await publish_raw(bus, "p", payload)
    later = await bus.publish("p", "later")
    on_q = await bus.publish("q", "other channel")
    assert [(e.data, e.id) for e in await read(poisoned, 1)] == [("later", later)]
    assert [(e.data, e.id) for e in await read(other, 1)] == [("other channel", on_q)]
    stats = hub.stats()
    assert (stats.poison_messages, stats.connected, stats.reader_alive) == (1, True, True)
    assert any("skipping a message" in r.getMessage() for r in caplog.records), caplog.text
    again = await bus.publish("p", "and again")  # the session and the channel still work
    assert [(e.data, e.id) for e in await read(poisoned, 1)] == [("and again", again)]


async def test_a_reader_that_dies_for_any_reason_is_restarted(
    bus: AsyncBus, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = [RuntimeError("a bug in the reader")]
    original = Hub._dispatch

    def dispatch_once_failing(self: Hub, *args: Any) -> None:
        if failures:
            raise failures.pop()
        original(self, *args)

    monkeypatch.setattr(Hub, "_dispatch", dispatch_once_failing)
    async with Hub(bus, heartbeat=60, reconnect_delay=(0.01, 0.05)) as hub:
        sub = await hub.subscribe(["r"])
        lost = await bus.publish("r", "this one kills the reader")
        after = await bus.publish("r", "after the restart")
        events = await read(sub, 2, timeout=10)
        # Both arrive: the restarted reader replays what the dead one did not deliver.
        assert [(e.data, e.id) for e in events] == [
            ("this one kills the reader", lost),
            ("after the restart", after),
        ]
        stats = hub.stats()
        assert (stats.reader_restarts, stats.reader_alive, stats.connected) == (1, True, True)
    assert any("a bug in the reader" in r.getMessage() for r in caplog.records), caplog.text


async def test_a_cursor_ahead_of_the_stream_gets_a_reset_not_silence(
    hub: Hub, bus: AsyncBus
) -> None:
    latest = await bus.publish("f", "only")
    for cursor in ("99999999999999-0", f"{2**64 - 1}-{2**64 - 1}"):
        sub = await hub.subscribe(["f"], cursor=cursor)
        [reset] = await read(sub, 1)
        assert reset.event == "reset"
        assert json.loads(reset.data) == {
            "channel": "f",
            "latest_id": latest,
            "reason": "cursor-ahead",
        }
        assert reset.id == latest
        nxt = await bus.publish("f", "next")
        assert [(e.data, e.id) for e in await read(sub, 1)] == [("next", nxt)]
        latest = nxt
        hub.finish(sub)


async def test_a_cursor_from_an_emptied_redis_gets_a_reset(hub: Hub, bus: AsyncBus) -> None:
    old = await bus.publish("e", "before Redis lost everything")
    await bus.redis.delete(bus.stream_key("e"))
    sub = await hub.subscribe(["e"], cursor=old)
    [reset] = await read(sub, 1)
    assert (reset.event, json.loads(reset.data)["reason"]) == ("reset", "cursor-ahead")
    assert json.loads(reset.data)["latest_id"] == "0-0"
    first = await bus.publish("e", "first of the new stream")
    assert [(e.data, e.id) for e in await read(sub, 1)] == [("first of the new stream", first)]


async def test_a_cursor_ahead_in_one_of_several_channels(hub: Hub, bus: AsyncBus) -> None:
    a, b = await bus.publish("m1", "a"), await bus.publish("m2", "b")
    sub = await hub.subscribe(["m1", "m2"], cursor=f"m1={a},m2=99999999999999-0")
    [reset] = await read(sub, 1)
    assert json.loads(reset.data) == {"channel": "m2", "latest_id": b, "reason": "cursor-ahead"}
    assert reset.id == f"m1={a},m2={b}"
