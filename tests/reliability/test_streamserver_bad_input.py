"""Hostile and broken clients against sidestream.streamserver, in-process, on fakeredis.

Each case checks the exact status and a JSON body naming the problem (or, where the server
owes no answer, that it closes the connection without a byte), that the app never saw a
request the server refused, and that the stream service's count of open streams comes back to
exactly what it was. The limits are small here (`SETTINGS`) so that every case is quick.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from raw_http import EventStream, RawClient, Running, running

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, connect_async
from sidestream.hub import Hub
from sidestream.service import StreamApp, create_app
from sidestream.testing import wait_until_async

pytestmark = pytest.mark.reliability

SETTINGS: dict[str, Any] = {
    "request_timeout": 0.3,
    "keepalive_timeout": 0.3,
    "max_header_bytes": 1024,
    "max_body_bytes": 1000,
}
eventually = functools.partial(wait_until_async, timeout=3.0)
# Request smuggling: two ways to read where the body ends; a proxy may pick the other one.
SMUGGLE_CL_TE = (
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
)
SMUGGLE_TWO_CL = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nok"
BIG = 64 * 1024  # the size of a /big answer
PADDING = b"X-Pad: 0123456789\r\n" * 60  # 1,140 bytes of headers


class Recorder:
    """An ASGI app that answers `ok` (after reading the body) and records what reached it."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        self.requests.append(f"{scope['method']} {scope['path']}")
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)
        body = b"%06d" % len(self.requests) + b"." * BIG if scope["path"] == "/big" else b"ok"
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, Running]]:
    app = Recorder()
    async with running(app, **SETTINGS) as server:
        yield app, server


@pytest.fixture
async def bus(key_prefix: str) -> AsyncIterator[AsyncBus]:
    client = connect_async("memory://")
    yield AsyncBus(client, prefix=key_prefix)
    await client.aclose()


@pytest.fixture
async def service(bus: AsyncBus) -> AsyncIterator[tuple[StreamApp, Running]]:
    hub = Hub(bus, heartbeat=60)
    app = create_app(hub=hub, authorize=allow_everyone, drain_on_signal=False)
    async with running(app, **SETTINGS) as server:
        await eventually(lambda: app.hub.stats().can_deliver)
        yield app, server


async def refused(client: RawClient, status: int, names: str) -> None:
    """The client gets `status` with a JSON body whose description contains `names`, then
    the close."""
    response = await client.response()
    assert response.status == status, response
    assert response.header("connection") == "close"
    body = response.json()
    assert body["title"].startswith(str(status)), body
    assert names in body["description"], body
    assert await client.closed()


