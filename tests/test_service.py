"""sidestream.service through falcon.testing's ASGIConductor, on fakeredis and on real Redis.

Streams are read with `simulate_get_stream`; a client that stops reading is simulated by calling
the ASGI app with a `send` that never returns.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import fakeredis
import falcon.testing
import pytest
from service_apps import make_app

from sidestream.access import Grant, allow_all, allow_everyone
from sidestream.bus import AsyncBus, connect_async
from sidestream.errors import Forbidden, InvalidArgument, Unauthorized
from sidestream.hub import Hub, close_event
from sidestream.service import StreamApp, create_app
from sidestream.settings import ServiceSettings
from sidestream.sse import Event, EventStreamParser
from sidestream.testing import read_events_async, wait_until_async

ORIGIN = "https://app.example.com"
# This module's bound for conditions seen from outside (a count, a flag).
eventually = functools.partial(wait_until_async, timeout=3.0)


@pytest.fixture
def bus(async_bus: AsyncBus) -> AsyncBus:
    return async_bus


@pytest.fixture
async def conductor(bus: AsyncBus) -> AsyncIterator[falcon.testing.ASGIConductor]:
    async with falcon.testing.ASGIConductor(make_app(bus, cors_origins=[ORIGIN])) as running:
        yield running


async def numsub(bus: AsyncBus, channel: str) -> int:
    [(_, count)] = await bus.redis.pubsub_numsub(bus.live_channel(channel))
    return int(count)


async def test_stream_headers_retry_hint_and_position(
    conductor: falcon.testing.ASGIConductor, bus: AsyncBus
) -> None:
    latest = await bus.publish("news", "before")
    async with conductor.simulate_get_stream("/events?channel=news") as result:
        assert result.status_code == 200
        assert result.headers["content-type"] == "text/event-stream"
        assert result.headers["cache-control"] == "no-store"
        assert result.headers["x-accel-buffering"] == "no"
        parser = EventStreamParser()
        head = b""
        while not head.endswith(b"\n\n"):
            head += await result.stream.read()
        assert parser.feed(head) == []  # nothing to dispatch: only retry and id
        assert parser.retry is not None and 3000 <= parser.retry <= 5000  # 3 s + jitter
        assert parser.last_event_id == latest
        new = await bus.publish("news", "hello", event="greeting")
        [event] = await read_events_async(result.stream.read, count=1)
        assert event == Event("hello", "greeting", new)


async def test_retry_hints_are_jittered(bus: AsyncBus) -> None:
    app = make_app(bus, retry=1000, retry_jitter=1000)
    hints = set()
    async with falcon.testing.ASGIConductor(app) as conductor:
        for _ in range(8):
            async with conductor.simulate_get_stream("/events?channel=j") as result:
                head = b""
                while b"\n\n" not in head:
                    head += await result.stream.read()
                hints.add(int(head.split(b"\n")[0].removeprefix(b"retry: ")))
    assert all(1000 <= hint <= 2000 for hint in hints)
    assert len(hints) > 1


async def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(
    conductor: falcon.testing.ASGIConductor, bus: AsyncBus
) -> None:
    async with conductor.simulate_get_stream("/events?channel=feed") as result:
        await bus.publish("feed", "1")
        seen = await read_events_async(result.stream.read, count=1)
    missed = [await bus.publish("feed", str(n)) for n in (2, 3, 4)]
    headers = {"Last-Event-ID": seen[-1].id or ""}
    async with conductor.simulate_get_stream("/events?channel=feed", headers=headers) as result:
        live = await bus.publish("feed", "5")
        events = await read_events_async(result.stream.read, count=4)
    assert [(e.data, e.id) for e in events] == [
        ("2", missed[0]),
        ("3", missed[1]),
        ("4", missed[2]),
        ("5", live),
    ]


async def test_query_parameter_resumes_and_the_header_wins(
    conductor: falcon.testing.ASGIConductor, bus: AsyncBus
) -> None:
    ids = [await bus.publish("q", str(n)) for n in range(4)]
    path = f"/events?channel=q&last_event_id={ids[0]}"
    async with conductor.simulate_get_stream(path) as result:
        events = await read_events_async(result.stream.read, count=3)
        assert [e.data for e in events] == ["1", "2", "3"]
    async with conductor.simulate_get_stream(path, headers={"Last-Event-ID": ids[2]}) as result:
        await bus.publish("q", "4")
        events = await read_events_async(result.stream.read, count=2)
        assert [e.data for e in events] == ["3", "4"]


async def test_id_older_than_history_gets_a_reset_event(
    conductor: falcon.testing.ASGIConductor, bus: AsyncBus
) -> None:
    ids = [await bus.publish("t", str(n)) for n in range(4)]
    await bus.redis.xtrim(bus.stream_key("t"), maxlen=1, approximate=False)
    headers = {"Last-Event-ID": ids[0]}
    async with conductor.simulate_get_stream("/events?channel=t", headers=headers) as result:
        [reset] = await read_events_async(result.stream.read, count=1)
    assert reset.event == "reset"
    assert reset.id == ids[3]
    assert json.loads(reset.data)["latest_id"] == ids[3]


async def test_several_channels_in_one_stream(
    conductor: falcon.testing.ASGIConductor, bus: AsyncBus
) -> None:
    async with conductor.simulate_get_stream("/events?channel=a&channel=b") as result:
        b1 = await bus.publish("b", "b1")
        a1 = await bus.publish("a", "a1")
        events = await read_events_async(result.stream.read, count=2)
    assert [(e.data, e.id) for e in events] == [("b1", f"a=0-0,b={b1}"), ("a1", f"a={a1},b={b1}")]


async def test_a_stalled_client_is_cut_off_while_a_healthy_one_keeps_receiving(
    bus: AsyncBus,
) -> None:
    app = make_app(bus, queue_size=4, cutoff_grace=0.1)
    async with falcon.testing.ASGIConductor(app) as conductor:
        stalled = asyncio.create_task(call_and_stall(app, "channel=feed"))
        await eventually(lambda: _true(app.hub.open_streams == 1))
        async with conductor.simulate_get_stream("/events?channel=feed") as healthy:
            for n in range(12):
                await bus.publish("feed", str(n))
            events = await read_events_async(healthy.stream.read, count=12)
            assert [e.data for e in events] == [str(n) for n in range(12)]
            # The stalled request is cut off (queue full) and, since it cannot even take its
            # last event, dropped after cutoff_grace; it ends without an error.
            await asyncio.wait_for(stalled, 3)
            assert app.hub.stats().cutoffs == 1
            assert app.hub.open_streams == 1
            assert await numsub(bus, "feed") == 1
            await bus.publish("feed", "still")
            [event] = await read_events_async(healthy.stream.read, count=1)
            assert event.data == "still"


async def _true(value: bool) -> bool:
    return value


async def call_and_stall(app: StreamApp, query: str) -> list[dict[str, Any]]:
    """Call the ASGI app like a server whose client stopped reading after the headers."""
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()  # the client never leaves either
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.Future()  # the socket buffer is full: this write never completes

    scope = falcon.testing.create_scope(path="/events", query_string=query)
    await app(scope, receive, send)
    return sent


async def test_disconnect_releases_the_subscription(
    conductor: falcon.testing.ASGIConductor, bus: AsyncBus
) -> None:
    async with conductor.simulate_get_stream("/events?channel=gone") as result:
        await result.stream.read()
        assert await numsub(bus, "gone") == 1
    await eventually(lambda: _numsub_is(bus, "gone", 0))
    metrics = await conductor.simulate_get("/metrics")
    assert "sidestream_open_streams 0\n" in metrics.text
    assert "sidestream_subscribed_channels 0\n" in metrics.text


async def _numsub_is(bus: AsyncBus, channel: str, expected: int) -> bool:
    return await numsub(bus, channel) == expected


async def refuse(request: Any, channels: Sequence[str]) -> Grant:
    if request.get_header("Authorization") is None:
        raise Unauthorized("send a stream token")
    if "private" in channels:
        raise Forbidden("you may not read private")
    return Grant(subject="alice")


@pytest.mark.parametrize(
    ("path", "headers", "status", "reason"),
    [
        ("/events?channel=news", {}, 401, "send a stream token"),
        ("/events?channel=news&channel=private", {"Authorization": "Bearer x"}, 403, "private"),
    ],
)
async def test_refused_requests_get_json_and_no_stream(
    bus: AsyncBus, path: str, headers: dict[str, str], status: int, reason: str
) -> None:
    app = make_app(bus, authorize=refuse)
    async with falcon.testing.ASGIConductor(app) as conductor:
        result = await conductor.simulate_get(path, headers=headers)
        assert result.status_code == status
        assert result.headers["content-type"] == "application/json"
        assert reason in result.json["description"]
        if status == 401:
            assert result.headers["www-authenticate"] == "Bearer"
        assert app.hub.stats().open_streams == 0
        assert app.hub.stats().channels == 0
        assert await numsub(bus, "news") == 0


@pytest.mark.parametrize(
    ("path", "headers", "names"),
    [
        ("/events", {}, '"channel" parameter is required'),
        ("/events?channel=has%20space", {}, "channel name 'has space' is not valid"),
        ("/events?" + "&".join(f"channel=c{n}" for n in range(17)), {}, "at most 16 channels"),
        ("/events?channel=a", {"Last-Event-ID": "tomorrow"}, '"Last-Event-ID" header'),
        ("/events?channel=a&last_event_id=x-1", {}, '"last_event_id" parameter'),
        ("/events?channel=a&channel=b&last_event_id=1-0", {}, "'channel=id,channel=id'"),
    ],
)
async def test_bad_input_gets_400_naming_the_problem(
    conductor: falcon.testing.ASGIConductor, path: str, headers: dict[str, str], names: str
) -> None:
    result = await conductor.simulate_get(path, headers=headers)
    assert result.status_code == 400
    assert names in result.json["description"]


async def test_connection_limit_gives_503_with_retry_after(bus: AsyncBus) -> None:
    app = make_app(bus, max_streams=2, retry_after=7)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        conductor.simulate_get_stream("/events?channel=x") as one,
        conductor.simulate_get_stream("/events?channel=x") as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        third = await conductor.simulate_get("/events?channel=x")
        assert third.status_code == 503
        assert third.headers["retry-after"] == "7"
        assert "maximum of 2 streams" in third.json["description"]


async def test_cors_allows_exactly_the_listed_origins(
    conductor: falcon.testing.ASGIConductor,
) -> None:
    async with conductor.simulate_get_stream(
        "/events?channel=c", headers={"Origin": ORIGIN}
    ) as result:
        assert result.headers["access-control-allow-origin"] == ORIGIN
        assert result.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in result.headers["vary"]
    other = await conductor.simulate_get(
        "/events", headers={"Origin": "https://evil.example"}
    )  # a 400, to keep the test short; no CORS header lets that page read it
    assert "access-control-allow-origin" not in other.headers
    preflight = await conductor.simulate_options(
        "/events",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id, authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-headers"] == "last-event-id, authorization"
    assert "GET" in preflight.headers["access-control-allow-methods"]


def test_a_wildcard_origin_is_refused(bus: AsyncBus) -> None:
    with pytest.raises(InvalidArgument, match="exact origins"):
        create_app(bus, authorize=allow_everyone, cors_origins=["*"])


def test_reads_are_closed_until_an_authorizer_is_named(bus: AsyncBus) -> None:
    with pytest.raises(TypeError, match="authorize"):
        create_app(bus)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgument, match="allow_everyone"):
        create_app(bus, authorize=None)  # type: ignore[arg-type]
    assert allow_all is allow_everyone  # the old name, kept for one release


async def test_allow_everyone_logs_one_warning_at_startup(
    bus: AsyncBus, caplog: pytest.LogCaptureFixture
) -> None:
    for authorize, expected in ((allow_everyone, 1), (refuse, 0)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sidestream.service"):
            async with falcon.testing.ASGIConductor(make_app(bus, authorize=authorize)) as c:
                await c.simulate_get("/healthz")
                await c.simulate_get("/healthz")
        warnings = [r for r in caplog.records if "allow_everyone" in r.getMessage()]
        assert len(warnings) == expected, caplog.text


async def test_idle_streams_get_heartbeat_comments(bus: AsyncBus) -> None:
    async with (
        falcon.testing.ASGIConductor(make_app(bus, heartbeat=0.05)) as conductor,
        conductor.simulate_get_stream("/events?channel=quiet") as result,
        asyncio.timeout(3),
    ):
        body = b""
        while body.count(b": ping\n\n") < 2:
            body += await result.stream.read()


async def test_drain_ends_every_stream_with_a_retry(bus: AsyncBus) -> None:
    app = make_app(bus, retry=2000, retry_jitter=500)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        conductor.simulate_get_stream("/events?channel=d") as one,
        conductor.simulate_get_stream("/events?channel=d") as two,
    ):
        await eventually(lambda: _true(app.hub.open_streams == 2))
        assert await app.drain(timeout=3) == 0  # every stream finished
        for result in (one, two):
            parser = EventStreamParser()
            events = parser.feed(await result.stream.read())
            assert events[-1].event == "close"
            assert json.loads(events[-1].data) == {"reason": "shutdown"}
            assert events[-1].retry is not None and 2000 <= events[-1].retry <= 2500
        health = await conductor.simulate_get("/healthz")
        assert health.status_code == 503
        assert health.json["status"] == "draining"
        refused = await conductor.simulate_get("/events?channel=d")
        assert refused.status_code == 503
        assert "retry-after" in refused.headers


async def test_a_grant_expiry_closes_the_stream(bus: AsyncBus) -> None:
    async def short_lived(request: Any, channels: Sequence[str]) -> Grant:
        return Grant(subject="bob", expires_at=time.time() + 0.2)

    app = make_app(bus, authorize=short_lived)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        conductor.simulate_get_stream("/events?channel=e") as result,
    ):
        [closing] = await read_events_async(result.stream.read, count=1)
        assert closing.event == "close"
        assert json.loads(closing.data) == {"reason": "expired"}
        await eventually(lambda: _true(app.hub.open_streams == 0))


async def test_metrics_count_exactly(bus: AsyncBus) -> None:
    app = make_app(bus)
    async with falcon.testing.ASGIConductor(app) as conductor:
        async with (
            conductor.simulate_get_stream("/events?channel=m") as one,
            conductor.simulate_get_stream("/events?channel=m&channel=n") as two,
        ):
            for n in range(3):
                await bus.publish("m", str(n))
            await read_events_async(one.stream.read, count=3)
            await read_events_async(two.stream.read, count=3)
            metrics = parse_metrics((await conductor.simulate_get("/metrics")).text)
            assert metrics == {
                "sidestream_open_streams": 2,
                "sidestream_subscribed_channels": 2,
                "sidestream_events_delivered_total": 6,
                "sidestream_slow_consumer_cutoffs_total": 0,
                "sidestream_redis_reconnects_total": 0,
                "sidestream_replayed_events_total": 0,
                "sidestream_redis_connected": 1,
                "sidestream_poison_messages_total": 0,
                "sidestream_invalid_stream_entries_total": 0,
                "sidestream_reader_restarts_total": 0,
                "sidestream_open_websockets": 0,
                "sidestream_websocket_messages_published_total": 0,
                "sidestream_websocket_messages_refused_total": 0,
            }
        health = await conductor.simulate_get("/healthz")
        backend = "memory" if isinstance(bus.redis, fakeredis.FakeAsyncRedis) else "redis"
        assert health.json == {
            "status": "ok",
            "backend": backend,
            "redis": "up",
            "open_streams": 0,
        }


def parse_metrics(text: str) -> dict[str, int]:
    return {
        name: int(value)
        for name, value in (line.split() for line in text.splitlines() if line[:1] != "#")
    }


def test_close_event_bytes() -> None:
    assert close_event("shutdown", retry=2500) == (
        b'event: close\nretry: 2500\ndata: {"reason": "shutdown"}\n\n'
    )


# --- issue 11: what reaches a client when others misbehave ------------------------------------

SSE_ACCEPT = {"Accept": "text/event-stream"}


@pytest.mark.parametrize(
    ("path", "headers", "status", "names"),
    [
        ("/events?channel=news", {}, 401, "send a stream token"),
        ("/events?channel=private", {"Authorization": "Bearer x"}, 403, "private"),
        ("/events?channel=has%20space", {"Authorization": "Bearer x"}, 400, "not valid"),
        ("/events", {"Authorization": "Bearer x"}, 400, '"channel" parameter is required'),
    ],
)
async def test_refusals_carry_their_json_body_whatever_the_accept_header(
    bus: AsyncBus, path: str, headers: dict[str, str], status: int, names: str
) -> None:
    async with falcon.testing.ASGIConductor(make_app(bus, authorize=refuse)) as conductor:
        for accept in (SSE_ACCEPT, {"Accept": "text/html"}, {"Accept": "*/*"}, {}):
            result = await conductor.simulate_get(path, headers={**headers, **accept})
            assert result.status_code == status
            assert result.headers["content-type"].startswith("application/json")
            assert names in result.json["description"], (accept, result.text)


async def test_a_503_carries_its_json_body_to_a_stream_client(bus: AsyncBus) -> None:
    app = make_app(bus)
    async with falcon.testing.ASGIConductor(app) as conductor:
        app.begin_drain()
        result = await conductor.simulate_get("/events?channel=x", headers=SSE_ACCEPT)
        assert (result.status_code, result.json["title"]) == (503, "unavailable")
        assert "shutting down" in result.json["description"]


async def test_a_cross_origin_503_lets_the_page_read_its_retry_after(bus: AsyncBus) -> None:
    app = make_app(bus, cors_origins=[ORIGIN], retry_after=7)
    async with falcon.testing.ASGIConductor(app) as conductor:
        app.begin_drain()
        result = await conductor.simulate_get(
            "/events?channel=x", headers={**SSE_ACCEPT, "Origin": ORIGIN}
        )
        assert (result.status_code, result.headers["retry-after"]) == (503, "7")
        assert result.headers["access-control-allow-origin"] == ORIGIN
        exposed = result.headers["access-control-expose-headers"].split(", ")
        assert "Retry-After" in exposed
        other = await conductor.simulate_get(
            "/events?channel=x", headers={"Origin": "https://evil.example"}
        )
        assert other.status_code == 503
        assert "access-control-expose-headers" not in other.headers


async def test_healthz_is_503_while_redis_cannot_be_reached(key_prefix: str) -> None:
    client = connect_async("redis://127.0.0.1:1/0")  # nothing listens on port 1
    app = make_app(AsyncBus(client, prefix=key_prefix))
    async with falcon.testing.ASGIConductor(app) as conductor:
        health = await conductor.simulate_get("/healthz")
        assert health.status_code == 503  # a load balancer reads the status, not the body
        assert (health.json["status"], health.json["redis"]) == ("unavailable", "down")
    await client.aclose()


async def test_healthz_is_503_while_the_reader_is_dead(
    bus: AsyncBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(bus)
    async with falcon.testing.ASGIConductor(app) as conductor:
        await eventually(lambda: _true(app.hub.stats().can_deliver))
        assert (await conductor.simulate_get("/healthz")).status_code == 200
        reader = app.hub.listener._task  # type: ignore[attr-defined]
        reader.cancel()  # cancelled on purpose: not restarted (a failure would be)
        await eventually(lambda: _true(reader.done()))
        health = await conductor.simulate_get("/healthz")
        assert (health.status_code, health.json["status"]) == (503, "unavailable")


async def test_replay_skips_entries_written_badly_outside_the_bus(bus: AsyncBus) -> None:
    first = await bus.publish("bad", "first")
    await bus.redis.xadd(bus.stream_key("bad"), {"data": "x", "event": "two\nlines"})
    await bus.redis.xadd(bus.stream_key("bad"), {"data": b"\xff\xfe"})
    good = await bus.publish("bad", "good")
    app = make_app(bus)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        conductor.simulate_get_stream(
            "/events?channel=bad", headers={"Last-Event-ID": first}
        ) as result,
    ):
        assert result.status_code == 200
        [event] = await read_events_async(result.stream.read, count=1)
        assert (event.data, event.id) == ("good", good)
        metrics = parse_metrics((await conductor.simulate_get("/metrics")).text)
        assert metrics["sidestream_invalid_stream_entries_total"] == 2


async def test_a_poison_message_is_counted_in_metrics_and_others_flow(bus: AsyncBus) -> None:
    app = make_app(bus)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        conductor.simulate_get_stream("/events?channel=p") as result,
    ):
        await eventually(lambda: _true(app.hub.stats().channels == 1))
        await bus.redis.publish(bus.live_channel("p"), b"garbage\r\n\nnot ours")
        good = await bus.publish("p", "good")
        [event] = await read_events_async(result.stream.read, count=1)
        assert (event.data, event.id) == ("good", good)
        metrics = parse_metrics((await conductor.simulate_get("/metrics")).text)
        assert metrics["sidestream_poison_messages_total"] == 1
        assert (await conductor.simulate_get("/healthz")).json["status"] == "ok"


async def test_a_cursor_from_the_future_gets_a_reset_event(bus: AsyncBus) -> None:
    latest = await bus.publish("fut", "only")
    app = make_app(bus)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        conductor.simulate_get_stream(
            "/events?channel=fut", headers={"Last-Event-ID": "99999999999999-0"}
        ) as result,
    ):
        assert result.status_code == 200
        [reset] = await read_events_async(result.stream.read, count=1)
        assert (reset.event, reset.id) == ("reset", latest)
        assert json.loads(reset.data)["reason"] == "cursor-ahead"
        nxt = await bus.publish("fut", "next")
        [event] = await read_events_async(result.stream.read, count=1)
        assert (event.data, event.id) == ("next", nxt)


# --- settings as one value (issue 12) --------------------------------------------------------


def test_the_app_keeps_its_settings_as_one_checked_value(bus: AsyncBus) -> None:
    app = create_app(bus, authorize=allow_everyone, cors_origins="https://a.example", retry=10)
    assert app.settings == ServiceSettings(cors_origins=("https://a.example",), retry=10)
    for bad, names in (
        ({"max_streams": 0}, "max_streams must be an int >= 1"),
        ({"retry_jitter": -1}, "retry_jitter must be an int >= 0"),
        ({"heartbeat": 0}, "heartbeat must be a number of seconds > 0"),
        ({"path": "events"}, "path must be a path starting with '/'"),
    ):
        with pytest.raises(InvalidArgument, match=names):
            create_app(bus, authorize=allow_everyone, **bad)  # type: ignore[arg-type]


def test_arguments_that_conflict_with_the_hub_raise_instead_of_being_ignored(
    bus: AsyncBus, key_prefix: str
) -> None:
    hub = Hub(bus, heartbeat=2.0, queue_size=10)
    other = AsyncBus(bus.redis, prefix=key_prefix + "other:")
    for conflict, names in (
        ({"heartbeat": 30.0}, "heartbeat=30.0 conflicts with the hub's heartbeat"),
        ({"queue_size": 99}, "queue_size=99 conflicts with the hub's queue_size"),
        ({"bus": other}, "pass bus= or hub=, not both"),
    ):
        with pytest.raises(InvalidArgument, match=names):
            create_app(hub=hub, authorize=allow_everyone, **conflict)  # type: ignore[arg-type]
    # The hub's own values, or the defaults, are not a conflict.
    create_app(hub=hub, authorize=allow_everyone, heartbeat=2.0, queue_size=10, bus=bus)
    create_app(hub=hub, authorize=allow_everyone)


async def test_metrics_without_a_websocket_route_leave_out_the_socket_counters(
    bus: AsyncBus,
) -> None:
    app = make_app(bus, websocket_path=None)
    async with falcon.testing.ASGIConductor(app) as conductor:
        text = (await conductor.simulate_get("/metrics")).text
    names = set(parse_metrics(text))
    assert "sidestream_open_streams" in names
    assert not any("websocket" in name for name in names)
    assert text.count("# HELP") == text.count("# TYPE") == len(names)
