"""sidestream.streamserver in-process: plain HTTP/1.1 and 1.0, the stream service's event streams
held as connections, and shutdown. On fakeredis and on real Redis.

Clients are raw asyncio sockets (tests/raw_http.py): each test sends exactly the bytes it means
and reads the responses strictly, with a timeout on every read. Plain HTTP cases also run
against a small ASGI app of this module (`Echo`), since the server runs any ASGI app.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from raw_http import EventStream, RawClient, Running, running
from service_apps import make_app

from sidestream.bus import AsyncBus
from sidestream.service import StreamApp
from sidestream.streamserver import ServerSettings, serve
from sidestream.testing import wait_until_async
from sidestream.tokens import StreamTokens, authorizer

# This module's bound for a condition seen from outside (a count, a flag).
eventually = functools.partial(wait_until_async, timeout=3.0)


@pytest.fixture
def bus(async_bus: AsyncBus) -> AsyncBus:
    return async_bus


@pytest.fixture
async def service(bus: AsyncBus) -> AsyncIterator[tuple[StreamApp, Running]]:
    """The stream service under the server, ready to deliver (Redis connected)."""
    app = make_app(bus)
    async with running(app) as server:
        await eventually(lambda: app.hub.stats().can_deliver)
        yield app, server


class Echo:
    """A small ASGI app for what the stream service does not do (bodies, HEAD, failures).

    - `POST /echo`: the request body back, with a Content-Length;
    - `GET /slow?<ms>`: waits that long, then answers its query (for pipelining order);
    - `GET /chunks`: three body messages and no Content-Length (chunked, or the close);
    - `GET|HEAD /sized`: `hello`, with a Content-Length;
    - `GET /state`: the lifespan state the request sees, as JSON;
    - `GET /scope...`: what the ASGI scope says of the request, as JSON;
    - `GET /raise`, `/raise-late` (after the head), `/silent` (returns without a response),
      `/truncated` (returns in the middle of its body).

    `events` records the lifespan and each request's method and path, in order.
    """

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["greeting"] = "hello from startup"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope["path"], scope["method"]
        self.events.append(f"{method} {path}")
        if path == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await respond(send, 200, body)
        elif path == "/slow":
            try:
                await asyncio.sleep(int(scope["query_string"]) / 1000)
            except asyncio.CancelledError:
                self.events.append("cancelled GET /slow")
                raise
            await respond(send, 200, scope["query_string"])
        elif path == "/chunks":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one,", b"two,", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/sized":
            await respond(send, 200, b"hello")
        elif path.startswith("/scope"):
            seen = {
                "http_version": scope["http_version"],
                "scheme": scope["scheme"],
                "path": path,
                "raw_path": scope["raw_path"].decode(),
                "query_string": scope["query_string"].decode(),
                "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]],
                "client": scope["client"][0],
                "server": scope["server"][1],
            }
            await respond(send, 200, json.dumps(seen, ensure_ascii=False).encode())
        elif path == "/state":
            await respond(send, 200, json.dumps(scope["state"]).encode())
        elif path == "/raise":
            raise RuntimeError("the app failed on purpose")
        elif path == "/raise-late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("the app failed on purpose, after its head")
        elif path == "/silent":
            return
        elif path == "/truncated":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
        else:
            await respond(send, 404, b"no such path")


async def respond(send: Any, status: int, body: bytes) -> None:
    length = str(len(body)).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", length)]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, Running]]:
    app = Echo()
    async with running(app) as server:
        yield app, server


# --- plain requests -------------------------------------------------------------------------


async def test_plain_routes_answer_with_their_status_and_a_json_body(
    service: tuple[StreamApp, Running],
) -> None:
    """/healthz, /metrics, an unknown path and a stream request without a channel: each on a
    new connection, each framed by its Content-Length (no chunks), JSON where it is an error."""
    app, server = service
    cases = [
        ("/healthz", 200, "application/json"),
        ("/metrics", 200, "text/plain; version=0.0.4; charset=utf-8"),
        ("/no-such-route", 404, "application/json"),
        ("/events", 400, "application/json"),
    ]
    answers = {}
    for target, status, content_type in cases:
        client = await server.connect()
        client.request(target)
        response = await client.response()
        assert (response.status, response.header("content-type")) == (status, content_type)
        assert response.header("content-length") == str(len(response.body))
        assert response.header("transfer-encoding") is None
        assert response.header("date") is not None
        answers[target] = response
        client.close()
    assert answers["/healthz"].json()["status"] == "ok"
    assert answers["/healthz"].json()["open_streams"] == 0
    assert "sidestream_open_streams 0\n" in answers["/metrics"].body.decode()
    assert answers["/no-such-route"].json()["title"] == "404 Not Found"
    assert '"channel" parameter is required' in answers["/events"].json()["description"]
    assert app.hub.open_streams == 0


async def test_the_asgi_scope_describes_the_request(echo: tuple[Echo, Running]) -> None:
    """The path percent-decoded (raw_path as sent), the query string as sent, header names in
    lower case with values as sent, in order, and both ends of the connection."""
    _, server = echo
    client = await server.connect()
    client.request("/scope/caf%C3%A9?q=1&r=%20", headers={"X-Custom": "Mixed Case"})
    seen = json.loads((await client.response()).body)
    assert seen == {
        "http_version": "1.1",
        "scheme": "http",
        "path": "/scope/café",
        "raw_path": "/scope/caf%C3%A9",
        "query_string": "q=1&r=%20",
        "headers": [["host", "test"], ["x-custom", "Mixed Case"]],
        "client": "127.0.0.1",
        "server": server.port,
    }
    client.close()


async def test_keep_alive_serves_two_requests_on_one_connection(
    service: tuple[StreamApp, Running],
) -> None:
    """An HTTP/1.1 connection stays open after a response (no `Connection: close`), and the
    next request on it is answered; `Connection: close` from the client ends it after."""
    _, server = service
    client = await server.connect()
    client.request("/healthz")
    first = await client.response()
    assert (first.status, first.header("connection")) == (200, None)
    client.request("/metrics", headers={"Connection": "close"})
    second = await client.response()
    assert (second.status, second.header("connection")) == (200, "close")
    assert b"sidestream_open_streams" in second.body
    assert await client.closed()


async def test_pipelined_requests_are_answered_in_order(echo: tuple[Echo, Running]) -> None:
    """Three requests in one write, the first the slowest: the answers come in request order,
    each whole, and the app saw them one after the other."""
    app, server = echo
    client = await server.connect()
    client.send(
        b"GET /slow?200 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /slow?0 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthird"
    )
    bodies = [(await client.response()).body for _ in range(3)]
    assert bodies == [b"200", b"0", b"third"]
    assert app.events[1:] == ["GET /slow", "GET /slow", "POST /echo"]
    client.request("/sized")  # and the connection is still usable
    assert (await client.response()).body == b"hello"
    client.close()


async def test_http_1_0_gets_no_chunks_and_the_connection_closes(
    echo: tuple[Echo, Running],
) -> None:
    """An HTTP/1.0 client cannot read chunks: a body without a length is sent as it is and
    ended by the close; a body with a length also ends the connection (no keep-alive asked)."""
    _, server = echo
    client = await server.connect()
    client.request("/chunks", version="1.0")
    head = await client.head()
    assert head.status == 200
    assert head.header("transfer-encoding") is None
    assert head.header("connection") == "close"
    assert await client.rest() == b"one,two,three"
    client = await server.connect()
    client.request("/sized", version="1.0")
    sized = await client.response()
    assert (sized.body, sized.header("connection")) == (b"hello", "close")
    assert await client.closed()


async def test_http_1_0_keep_alive_is_confirmed_when_the_body_has_a_length(
    echo: tuple[Echo, Running],
) -> None:
    """An HTTP/1.0 client that asks for keep-alive closes after the answer unless the answer
    says `Connection: keep-alive`: it must, when a length frames the body (and the next
    request on the connection is served); a body ended by the close says `close`."""
    _, server = echo
    client = await server.connect()
    client.request("/sized", version="1.0", headers={"Connection": "keep-alive"})
    first = await client.response()
    assert (first.body, first.header("connection")) == (b"hello", "keep-alive")
    client.request("/chunks", version="1.0", headers={"Connection": "keep-alive"})
    head = await client.head()
    assert head.header("connection") == "close"
    assert await client.rest() == b"one,two,three"


async def test_http_1_1_without_a_length_is_chunked(echo: tuple[Echo, Running]) -> None:
    """Each body message of the app is one chunk, and the last chunk ends the body."""
    _, server = echo
    client = await server.connect()
    client.request("/chunks")
    head = await client.head()
    assert head.header("transfer-encoding") == "chunked"
    assert [await client.chunk() for _ in range(4)] == [b"one,", b"two,", b"three", b""]
    client.close()


async def test_head_gets_the_headers_and_never_a_body(echo: tuple[Echo, Running]) -> None:
    """HEAD: the app's Content-Length is kept, its body is not sent (the next response on the
    connection would be garbled if it were), and no chunked framing is announced."""
    _, server = echo
    client = await server.connect()
    client.request("/sized", method="HEAD")
    sized = await client.response(method="HEAD")
    assert (sized.status, sized.header("content-length")) == (200, "5")
    client.request("/chunks", method="HEAD")
    unsized = await client.response(method="HEAD")
    assert (unsized.status, unsized.header("transfer-encoding")) == (200, None)
    client.request("/sized")
    after = await client.response()
    assert after.body == b"hello"
    client.close()


async def test_a_request_body_reaches_the_app(echo: tuple[Echo, Running]) -> None:
    """A body with a Content-Length, and one in chunks, arrive whole (the chunked one with its
    framing removed)."""
    _, server = echo
    client = await server.connect()
    body = bytes(range(256)) * 64
    client.request("/echo", method="POST", body=body)
    assert (await client.response()).body == body
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    assert (await client.response()).body == b"hello world"
    client.close()


async def test_trailer_fields_are_not_taken_for_headers(echo: tuple[Echo, Running]) -> None:
    """Fields after a chunked body (trailers) must stay out of the request's headers: a proxy
    that vets headers may pass trailers on unvetted (RFC 9110, 6.5.1: keep them apart or
    drop them). This server drops them."""
    _, server = echo
    client = await server.connect()
    client.send(
        b"POST /scope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\nAuthorization: Bearer forged\r\nX-Trailer: 1\r\n\r\n"
    )
    seen = json.loads((await client.response()).body)
    assert seen["headers"] == [["host", "t"], ["transfer-encoding", "chunked"]]
    client.request("/sized")  # the connection goes on
    assert (await client.response()).body == b"hello"
    client.close()


async def test_expect_100_continue_is_answered_before_the_body(
    echo: tuple[Echo, Running],
) -> None:
    """A client that asks `Expect: 100-continue` waits for the interim answer before it sends
    its body: the server must send it on the headers alone."""
    _, server = echo
    client = await server.connect()
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await client.head()
    assert (interim.status, interim.headers) == (100, [])
    client.send(b"hello")
    final = await client.response()
    assert (final.status, final.body) == (200, b"hello")
    client.close()


async def test_a_pipelined_100_continue_comes_after_the_answer_before_it(
    echo: tuple[Echo, Running],
) -> None:
    """An `Expect: 100-continue` request sent behind a slow one: its interim answer must not
    land inside (or before) the first answer; it follows it, then the body is read. An HTTP/1.0
    request's expectation is ignored, as RFC 9110 requires."""
    _, server = echo
    client = await server.connect()
    client.send(
        b"GET /slow?200 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    first = await client.response()
    assert (first.status, first.body) == (200, b"200")
    assert (await client.head()).status == 100
    client.send(b"hello")
    assert (await client.response()).body == b"hello"
    client.close()
    old = await server.connect()
    old.send(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi")
    answer = await old.response()
    assert (answer.status, answer.body) == (200, b"hi")
    assert await old.closed()


async def test_an_app_that_raises_gets_500_and_the_server_serves_on(
    echo: tuple[Echo, Running], caplog: pytest.LogCaptureFixture
) -> None:
    """Before its head: a 500 with a JSON body, then the close. After its head: the connection
    is dropped (the body cannot be completed). Either way other connections are served."""
    _, server = echo
    client = await server.connect()
    client.request("/raise")
    failed = await client.response()
    assert failed.status == 500
    assert failed.json()["description"] == "the server failed to answer this request"
    assert await client.closed()
    late = await server.connect()
    late.request("/raise-late")
    head = await late.head()
    assert head.status == 200
    assert await late.chunk() == b"partial"
    with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
        await late.chunk()  # never the last chunk: the body is cut
    other = await server.connect()
    other.request("/sized")
    assert (await other.response()).body == b"hello"
    other.close()
    failures = [
        r for r in caplog.records if r.name == "sidestream.streamserver" and r.levelname == "ERROR"
    ]
    assert [r.getMessage() for r in failures] == [
        "the app failed on GET /raise",
        "the app failed on GET /raise-late",
    ]


async def test_an_app_that_returns_without_a_response_gets_500(
    echo: tuple[Echo, Running],
) -> None:
    _, server = echo
    client = await server.connect()
    client.request("/silent")
    response = await client.response()
    assert response.status == 500
    assert response.json()["title"] == "500 Internal Server Error"
    assert await client.closed()


async def test_an_app_that_returns_in_the_middle_of_its_body_has_the_connection_dropped(
    echo: tuple[Echo, Running], caplog: pytest.LogCaptureFixture
) -> None:
    """The client must not take half a body for a whole one: no last chunk, the connection is
    dropped, and the server says why in its log."""
    _, server = echo
    client = await server.connect()
    client.request("/truncated")
    assert (await client.head()).status == 200
    assert await client.chunk() == b"half"
    with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
        await client.chunk()
    await eventually(
        lambda: "the app returned before its response to /truncated ended" in caplog.text
    )


# --- lifespan and shutdown ------------------------------------------------------------------


async def test_lifespan_runs_around_serving_and_its_state_reaches_requests() -> None:
    """Startup completes before the port is reported, its state is in every request's scope,
    and shutdown runs once `stop` is set, before serve() returns."""
    app = Echo()
    async with running(app) as server:
        assert app.events == ["lifespan.startup"]
        client = await server.connect()
        client.request("/state")
        assert json.loads((await client.response()).body) == {"greeting": "hello from startup"}
        client.close()
    assert app.events == ["lifespan.startup", "GET /state", "lifespan.shutdown"]


async def test_an_app_without_lifespan_is_served() -> None:
    """An app that raises on the lifespan scope (as ASGI allows) is served all the same."""

    async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await respond(send, 200, b"plain")

    async with running(plain) as server:
        client = await server.connect()
        client.request("/")
        assert (await client.response()).body == b"plain"
        client.close()


async def test_a_failed_lifespan_startup_is_raised_and_nothing_listens() -> None:
    """An app whose startup fails (Redis unreachable, say) must not be served half-started:
    serve() raises the app's message and never reports a port."""

    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    ports: list[int] = []
    with pytest.raises(RuntimeError, match="the app's lifespan startup failed: no database"):
        await asyncio.wait_for(serve(failing, ServerSettings(port=0), on_listening=ports.append), 5)
    assert ports == []


async def test_a_port_in_use_raises_after_the_lifespan_shut_down() -> None:
    """A server that cannot listen must not leave the app started (its hub, its Redis
    connection): the lifespan shutdown runs, then the bind error is raised."""
    app = Echo()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await asyncio.wait_for(serve(app, ServerSettings(port=port)), 10)
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


async def test_cancelling_serve_leaves_nothing_running() -> None:
    """serve() cancelled by whoever runs it (a test's timeout, a supervisor), not stopped:
    the port stops accepting and the app's lifespan shuts down (its hub, its Redis
    connection) before the cancellation propagates."""
    app = Echo()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(app, ServerSettings(port=0), stop=asyncio.Event(), on_listening=listening.set_result)
    )
    port = await asyncio.wait_for(listening, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_fault_of_the_server_while_reading_is_a_logged_500(
    echo: tuple[Echo, Running], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception inside httptools' callbacks that is not a refusal of the client's
    request is the server's fault: the client gets a 500 (not a 400 blaming it), and the
    error is logged with its traceback."""
    _, server = echo

    def broken(*args: Any) -> Any:
        raise LookupError("a bug while building the scope")

    monkeypatch.setattr("sidestream.http_connection.HttpConnection._scope", broken)
    client = await server.connect()
    client.request("/sized")
    failed = await client.response()
    assert failed.status == 500
    assert failed.json()["description"] == "the server failed to read this request"
    assert await client.closed()
    errors = [r for r in caplog.records if r.name == "sidestream.streamserver"]
    assert [(r.getMessage(), r.exc_info and r.exc_info[0]) for r in errors] == [
        ("failed on a request", LookupError)
    ]


async def test_stop_lets_a_running_request_finish() -> None:
    """A request running when `stop` is set is answered whole, told `Connection: close`, and
    its connection closed; then serve() returns."""
    app = Echo()
    async with running(app) as server:
        client = await server.connect()
        client.request("/slow?300")
        await eventually(lambda: "GET /slow" in app.events)
        server.stop.set()
        response = await client.response()
        assert (response.body, response.header("connection")) == (b"300", "close")
        assert await client.closed()
        async with asyncio.timeout(5):
            await server.task


async def test_a_request_still_running_after_the_shutdown_timeout_is_cancelled() -> None:
    """After `shutdown_timeout` the connection is dropped and the request's task cancelled
    before serve() returns: no app code runs on after the server has stopped."""
    app = Echo()
    async with running(app, shutdown_timeout=0.3) as server:
        client = await server.connect()
        client.request("/slow?60000")
        await eventually(lambda: "GET /slow" in app.events)
        server.stop.set()
        async with asyncio.timeout(5):
            await server.task
        assert app.events[-2:] == ["lifespan.shutdown", "cancelled GET /slow"]
        with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
            await client.head()


async def test_stop_drains_every_stream_and_serve_returns(bus: AsyncBus) -> None:
    """On `stop` each open stream gets `event: close` with reason shutdown and its jittered
    `retry:`, then its end (the last chunk, or the close on HTTP/1.0); an idle keep-alive
    connection is closed; serve() returns; the port no longer accepts."""
    app = make_app(bus, retry=2000, retry_jitter=500)
    async with running(app) as server:
        streams = [
            await EventStream.open(await server.connect(), "/events?channel=d", version=version)
            for version in ("1.1", "1.1", "1.0")
        ]
        idle = await server.connect()
        idle.request("/healthz")
        assert (await idle.response()).status == 200
        assert app.hub.open_streams == 3
        server.stop.set()
        for stream in streams:
            events = await stream.until_end()
            [closing] = events
            assert (closing.event, json.loads(closing.data)) == ("close", {"reason": "shutdown"})
            assert closing.retry is not None and 2000 <= closing.retry <= 2500
        assert await idle.closed()
        async with asyncio.timeout(5):
            await server.task
        assert app.hub.open_streams == 0
    with pytest.raises(OSError):
        await RawClient.connect(server.port)


# --- event streams --------------------------------------------------------------------------


async def test_a_stream_receives_every_published_event_in_order(
    service: tuple[StreamApp, Running], bus: AsyncBus
) -> None:
    """Fifty events, each once, in publish order, with their ids; then nothing more than
    what is published next. The stream is held by the connection (no task per stream)."""
    app, server = service
    stream = await EventStream.open(await server.connect(), "/events?channel=news")
    assert stream.response.header("cache-control") == "no-store"
    ids = [await bus.publish("news", f"n{n}", event="tick") for n in range(50)]
    events = await stream.wait_events(50)
    assert [(e.data, e.event, e.id) for e in events] == [
        (f"n{n}", "tick", ids[n]) for n in range(50)
    ]
    [subscriber] = app.hub._subscribers
    assert subscriber._ready is not None  # written to by the connection, not a task
    last = await bus.publish("news", "last")
    events = await stream.wait_events(51)
    assert len(events) == 51 and (events[-1].data, events[-1].id) == ("last", last)
    assert app.hub.stats().delivered == 51
    stream.client.close()


async def test_open_streams_keep_no_task(service: tuple[StreamApp, Running]) -> None:
    """Once open, a stream is a connection and a subscriber: ten more streams, no more tasks
    (under uvicorn or the generic adapter each would keep its request's task)."""
    app, server = service
    first = await EventStream.open(await server.connect(), "/events?channel=tasks")
    await asyncio.sleep(0.05)  # let the first stream's request task finish
    before = len(asyncio.all_tasks())
    streams = [
        await EventStream.open(await server.connect(), "/events?channel=tasks") for _ in range(10)
    ]
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == before
    assert app.hub.open_streams == 11
    for stream in [first, *streams]:
        stream.client.close()
    await eventually(lambda: app.hub.open_streams == 0)


async def test_several_channels_and_a_resume_with_last_event_id(
    service: tuple[StreamApp, Running], bus: AsyncBus
) -> None:
    """A two-channel stream carries both channels' events with the combined cursor as id; a
    reconnect with that cursor as Last-Event-ID gets exactly what it missed, then live ones."""
    _, server = service
    target = "/events?channel=a&channel=b"
    stream = await EventStream.open(await server.connect(), target)
    b1 = await bus.publish("b", "b1")
    a1 = await bus.publish("a", "a1")
    events = await stream.wait_events(2)
    assert [(e.data, e.id) for e in events] == [("b1", f"a=0-0,b={b1}"), ("a1", f"a={a1},b={b1}")]
    cursor = stream.parser.last_event_id
    stream.client.close()
    a2 = await bus.publish("a", "a2")
    b2 = await bus.publish("b", "b2")
    resumed = await EventStream.open(
        await server.connect(), target, headers={"Last-Event-ID": cursor}
    )
    a3 = await bus.publish("a", "a3")
    events = await resumed.wait_events(3)
    assert [(e.data, e.id) for e in events] == [
        ("a2", f"a={a2},b={b1}"),
        ("b2", f"a={a2},b={b2}"),
        ("a3", f"a={a3},b={b2}"),
    ]
    resumed.client.close()


async def test_an_http_1_0_stream_delivers_events_unchunked(
    service: tuple[StreamApp, Running], bus: AsyncBus
) -> None:
    app, server = service
    stream = await EventStream.open(await server.connect(), "/events?channel=old", version="1.0")
    assert stream.response.header("connection") == "close"
    ids = [await bus.publish("old", str(n)) for n in range(5)]
    events = await stream.wait_events(5)
    assert [(e.data, e.id) for e in events] == [(str(n), ids[n]) for n in range(5)]
    assert b"\r\n" not in stream.raw  # no chunk framing in the body
    stream.client.close()
    await eventually(lambda: app.hub.open_streams == 0)


async def test_idle_streams_get_heartbeats(bus: AsyncBus) -> None:
    app = make_app(bus, heartbeat=0.05)
    async with running(app) as server:
        stream = await EventStream.open(await server.connect(), "/events?channel=quiet")
        await stream.read_until(lambda: stream.raw.count(b": ping\n\n") >= 2)
        assert stream.events == []  # a comment is not an event
        stream.client.close()


async def test_a_client_that_leaves_is_forgotten_at_once(
    service: tuple[StreamApp, Running], bus: AsyncBus
) -> None:
    """The heartbeat is a minute: a stream whose client closes its socket is still finished
    (subscription released) right away, because the server sees the close. Also for a stream
    that a client opened with a second request pipelined behind it (the server stops reading
    while a request waits its turn, and must read again once the stream holds the
    connection)."""
    app, server = service
    streams = [await EventStream.open(await server.connect(), "/events?channel=bye")]
    pipelined = await server.connect()
    pipelined.send(
        b"GET /events?channel=bye HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert (await pipelined.head()).status == 200
    await eventually(lambda: app.hub.open_streams == 2)
    for client in [stream.client for stream in streams] + [pipelined]:
        client.close()
    await eventually(lambda: app.hub.open_streams == 0)
    assert app.hub.stats().channels == 0


async def test_an_expired_token_ends_the_stream_with_a_close_event(bus: AsyncBus) -> None:
    """A stream opened with a token that expires gets `event: close` with reason expired and
    a retry, then its end, and the server closes the connection."""
    tokens = StreamTokens("k" * 32)
    app = make_app(bus, authorize=authorizer(tokens), retry=1000, retry_jitter=0)
    async with running(app) as server:
        refused = await server.connect()
        refused.request("/events?channel=mine")
        assert (await refused.response()).status == 401
        token = tokens.issue("ann", subscribe=["mine"], lifetime=2)
        stream = await EventStream.open(
            await server.connect(), f"/events?channel=mine&token={token}"
        )
        published = await bus.publish("mine", "before expiry")
        events = await stream.until_end(timeout=5)
        assert [(e.event, e.data, e.id) for e in events[:-1]] == [
            (None, "before expiry", published)
        ]
        assert (events[-1].event, json.loads(events[-1].data)) == ("close", {"reason": "expired"})
        assert events[-1].retry == 1000
        assert app.hub.open_streams == 0


async def test_a_slow_consumer_is_dropped_and_a_reader_loses_nothing(bus: AsyncBus) -> None:
    """A client with a tiny receive window that never reads, and one that reads, on one
    channel; large events are published until the first is cut off. The reader gets every
    event, in order; the stalled one is cut off once and its connection dropped."""
    app = make_app(bus, queue_size=16, cutoff_grace=0.2)
    size = 32 * 1024
    async with running(app) as server:
        stalled = await EventStream.open(
            await server.connect(receive_buffer=4096), "/events?channel=big"
        )
        reader = await EventStream.open(await server.connect(), "/events?channel=big")
        reading = asyncio.create_task(
            reader.read_until(lambda: bool(reader.events) and reader.events[-1].data == "end", 30)
        )
        published = 0
        while app.hub.stats().cutoffs == 0 and published < 400:
            await bus.publish("big", f"{published:04}" + "x" * size)
            published += 1
            if published % 8 == 0:
                await asyncio.sleep(0)  # the reader reads while the stalled one does not
        assert app.hub.stats().cutoffs == 1, f"no cut-off after {published} events"
        tail = published
        while published < tail + 20:  # a few more after the cut-off: the reader gets these too
            await bus.publish("big", f"{published:04}" + "x" * size)
            published += 1
        await bus.publish("big", "end")
        await asyncio.wait_for(reading, 35)
        assert [e.data[:4] for e in reader.events] == [f"{n:04}" for n in range(published)] + [
            "end"
        ]
        await eventually(lambda: app.hub.open_streams == 1)  # the stalled one is dropped
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            while True:  # what reached its buffer, then the reset; never all of it
                await stalled._more(timeout=5)
        assert len(stalled.events) < published
        assert app.hub.stats().cutoffs == 1
        reader.client.close()


async def test_under_the_generic_adapter_a_stalled_client_is_dropped_too(
    bus: AsyncBus, caplog: pytest.LogCaptureFixture
) -> None:
    """fast_path=False: the stalled client's request task waits on a full socket; the cut-off
    cancels it, its connection is dropped, and the stream is finished, without an error."""
    app = make_app(bus, fast_path=False, queue_size=4, cutoff_grace=0.2)
    async with running(app) as server:
        stalled = await EventStream.open(
            await server.connect(receive_buffer=4096), "/events?channel=gstall"
        )
        published = 0
        while app.hub.stats().cutoffs == 0 and published < 400:
            await bus.publish("gstall", "x" * 32 * 1024)
            published += 1
        assert app.hub.stats().cutoffs == 1
        await eventually(lambda: app.hub.open_streams == 0)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            while True:
                await stalled._more(timeout=5)
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []


async def test_the_generic_adapter_streams_under_this_server_too(bus: AsyncBus) -> None:
    """create_app(fast_path=False): a task per stream waits on the queue; events arrive and a
    client that leaves is noticed through `http.disconnect`."""
    app = make_app(bus, fast_path=False)
    async with running(app) as server:
        stream = await EventStream.open(await server.connect(), "/events?channel=gen")
        [subscriber] = app.hub._subscribers
        assert subscriber._ready is None and subscriber._direct is None
        ids = [await bus.publish("gen", str(n)) for n in range(10)]
        events = await stream.wait_events(10)
        assert [(e.data, e.id) for e in events] == [(str(n), ids[n]) for n in range(10)]
        stream.client.close()
        await eventually(lambda: app.hub.open_streams == 0)