@pytest.mark.parametrize(
    ("request_bytes", "status", "names"),
    [
        (b"NOT A REQUEST\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "malformed HTTP request"),
        (SMUGGLE_CL_TE, 400, "malformed HTTP request"),
        (SMUGGLE_TWO_CL, 400, "malformed HTTP request"),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Invalid char in url"),
        (b"GET http://[::1 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "not a valid URL"),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + PADDING + b"\r\n", 431, "too large"),
        (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 431, "too large"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413, "body is larger"),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n",
            413,  # and no 100 Continue first: `response()` would return it
            "body is larger",
        ),
        (
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            501,
            "does not serve WebSockets",
        ),
    ],
    ids=[
        "request-line",
        "request-line-extra",
        "header-without-colon",
        "bad-content-length",
        "content-length-and-chunked",
        "two-content-lengths",
        "non-ascii-url",
        "invalid-url",
        "many-headers",
        "long-url",
        "content-length-over-limit",
        "expect-over-limit",
        "websocket-upgrade",
    ],
)
async def test_a_bad_request_gets_its_status_and_the_app_never_sees_it(
    recorder: tuple[Recorder, Running], request_bytes: bytes, status: int, names: str
) -> None:
    app, server = recorder
    client = await server.connect()
    client.send(request_bytes)
    await refused(client, status, names)
    await asyncio.sleep(0.05)  # a request task started by mistake would have run by now
    assert app.requests == []


async def test_a_header_line_that_never_ends_meets_the_limit(
    recorder: tuple[Recorder, Running],
) -> None:
    """httptools keeps a header in its own buffer until its line ends: a client that sends one
    endless header line, piece by piece, must still get 431 once the limit is passed, not fill
    the server's memory until the request timeout."""
    app, server = recorder
    client = await server.connect()
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
    await asyncio.sleep(0.005)
    client.send(b"X-Endless: ")
    for _ in range(20):  # 20 x 200 bytes: well over 1024, sent in pieces
        await asyncio.sleep(0.005)
        client.send(b"v" * 200)
    await refused(client, 431, "too large")
    assert app.requests == []


async def test_a_long_header_under_the_limit_sent_in_pieces_is_served(
    recorder: tuple[Recorder, Running],
) -> None:
    """The other side of the two cases around this one: a 900-byte header (the limit is
    1024) that arrives 50 bytes at a time is not mistaken for an endless one."""
    app, server = recorder
    client = await server.connect()
    raw = b"GET /long HTTP/1.1\r\nHost: t\r\nCookie: " + b"c" * 900 + b"\r\n\r\n"
    for start in range(0, len(raw), 50):
        client.send(raw[start : start + 50])
        await asyncio.sleep(0.002)
    response = await client.response()
    assert (response.status, response.body) == (200, b"ok")
    assert app.requests == ["GET /long"]
    client.close()


async def test_a_trailer_line_that_never_ends_meets_the_limit(
    recorder: tuple[Recorder, Running],
) -> None:
    """The same for a field after a chunked body (a trailer), which httptools buffers too."""
    app, server = recorder
    client = await server.connect()
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    await asyncio.sleep(0.005)
    client.send(b"2\r\nhi\r\n0\r\nX-Endless: ")
    for _ in range(20):
        await asyncio.sleep(0.005)
        client.send(b"v" * 200)
    await refused(client, 431, "too large")
    assert app.requests == []


async def test_a_chunked_body_that_grows_over_the_limit_gets_413(
    recorder: tuple[Recorder, Running],
) -> None:
    app, server = recorder
    client = await server.connect()
    client.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):  # 3 x 400 bytes: the third passes 1000
        await asyncio.sleep(0.01)
        client.send(b"190\r\n" + b"z" * 400 + b"\r\n")
    await refused(client, 413, "body is larger")
    assert app.requests == []


async def test_a_client_still_sending_its_body_reads_its_413(
    recorder: tuple[Recorder, Running],
) -> None:
    """A client that sends a too large body without waiting (no Expect) is still writing when
    the 413 goes out. Closing the socket then would make the kernel answer what it still sends
    with a reset, which can destroy the 413 before the client reads it: the server sends the
    answer and its end of the stream, and drops what still comes until the client closes."""
    app, server = recorder
    client = await server.connect()
    client.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 30000\r\n\r\n")
    for _ in range(30):
        client.send(b"b" * 1000)
        await client.writer.drain()
        await asyncio.sleep(0.002)
    await refused(client, 413, "body is larger")
    assert app.requests == []


@pytest.mark.parametrize(
    "partial",
    [
        b"GE",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n",
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
    ],
    ids=["method", "headers", "body"],
)
async def test_half_a_request_then_silence_gets_408(
    recorder: tuple[Recorder, Running], partial: bytes
) -> None:
    """Whatever part of a request has arrived, a client that stalls gets 408 after
    `request_timeout` (0.3 s here), and its connection is closed."""
    app, server = recorder
    client = await server.connect()
    client.send(partial)
    await refused(client, 408, "did not arrive in time")
    assert app.requests == []


async def test_a_connection_that_sends_nothing_is_closed_without_a_word(
    recorder: tuple[Recorder, Running],
) -> None:
    _, server = recorder
    client = await server.connect()
    assert await client.closed(timeout=3)


