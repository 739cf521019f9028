"""sidestream.websocket through falcon.testing (simulate_ws), on fakeredis and on real Redis.

Handshakes are also driven by a bare ASGI call that records what the app sends, with and without
the `websocket.http.response` extension, so both ways of refusing are checked exactly. A socket
that cannot take its frames is simulated by a `send` that does not return.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import falcon
import falcon.testing
import pytest
import service_apps

from sidestream.access import Grant
from sidestream.bus import AsyncBus, connect_async
from sidestream.errors import Forbidden, InvalidArgument
from sidestream.service import StreamApp, create_app
from sidestream.testing import wait_until_async
from sidestream.tokens import StreamTokens, authorizer
from sidestream.websocket import CloseCode, Message

KEY = "websocket-test-key-of-32-bytes!!!"
TOKENS = StreamTokens(KEY)
ORIGIN = "https://chat.example.com"
# This module's bound for conditions seen from outside (a count, a flag).
eventually = functools.partial(wait_until_async, timeout=3.0)


@pytest.fixture
def bus(async_bus: AsyncBus) -> AsyncBus:
    return async_bus


def make_app(bus: AsyncBus, **options: Any) -> StreamApp:
    options.setdefault("authorize", authorizer(TOKENS))
    # A failing test's hub stops within the ping interval (redis-py swallows a cancel).
    return service_apps.make_app(bus, ping_interval=1.0, cors_origins=[ORIGIN], **options)


def token(
    subscribe: Sequence[str] = ("room",), publish: Sequence[str] = ("room",), **kw: Any
) -> str:
    return TOKENS.issue("alice", subscribe=list(subscribe), publish=list(publish), **kw)


def query(*channels: str, **params: str) -> str:
    pairs = [("channel", channel) for channel in channels] + list(params.items())
    return "&".join(f"{name}={value}" for name, value in pairs)


def connect(conductor: falcon.testing.ASGIConductor, qs: str, **kwargs: Any) -> Any:
    """simulate_ws on /ws, speaking ASGI 2.4 as uvicorn does (2.3+ carries close reasons)."""
    return conductor.simulate_ws("/ws", query_string=qs, spec_version="2.4", **kwargs)


async def frames(ws: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        return [json.loads(await ws.receive_text()) for _ in range(count)]


async def joined(ws: Any) -> dict[str, Any]:
    """Read up to the `ready` frame (after any replay)."""
    [ready] = await frames(ws, 1)
    assert ready["type"] == "ready"
    return ready


# -- relaying and publishing -------------------------------------------------------------------


async def test_events_on_the_bus_reach_the_socket_as_json_frames(bus: AsyncBus) -> None:
    before = await bus.publish("room", "old")
    async with (
        falcon.testing.ASGIConductor(make_app(bus)) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        ready = await joined(ws)
        assert ready == {"type": "ready", "positions": {"room": before}, "publish": ["room"]}
        new = await bus.publish("room", '{"text": "hi"}', event="message")
        assert await frames(ws, 1) == [
            {
                "type": "event",
                "channel": "room",
                "id": new,
                "event": "message",
                "data": '{"text": "hi"}',
            }
        ]


async def test_a_cursor_replays_the_missed_events_then_continues_live(bus: AsyncBus) -> None:
    first = await bus.publish("a", "1")
    missed = [await bus.publish("a", "2"), await bus.publish("b", "3")]
    cursor = f"a={first},b=0-0"
    tok = token(subscribe=["a", "b"])
    async with (
        falcon.testing.ASGIConductor(make_app(bus)) as conductor,
        connect(conductor, query("a", "b", token=tok, last_event_id=cursor)) as ws,
    ):
        replayed = await frames(ws, 2)
        assert [(f["channel"], f["id"], f["data"]) for f in replayed] == [
            ("a", missed[0], "2"),
            ("b", missed[1], "3"),
        ]
        assert (await joined(ws))["positions"] == {"a": missed[0], "b": missed[1]}
        live = await bus.publish("b", "4")
        [frame] = await frames(ws, 1)
        assert (frame["id"], frame["data"]) == (live, "4")


async def test_a_message_is_published_to_every_socket_and_acknowledged(bus: AsyncBus) -> None:
    app = make_app(bus)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        connect(conductor, query("room", token=token())) as alice,
        connect(conductor, query("room", token=token(publish=[]))) as bob,
    ):
        await joined(alice)
        await joined(bob)
        await alice.send_json({"channel": "room", "data": "hello", "event": "message", "ref": "m1"})
        got = {frame["type"]: frame for frame in await frames(alice, 2)}  # event and ack, any order
        [seen_by_bob] = await frames(bob, 1)
        assert got["ack"] == {
            "type": "ack",
            "ref": "m1",
            "channel": "room",
            "id": seen_by_bob["id"],
        }
        assert got["event"] == seen_by_bob
        assert seen_by_bob["data"] == "hello" and seen_by_bob["event"] == "message"
        [stored] = await bus.history("room")  # it went through Redis, where every process reads
        assert (stored.id, stored.data) == (seen_by_bob["id"], "hello")
        assert app.sockets is not None and app.sockets.published == 1


async def test_the_hub_encodes_a_frame_once_for_every_socket(bus: AsyncBus) -> None:
    async with falcon.testing.ASGIConductor(make_app(bus)) as conductor:
        sockets = [connect(conductor, query("room", token=token())) for _ in range(3)]
        opened = [await socket.__aenter__() for socket in sockets]
        for ws in opened:
            await joined(ws)
        await bus.publish("room", "shared")
        texts = [await ws.receive_text() for ws in opened]
        assert texts[0] is texts[1] is texts[2]  # the same str object, made once
        for socket in sockets:
            await socket.__aexit__(None, None, None)


# -- bad messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{not json", "message is not JSON: Expecting property name"),
        ('["room", "hi"]', 'a message is a JSON object like {"channel": "room:1", "data": "hi"}'),
        ('{"channel": "room", "data": "hi", "to": "bob"}', "unknown fields ['to']"),
        ('{"channel": "room", "data": {"text": "hi"}}', "'data' must be a string"),
        ('{"channel": "has space", "data": "hi"}', "channel name 'has space' is not valid"),
        ('{"channel": "room", "data": "hi", "event": "close"}', "'event' must be a string other"),
        ('{"channel": "room", "data": "hi", "event": "a\\nb"}', "event type 'a\\nb' is not valid"),
        ('{"channel": "room", "data": "hi", "ref": []}', "'ref' must be an int or a string"),
        ("[" * 30_000 + "]" * 30_000, "nested more than"),
        ('{"channel": "room", "data": "half a pair \\ud800"}', "lone surrogate"),
        ('{"channel": "room", "data": "hi", "event": "\\udfff"}', "lone surrogate"),
    ],
)
async def test_a_malformed_message_gets_an_error_frame_and_the_socket_stays_open(
    bus: AsyncBus, message: str, reason: str
) -> None:
    app = make_app(bus)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        await ws.send_text(message)
        [error] = await frames(ws, 1)
        assert error["type"] == "error" and error["error"] == "invalid"
        assert reason in error["reason"]
        await ws.send_json({"channel": "room", "data": "still here", "ref": 2})
        assert {frame["type"] for frame in await frames(ws, 2)} == {"event", "ack"}
        assert app.sockets is not None and app.sockets.refused == 1
        assert await bus.history("room") != []


async def test_hostile_messages_leave_no_traceback_in_the_log(
    bus: AsyncBus, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        falcon.testing.ASGIConductor(make_app(bus)) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        for message in ("[" * 30_000 + "]" * 30_000, '{"channel": "room", "data": "\\ud800"}'):
            await ws.send_text(message)
            [error] = await frames(ws, 1)
            assert (error["type"], error["error"]) == ("error", "invalid")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


async def test_publishing_to_a_channel_not_granted_is_refused(bus: AsyncBus) -> None:
    async with (
        falcon.testing.ASGIConductor(make_app(bus)) as conductor,
        connect(conductor, query("room", token=token(publish=["room"]))) as ws,
    ):
        await joined(ws)
        await ws.send_json({"channel": "admin", "data": "x", "ref": 7})
        assert await frames(ws, 1) == [
            {
                "type": "error",
                "error": "forbidden",
                "reason": "alice may not publish to admin",
                "ref": 7,
            }
        ]
        assert await bus.history("admin") == []


async def test_an_oversize_message_closes_the_socket_with_1009(bus: AsyncBus) -> None:
    app = make_app(bus, max_message_bytes=1000)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        await ws.send_json({"channel": "room", "data": "é" * 500})  # 1000 bytes of data alone
        await eventually(lambda: ws.closed)
        assert (ws.close_code, ws.close_reason) == (1009, "message over 1000 bytes")
        assert await bus.history("room") == []
    await eventually(lambda: app.hub.open_streams == 0)


async def test_a_binary_frame_closes_the_socket_with_1003(bus: AsyncBus) -> None:
    async with (
        falcon.testing.ASGIConductor(make_app(bus)) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        await ws.send_data(b'{"channel": "room", "data": "hi"}')
        await eventually(lambda: ws.closed)
        assert (ws.close_code, ws.close_reason) == (
            CloseCode.UNSUPPORTED_DATA,
            "send JSON text, not binary",
        )


async def test_on_publish_stamps_the_sender_or_refuses(bus: AsyncBus) -> None:
    async def stamp(grant: Grant, message: Message) -> Message:
        if message.data == "spam":
            raise Forbidden("no spam")
        text = json.dumps({"from": grant.subject, "text": message.data})
        return Message(message.channel, text, message.event, message.ref)

    async with (
        falcon.testing.ASGIConductor(make_app(bus, on_publish=stamp)) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        await ws.send_json({"channel": "room", "data": "spam", "ref": 1})
        [error] = await frames(ws, 1)
        assert (error["error"], error["reason"], error["ref"]) == ("forbidden", "no spam", 1)
        await ws.send_json({"channel": "room", "data": "hi", "ref": 2})
        event = next(f for f in await frames(ws, 2) if f["type"] == "event")
        assert json.loads(event["data"]) == {"from": "alice", "text": "hi"}


async def test_redis_failing_on_publish_gives_an_unavailable_error(
    bus: AsyncBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def down(*args: Any) -> str:
        raise RedisConnectionError("connection refused")

    async with (
        falcon.testing.ASGIConductor(make_app(bus)) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        monkeypatch.setattr(bus, "publish", down)
        await ws.send_json({"channel": "room", "data": "hi", "ref": 3})
        [error] = await frames(ws, 1)
        assert (error["error"], error["ref"]) == ("unavailable", 3)


# -- handshakes that are refused ---------------------------------------------------------------


async def handshake(
    app: StreamApp,
    qs: str,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    http_response: bool = False,
) -> list[dict[str, Any]]:
    """Open /ws as an ASGI server would; return what the app sent before it let go."""
    scope = falcon.testing.create_scope_ws(
        path="/ws", query_string=qs, headers=headers, subprotocols=subprotocols, spec_version="2.4"
    )
    if http_response:
        scope["extensions"] = {"websocket.http.response": {}}
    sent: list[dict[str, Any]] = []
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


# Tokens are issued when each test runs, not at import: a whole suite can outlast their lifetime.
FRESH = "fresh-token-issued-by-the-test"

BAD_HANDSHAKES = [
    # (case, query, headers, subprotocols, status, reason)
    ("no-token", query("room"), {}, None, 401, "no stream token: send it in"),
    ("bad-token", query("room", token="x.y.z"), {}, None, 401, "token is malformed"),
    ("read-not-granted", query("admin", token=FRESH), {}, None, 403, "alice may not read admin"),
    ("no-channel", f"token={FRESH}", {}, None, 400, '"channel" parameter is required'),
    ("bad-channel", query("a b", token=FRESH), {}, None, 400, "channel name 'a b' is not valid"),
    ("bad-cursor", query("room", token=FRESH, last_event_id="x"), {}, None, 400, "cursor 'x'"),
    (
        "foreign-origin",
        query("room", token=FRESH),
        {"Origin": "https://evil.example"},
        None,
        403,
        "origin https://evil.example may not open sockets here",
    ),
    ("no-subprotocol", query("room"), {}, [f"bearer.{FRESH}"], 400, "offer the 'sidestream.v1'"),
]


@pytest.mark.parametrize(
    ("qs", "headers", "subprotocols", "status", "reason"),
    [case[1:] for case in BAD_HANDSHAKES],
    ids=[case[0] for case in BAD_HANDSHAKES],
)
async def test_a_refused_handshake_is_closed_before_accept_with_3000_plus_status(
    bus: AsyncBus,
    qs: str,
    headers: dict[str, str],
    subprotocols: list[str] | None,
    status: int,
    reason: str,
) -> None:
    fresh = token()
    qs = qs.replace(FRESH, fresh)
    subprotocols = None if subprotocols is None else [p.replace(FRESH, fresh) for p in subprotocols]
    app = make_app(bus)
    async with falcon.testing.ASGIConductor(app):
        [close] = await handshake(app, qs, headers, subprotocols)
        assert close["type"] == "websocket.close"  # never a websocket.accept first
        assert close["code"] == 3000 + status
        assert reason[:60] in close["reason"]
        assert len(close["reason"].encode()) <= 123
        # With the HTTP response extension (uvicorn): a real status and the /events JSON body.
        start, body = await handshake(app, qs, headers, subprotocols, http_response=True)
        assert (start["type"], start["status"]) == ("websocket.http.response.start", status)
        assert (b"content-type", b"application/json") in start["headers"]
        assert reason in json.loads(body["body"])["description"]
        assert app.hub.open_streams == 0 and app.hub.stats().channels == 0


async def test_simulate_ws_sees_the_refusal_code_and_reason(bus: AsyncBus) -> None:
    async with falcon.testing.ASGIConductor(make_app(bus)) as conductor:
        attempt = connect(conductor, query("admin", token=token()))
        with pytest.raises(falcon.WebSocketDisconnected) as refused:
            async with attempt:
                pass
        assert refused.value.code == CloseCode.FORBIDDEN


async def test_over_capacity_and_draining_are_3503_with_retry_after(bus: AsyncBus) -> None:
    app = make_app(bus, max_streams=1, retry_after=9)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        [close] = await handshake(app, query("room", token=token()))
        assert (close["code"], close["reason"]) == (
            3503,
            "this process holds its maximum of 1 streams",
        )
        start, _ = await handshake(app, query("room", token=token()), http_response=True)
        assert (start["status"], (b"retry-after", b"9") in start["headers"]) == (503, True)


async def test_the_token_may_come_in_the_subprotocol_header(bus: AsyncBus) -> None:
    offered = ["sidestream.v1", f"bearer.{token()}"]
    async with (
        falcon.testing.ASGIConductor(make_app(bus)) as conductor,
        connect(conductor, query("room"), subprotocols=offered) as ws,
    ):
        assert ws.subprotocol == "sidestream.v1"  # never the token
        assert (await joined(ws))["publish"] == ["room"]


async def test_the_listed_origin_and_the_same_origin_are_allowed(bus: AsyncBus) -> None:
    app = make_app(bus)
    async with falcon.testing.ASGIConductor(app) as conductor:
        for origin in (ORIGIN, "http://falconframework.org"):  # create_scope_ws's Host
            async with connect(
                conductor, query("room", token=token()), headers={"Origin": origin}
            ) as ws:
                await joined(ws)


# -- closes from the server --------------------------------------------------------------------


async def test_drain_closes_every_socket_with_1001(bus: AsyncBus) -> None:
    app = make_app(bus)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        connect(conductor, query("room", token=token())) as one,
        connect(conductor, query("room", token=token())) as two,
    ):
        await joined(one)
        await joined(two)
        assert await app.drain(timeout=3) == 0
        for ws in (one, two):
            assert (ws.close_code, ws.close_reason) == (1001, "shutdown: reconnect and resume")
        [close] = await handshake(app, query("room", token=token()))
        assert close["code"] == 3503


async def test_token_expiry_closes_the_socket_with_4001(bus: AsyncBus) -> None:
    async def short_lived(request: Any, channels: Sequence[str]) -> Grant:
        return Grant(subject="bob", expires_at=time.time() + 0.2, publish=("room",))

    app = make_app(bus, authorize=short_lived)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        connect(conductor, query("room")) as ws,
    ):
        await joined(ws)
        await eventually(lambda: ws.closed)
        assert ws.close_code == CloseCode.EXPIRED
        assert ws.close_reason == "expired: fetch a new token, reconnect and resume"
    await eventually(lambda: app.hub.open_streams == 0)


class SlowSocket:
    """An ASGI WebSocket whose client reads nothing until `release` is set."""

    def __init__(self, app: StreamApp, qs: str) -> None:
        self.sent: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.closed = asyncio.Event()
        scope = falcon.testing.create_scope_ws(path="/ws", query_string=qs, spec_version="2.4")
        self.task = asyncio.create_task(app(scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        if not self.sent:
            return {"type": "websocket.connect"}
        await self.closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send" and len(self.sent) > 1:
            await self.release.wait()  # the first frame went out; the rest wait for the client
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.closed.set()


async def test_a_slow_socket_is_closed_with_4008_while_a_healthy_one_keeps_receiving(
    bus: AsyncBus,
) -> None:
    app = make_app(bus, queue_size=4)
    async with falcon.testing.ASGIConductor(app) as conductor:
        slow = SlowSocket(app, query("room", token=token()))
        async with connect(conductor, query("room", token=token())) as healthy:
            await joined(healthy)
            await eventually(lambda: len(slow.sent) == 2)  # accepted, and the ready frame
            for n in range(12):
                await bus.publish("room", str(n))
            got = await frames(healthy, 12)
            assert [frame["data"] for frame in got] == [str(n) for n in range(12)]
            assert app.hub.stats().cutoffs == 1
            slow.release.set()  # the client reads again: it gets what was sent, then the close
            await asyncio.wait_for(slow.task, 3)
            close = slow.sent[-1]
            assert (close["type"], close["code"]) == ("websocket.close", CloseCode.SLOW_CONSUMER)
            assert close["reason"] == "slow-consumer: reconnect and resume"
            assert len(slow.sent) <= 2 + 1 + 1 + 1  # accept, ready, the frame in flight, close
            assert app.hub.open_streams == 1
            await bus.publish("room", "still")
            assert (await frames(healthy, 1))[0]["data"] == "still"


async def test_a_socket_that_never_reads_again_is_dropped_after_the_grace(bus: AsyncBus) -> None:
    app = make_app(bus, queue_size=2, cutoff_grace=0.1)
    async with falcon.testing.ASGIConductor(app):
        stalled = SlowSocket(app, query("room", token=token()))
        await eventually(lambda: len(stalled.sent) == 2)
        for n in range(5):
            await bus.publish("room", str(n))
        await asyncio.wait_for(stalled.task, 3)  # cancelled by the abort, ended quietly
        assert app.hub.open_streams == 0
        assert app.hub.stats().cutoffs == 1


async def test_metrics_count_sockets_and_messages(bus: AsyncBus) -> None:
    app = make_app(bus)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        connect(conductor, query("room", token=token())) as ws,
    ):
        await joined(ws)
        await ws.send_json({"channel": "room", "data": "ok"})
        await ws.send_text("bad")
        await frames(ws, 3)
        text = (await conductor.simulate_get("/metrics")).text
        assert "sidestream_open_websockets 1\n" in text
        assert "sidestream_websocket_messages_published_total 1\n" in text
        assert "sidestream_websocket_messages_refused_total 1\n" in text
        assert "sidestream_open_streams 1\n" in text  # the hub counts sockets and streams


@pytest.mark.parametrize("setting", ["max_message_bytes", "publish_concurrency"])
def test_websocket_settings_are_checked(bus: AsyncBus, setting: str) -> None:
    with pytest.raises(InvalidArgument, match=f"{setting} must be an int >= 1, not 0"):
        create_app(bus, authorize=authorizer(TOKENS), **{setting: 0})


def test_no_websocket_route_when_the_path_is_none(bus: AsyncBus) -> None:
    app = create_app(bus, authorize=authorizer(TOKENS), websocket_path=None, drain_on_signal=False)
    assert app.sockets is None


# -- over real sockets (uvicorn on loopback) ---------------------------------------------------


@pytest.fixture
def served(backend_url: str, key_prefix: str) -> Any:
    """Serve make_app with uvicorn in a thread; the app gets a Redis client of its own."""
    from sidestream.testing import serve_asgi

    @contextlib.contextmanager
    def serve(**uvicorn_options: Any) -> Iterator[tuple[StreamApp, str]]:
        app = make_app(AsyncBus(connect_async(backend_url), prefix=key_prefix))
        with serve_asgi(app, **uvicorn_options) as base:
            yield app, base.replace("http://", "ws://") + "/ws"

    return serve


async def test_over_uvicorn_a_refusal_is_an_http_status_with_a_json_body(served: Any) -> None:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidStatus

    with served() as (_, url):
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(f"{url}?channel=admin&token={token()}", proxy=None):
                pass
        response = refused.value.response
        assert response.status_code == 403
        assert json.loads(response.body) == {
            "title": "forbidden",
            "description": "alice may not read admin",
        }
        with pytest.raises(InvalidStatus) as missing:
            async with ws_connect(f"{url}?channel=room", proxy=None):
                pass
        assert missing.value.response.status_code == 401
        assert missing.value.response.headers["WWW-Authenticate"] == "Bearer"


async def test_over_uvicorn_two_clients_talk_through_redis(served: Any) -> None:
    from websockets.asyncio.client import connect as ws_connect

    offered: Any = ["sidestream.v1", f"bearer.{token()}"]
    with served() as (_, url):
        async with (
            ws_connect(f"{url}?channel=room", subprotocols=offered, proxy=None) as alice,
            ws_connect(f"{url}?channel=room", subprotocols=offered, proxy=None) as bob,
        ):
            assert alice.subprotocol == "sidestream.v1"
            for ws in (alice, bob):
                assert json.loads(await ws.recv())["type"] == "ready"
            await alice.send(json.dumps({"channel": "room", "data": "hi bob", "ref": 1}))
            got = json.loads(await asyncio.wait_for(bob.recv(), 5))
            assert (got["type"], got["data"]) == ("event", "hi bob")


async def test_over_uvicorn_a_peer_that_stops_answering_pings_is_dropped(served: Any) -> None:
    """A raw TCP client that completes the handshake, then goes silent (a dead peer)."""
    with served(ws_ping_interval=0.2, ws_ping_timeout=0.2) as (app, url):
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET /ws?channel=room&token={token()} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 101")
        await eventually(lambda: app.hub.open_streams == 1)
        started = time.monotonic()
        await eventually(lambda: app.hub.open_streams == 0, timeout=5)  # never answered a ping
        assert time.monotonic() - started < 2  # interval + timeout, plus scheduling slack
        writer.close()
