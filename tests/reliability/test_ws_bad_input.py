"""Bad input on the stream service's `/ws` route (the auth example's service under uvicorn, real
Redis): refused handshakes get an HTTP status with a JSON body (uvicorn has the ASGI
`websocket.http.response` extension); bad frames on an open socket get an `error` frame and leave
the socket open, or the close code the page documents. No case may log a traceback, and a refused
publish reaches nobody.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from reliability_helpers import Stack
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from sidestream.bus import Bus
from sidestream.bus import connect as redis_connect
from sidestream.websocket import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.redis]


@dataclass
class Room:
    stack: Stack
    own: str  # the socket may read and publish here
    other: str  # it may read nothing of it and publish nothing to it
    token: str
    bus: Bus

    def url(self, query: str) -> str:
        return f"ws://127.0.0.1:{self.stack.service.port}/ws?{query}"

    def open(self, query: str | None = None, **options: object) -> ClientConnection:
        protocols = [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + self.token]
        return connect(
            self.url(query or f"channel={self.own}"),
            subprotocols=protocols,  # type: ignore[arg-type]
            proxy=None,
            open_timeout=10,
            max_size=None,
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def room(stack: Stack) -> Iterator[Room]:
    own, other = f"user:{stack.tag}-ws", f"user:{stack.tag}-ws-other"
    token = stack.tokens.issue("wsuser", subscribe=[own], publish=[own])
    bus = Bus(redis_connect(stack.redis_url))
    yield Room(stack, own, other, token, bus)
    bus.redis.close()


def _frame(ws: ClientConnection) -> dict[str, object]:
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] != "event":
            return message  # type: ignore[no-any-return]


# uvicorn's own WebSocket protocol logs invalid UTF-8 with a traceback of its code alone
# (`logger.exception` in websockets_sansio_impl), then closes 1007 as it should: not ours to fix.
UVICORN_UTF8 = re.compile(
    r"ERROR: +Invalid UTF-8 sequence received from client\.\n"
    r"Traceback.*?\nUnicodeDecodeError: [^\n]*\n",
    re.DOTALL,
)


def _no_traceback(stack: Stack, marks: dict[str, int], *, uvicorn_utf8: bool = False) -> None:
    time.sleep(0.1)
    log = stack.log_since(marks)
    if uvicorn_utf8:
        known = UVICORN_UTF8.findall(log)
        assert all("sidestream" not in block for block in known), known
        log = UVICORN_UTF8.sub("", log)
    assert "Traceback" not in log, log[-3000:]


# --- handshakes: refused before the socket is accepted --------------------------------------------

HANDSHAKES = [
    ("no-token", "channel={own}", None, 401, "token"),
    ("malformed-token", "channel={own}&token=abc", None, 401, "token"),
    ("foreign-channel", "channel={other}", "token", 403, "{other}"),
    ("bad-channel", "channel=a%20b", "token", 400, "channel"),
    ("no-channel", "", "token", 400, "channel"),
    ("too-many-channels", "&".join(f"channel=c{n}" for n in range(17)), "token", 400, "channel"),
    ("bad-cursor", "channel={own}&last_event_id=zzz", "token", 400, "last_event_id"),
    ("foreign-origin", "channel={own}", "origin", 403, "origin"),
    ("no-sidestream-subprotocol", "channel={own}", "bare", 400, SUBPROTOCOL),
]


@pytest.mark.parametrize(
    ("query", "how", "status", "named"),
    [h[1:] for h in HANDSHAKES],
    ids=[h[0] for h in HANDSHAKES],
)
def test_handshake_refused_with_json(
    room: Room, query: str, how: str | None, status: int, named: str
) -> None:
    query = query.replace("{own}", room.own).replace("{other}", room.other)
    named = named.replace("{other}", room.other)
    protocols: list[str] | None = None
    headers: dict[str, str] = {}
    if how in ("token", "origin"):
        protocols = [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + room.token]
    if how == "bare":
        protocols = [TOKEN_SUBPROTOCOL_PREFIX + room.token]
    if how == "origin":
        headers["Origin"] = "https://evil.example"
    marks = room.stack.logs()
    with pytest.raises(InvalidStatus) as refused:
        connect(
            room.url(query),
            subprotocols=protocols,  # type: ignore[arg-type]
            additional_headers=headers,
            proxy=None,
            open_timeout=10,
        )
    response = refused.value.response
    assert response.status_code == status
    assert response.headers.get("content-type", "").startswith("application/json")
    document = json.loads(response.body or b"")
    assert named.lower() in json.dumps(document).lower(), document
    _no_traceback(room.stack, marks)


# --- frames on an open socket -----------------------------------------------------------------


def _ok(room: Room) -> str:
    return json.dumps({"channel": room.own, "data": "fine", "ref": "after"})


FRAMES = [
    ("not-json", lambda r: "{", "invalid", "json"),
    ("deep-nesting", lambda r: "[" * 30_000 + "]" * 30_000, "invalid", ""),
    ("top-level-array", lambda r: "[1]", "invalid", "object"),
    (
        "unknown-type-field",
        lambda r: json.dumps({"type": "subscribe", "channel": r.own}),
        "invalid",
        "unknown",
    ),
    (
        "data-not-a-string",
        lambda r: json.dumps({"channel": r.own, "data": {"a": 1}}),
        "invalid",
        "data",
    ),
    (
        "bad-channel-name",
        lambda r: json.dumps({"channel": "a b", "data": "x"}),
        "invalid",
        "channel",
    ),
    (
        "reserved-event",
        lambda r: json.dumps({"channel": r.own, "data": "x", "event": "close"}),
        "invalid",
        "event",
    ),
    (
        "event-with-newline",
        lambda r: json.dumps({"channel": r.own, "data": "x", "event": "a\nb"}),
        "invalid",
        "type",
    ),
    (
        "ref-too-long",
        lambda r: json.dumps({"channel": r.own, "data": "x", "ref": "r" * 65}),
        "invalid",
        "ref",
    ),
    (
        "lone-surrogate",
        lambda r: '{"channel": "' + r.own + '", "data": "\\ud800"}',
        "invalid",
        "",
    ),
    (
        "publish-not-granted",
        lambda r: json.dumps({"channel": r.other, "data": "nope"}),
        "forbidden",
        "{other}",
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "named"), [f[1:] for f in FRAMES], ids=[f[0] for f in FRAMES]
)
def test_bad_frame_gets_error_frame_and_socket_stays_open(
    room: Room, make: object, error: str, named: str
) -> None:
    marks = room.stack.logs()
    other_before = room.bus.latest_id(room.other)
    with room.open() as ws:
        assert _frame(ws)["type"] == "ready"
        ws.send(make(room))  # type: ignore[operator]
        reply = _frame(ws)
        assert reply["type"] == "error", reply
        assert reply["error"] == error, reply
        assert named.replace("{other}", room.other).lower() in str(reply["reason"]).lower()
        ws.send(_ok(room))  # the socket still works
        ack = _frame(ws)
        assert ack["type"] == "ack" and ack["ref"] == "after", ack
    assert room.bus.latest_id(room.other) == other_before  # nothing reached the other channel
    _no_traceback(room.stack, marks)


CLOSES = [
    ("invalid-utf8", lambda ws, r: ws.send(b'{"data": "\xff\xfe"}', text=True), 1007),
    (
        "oversize",
        lambda ws, r: ws.send(json.dumps({"channel": r.own, "data": "x" * 70_000})),
        1009,
    ),
    ("binary", lambda ws, r: ws.send(b"\x00\x01"), 1003),
]


@pytest.mark.parametrize(("send", "code"), [c[1:] for c in CLOSES], ids=[c[0] for c in CLOSES])
def test_bad_frame_closes_with_documented_code(room: Room, send: object, code: int) -> None:
    marks = room.stack.logs()
    with room.open() as ws:
        assert _frame(ws)["type"] == "ready"
        send(ws, room)  # type: ignore[operator]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    received = closed.value.rcvd
    assert received is not None and received.code == code, received
    _no_traceback(room.stack, marks, uvicorn_utf8=code == 1007)