async def test_an_idle_keep_alive_connection_is_closed_without_a_word(
    recorder: tuple[Recorder, Running],
) -> None:
    """After a whole request and its answer, silence is not a late request: the connection is
    closed after `keepalive_timeout`, with no 408 (a client would read it as the answer to the
    next request it sends)."""
    app, server = recorder
    client = await server.connect()
    client.request("/one")
    assert (await client.response()).body == b"ok"
    assert await client.closed(timeout=3)
    assert app.requests == ["GET /one"]


async def test_a_bad_request_pipelined_behind_a_good_one_is_answered_after_it(
    recorder: tuple[Recorder, Running],
) -> None:
    """The good request's answer comes first and whole; then the 400, then the close."""
    app, server = recorder
    client = await server.connect()
    client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nNOT A REQUEST\r\n\r\n")
    first = await client.response()
    assert (first.status, first.body) == (200, b"ok")
    await refused(client, 400, "malformed HTTP request")
    assert app.requests == ["GET /slow"]


async def test_a_client_that_pipelines_without_reading_gets_no_more_than_it_reads() -> None:
    """500 requests for 64 KB answers in one write, from a client that reads nothing for a
    while (less than the request timeout): the server answers only while the client takes the
    answers (else it would buffer 32 MB for it, and more with every write). Once the client
    reads, every answer comes, in order."""
    app = Recorder()
    async with running(app, **{**SETTINGS, "request_timeout": 5.0}) as server:
        client = await server.connect(receive_buffer=4096)
        client.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 500)
        await eventually(lambda: len(app.requests) > 0)
        await asyncio.sleep(0.5)
        assert len(app.requests) < 250, f"{len(app.requests)} answers for a client not reading"
        for n in range(1, 501):
            response = await client.response()
            assert (response.status, response.body[:6], len(response.body)) == (
                200,
                b"%06d" % n,
                6 + BIG,
            )
        assert len(app.requests) == 500
        client.close()


async def test_a_client_that_never_reads_its_answers_is_dropped_after_the_timeout(
    recorder: tuple[Recorder, Running],
) -> None:
    """The same client, reading nothing at all: its connection is dropped once it has taken
    nothing for the request timeout (a close would wait for the unread answers forever), and
    the server stops answering it."""
    app, server = recorder
    client = await server.connect(receive_buffer=4096)
    client.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 500)
    await eventually(lambda: len(app.requests) > 0)
    await asyncio.sleep(1.0)  # over three times the request timeout, reading nothing
    made = len(app.requests)
    assert made < 250
    answers = 0
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        while True:  # what reached the client's buffers, then the reset
            await client.response()
            answers += 1
    assert answers < made == len(app.requests)


async def test_an_upgrade_to_another_protocol_is_answered_then_closed(
    recorder: tuple[Recorder, Running],
) -> None:
    """An h2c upgrade is ignored, as HTTP/1.1 allows: the request is answered; what follows on
    the connection would be another protocol, so the server closes it then."""
    app, server = recorder
    client = await server.connect()
    client.send(
        b"GET /h2c HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    response = await client.response()
    assert (response.status, response.body) == (200, b"ok")
    assert await client.closed(timeout=3)
    assert app.requests == ["GET /h2c"]


async def test_junk_sent_on_an_open_stream_breaks_neither_it_nor_others(
    service: tuple[StreamApp, Running], bus: AsyncBus
) -> None:
    """Bytes a client sends after its stream opened are not requests: they are dropped, and
    the stream and its neighbour get every event."""
    app, server = service
    noisy = await EventStream.open(await server.connect(), "/events?channel=j")
    quiet = await EventStream.open(await server.connect(), "/events?channel=j")
    noisy.client.send(b"\x00\xffGET / HTTP/1.1\r\n\r\nNOT HTTP\r\n\r\n" * 100)
    ids = [await bus.publish("j", str(n)) for n in range(10)]
    for stream in (noisy, quiet):
        events = await stream.wait_events(10)
        assert [(e.data, e.id) for e in events] == [(str(n), ids[n]) for n in range(10)]
    assert app.hub.open_streams == 2
    for stream in (noisy, quiet):
        stream.client.close()
    await eventually(lambda: app.hub.open_streams == 0)


async def test_connections_reset_at_every_stage_leave_no_stream_behind(
    service: tuple[StreamApp, Running], bus: AsyncBus
) -> None:
    """200 clients drop their connection with a TCP reset: 100 with an open stream, 50 while
    sending their request, 50 right after it (before the answer). Open streams come back to
    exactly the one good stream, which gets every event, and the server takes new streams."""
    app, server = service
    good = await EventStream.open(await server.connect(), "/events?channel=rst")
    streams = [
        await EventStream.open(await server.connect(), "/events?channel=rst") for _ in range(100)
    ]
    assert app.hub.open_streams == 101
    partial, whole = [], []
    for _ in range(50):
        client = await server.connect()
        client.send(b"GET /events?channel=rst HTTP/1.1\r\nHost: t\r\n")
        partial.append(client)
        client = await server.connect()
        client.request("/events?channel=rst")
        whole.append(client)
    await asyncio.sleep(0)
    for client in [s.client for s in streams] + partial + whole:
        client.reset()
    await eventually(lambda: app.hub.open_streams == 1)
    await asyncio.sleep(0.2)  # requests that were still being admitted end too
    assert app.hub.open_streams == 1
    ids = [await bus.publish("rst", str(n)) for n in range(5)]
    events = await good.wait_events(5)
    assert [(e.data, e.id) for e in events] == [(str(n), ids[n]) for n in range(5)]
    again = await EventStream.open(await server.connect(), "/events?channel=rst")
    assert app.hub.open_streams == 2
    for stream in (good, again):
        stream.client.close()
    await eventually(lambda: app.hub.open_streams == 0)
    assert app.hub.stats().channels == 0


async def test_bad_clients_never_disturb_a_good_stream(
    service: tuple[StreamApp, Running], bus: AsyncBus
) -> None:
    """While events are published, other clients send garbage, oversize heads and bodies,
    stall, and reset: the good stream gets every event exactly once, in order."""
    app, server = service
    good = await EventStream.open(await server.connect(), "/events?channel=calm")
    reading = asyncio.create_task(good.wait_events(60, timeout=10))

    async def misbehave(kind: int) -> None:
        client = await server.connect()
        if kind == 4:
            client.request("/events?channel=calm")
            await asyncio.sleep(0.01)
            client.reset()
            return
        status = (400, 431, 413, 408)[kind]
        client.send(
            [
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS client hello
                b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 400,
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\n",
                b"GET /events?channel=calm HTTP/1.1\r\nHost: t",  # then silence
            ][kind]
        )
        answer = await client.rest(timeout=3)
        assert answer.startswith(b"HTTP/1.1 %d " % status), answer
        client.close()

    bad = [asyncio.create_task(misbehave(n % 5)) for n in range(50)]
    ids = []
    for n in range(60):
        ids.append(await bus.publish("calm", str(n)))
        if n % 10 == 0:
            await asyncio.sleep(0.01)
    events = await reading
    await asyncio.gather(*bad)
    assert [(e.data, e.id) for e in events] == [(str(n), ids[n]) for n in range(60)]
    await eventually(lambda: app.hub.open_streams == 1)
    good.client.close()


async def test_a_client_that_resets_mid_response_does_not_stop_the_server(
    recorder: tuple[Recorder, Running],
) -> None:
    """A reset while the app is still answering: the app's send goes nowhere, no error
    reaches the server, and the next client is served."""
    app, server = recorder
    client = await server.connect()
    client.request("/slow")
    await eventually(lambda: app.requests == ["GET /slow"])
    client.reset()
    await asyncio.sleep(0.3)
    other = await server.connect()
    other.request("/after")
    assert (await other.response()).body == b"ok"
    other.close()
