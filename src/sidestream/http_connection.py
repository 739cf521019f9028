"""One HTTP/1.1 connection of [`sidestream.streamserver`][]: requests in, through the ASGI app,
answers out, in order; and, once the app hands it an event stream, that stream's events.

[`HttpConnection`][sidestream.http_connection.HttpConnection] is an `asyncio.Protocol`. It
parses with httptools, runs the app for each request in turn (an
[`Exchange`][sidestream.http_connection.Exchange] is one request and its response, as `receive`
and `send`), and enforces the limits the server was given
([`Limits`][sidestream.http_connection.Limits]). Its `hold()` is the extension the
stream service's `streamserver` adapter ([`sidestream.servers`][]) calls: from then on the
subscriber writes to the connection directly, and no task stays behind the stream.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import httptools

from sidestream.servers import ABORTED, HOLD, http_chunk

if TYPE_CHECKING:
    from sidestream.subscriber import Subscriber

__all__ = ["ASGI", "Exchange", "HttpConnection", "Limits", "ServerState"]

log = logging.getLogger("sidestream.streamserver")  # one server, one log

ASGI: Final = {"version": "3.0", "spec_version": "2.4"}
_LAST_CHUNK: Final = b"0\r\n\r\n"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_LINGER: Final = 1.0  # seconds a refused client may go on sending before the close
_NO_BODY_STATUSES: Final = frozenset({204, 304})


class Limits(Protocol):
    """What a connection allows a client ([`ServerSettings`][sidestream.streamserver.ServerSettings]
    has these)."""

    @property
    def request_timeout(self) -> float: ...
    @property
    def keepalive_timeout(self) -> float: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...


class _Refused(Exception):
    """A request the server answers itself, with `status` and a JSON body naming the problem."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _error_response(status: int, description: str) -> bytes:
    phrase = http.HTTPStatus(status).phrase
    body = json.dumps({"title": f"{status} {phrase}", "description": description}).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode()),
            b"date: " + _date() + b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    """The `Date` header's value, made once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True).encode()
    value: bytes = _date_cache[1]
    return value


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, app: Any, settings: Limits, lifespan_state: dict[str, Any]) -> None:
        self.app = app
        self.settings = settings
        self.lifespan_state = lifespan_state
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # requests running (a client may have left)
        self.loop = asyncio.get_running_loop()
        self.shutting_down = False


class Exchange:
    """One request and its response, as the ASGI app sees them (`receive` and `send`)."""

    __slots__ = (
        "body",
        "body_sent",
        "chunked",
        "complete",
        "conn",
        "done",
        "head",
        "keep_alive",
        "scope",
        "started",
    )

    def __init__(
        self, conn: HttpConnection, scope: dict[str, Any], body: bytes, keep: bool
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.body = body
        self.body_sent = False
        self.head = scope["method"] == "HEAD"
        self.keep_alive = keep
        self.started = False
        self.complete = False
        self.chunked = False
        self.done: asyncio.Future[None] = conn.state.loop.create_future()

    async def receive(self) -> dict[str, Any]:
        if not self.body_sent:
            self.body_sent = True
            body, self.body = self.body, b""
            return {"type": "http.request", "body": body, "more_body": False}
        await self.done  # the response is complete or the client left
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        conn = self.conn
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            conn.write(self._head(message["status"], message.get("headers", ())))
        elif kind == "http.response.body":
            if not self.started or self.complete:
                raise RuntimeError("http.response.body outside a response")
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            if conn.held is not None:  # the stream lives on in the connection
                if not more:
                    self._complete()
                return
            if body and not self.head:
                conn.write(http_chunk(body) if self.chunked else body)
            if not more:
                if self.chunked:
                    conn.write(_LAST_CHUNK)
                self._complete()
            elif conn.paused:
                await conn.writable()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r}")

    def _head(self, status: int, headers: Any) -> bytes:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _phrase(status))]
        length = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length = True
            elif lower == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue  # the server says it, once
            elif lower == b"transfer-encoding":
                continue  # the server frames the body
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"date: " + _date() + b"\r\n")
        if not length and not self.head and status >= 200 and status not in _NO_BODY_STATUSES:
            if self.scope["http_version"] == "1.1":
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0: the end of the body is the close
        if not self.keep_alive or self.conn.state.shutting_down:
            self.keep_alive = False
            lines.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":  # it closes after the answer unless told
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _complete(self) -> None:
        self.complete = True
        if not self.done.done():
            self.done.set_result(None)

    def disconnect(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class HttpConnection(asyncio.Protocol):
    """One TCP connection: reads requests with httptools, runs the app for each in turn, and,
    once the app hands it a stream, writes that stream's events until it ends."""

    __slots__ = (
        "_body",
        "_body_bytes",
        "_continue",
        "_header_bytes",
        "_headers",
        "_in_request",
        "_in_trailers",
        "_next_when_writable",
        "_quiet_bytes",
        "_refused",
        "_url",
        "_writable",
        "chunked",
        "ended",
        "exchange",
        "finish",
        "held",
        "lost",
        "parser",
        "paused",
        "pending",
        "state",
        "task",
        "timer",
        "transport",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpRequestParser(self)
        self.timer: asyncio.TimerHandle | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._refused: _Refused | None = None  # a request this connection answers last
        self._in_request = False  # a request has begun and not yet fully arrived
        self._in_trailers = False  # its head is complete: header fields now are trailers
        self._quiet_bytes = 0  # bytes read since the parser last reported anything
        self._continue = False  # a `100 Continue` owed once the request before is answered
        self._next_when_writable = False  # the next request waits for the client to read
        # Requests read while another is answered (pipelining; reading pauses after one). A
        # list, not a deque: an empty deque is 600 bytes more, and a held stream keeps this.
        self.pending: list[tuple[dict[str, Any], bytes, bool]] = []
        self.exchange: Exchange | None = None
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self._writable: asyncio.Future[None] | None = None
        self.held: Subscriber | None = None
        self.finish: Callable[[Subscriber], None] | None = None
        self.chunked = False
        self.ended = False
        self.lost = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's: not a subclass
        self.state.connections.add(self)
        self._arm(self.state.settings.request_timeout)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return  # a held stream, or a connection that is closing: nothing more is read
        progress = (self._header_bytes, self._body_bytes, len(self.pending))
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.parser = None  # what follows is another protocol: answer, then close
            return
        except httptools.HttpParserCallbackError as exc:
            if self._refused is None:  # not a refusal: a fault of this server, not the client's
                log.error("failed on a request", exc_info=exc.__context__ or exc)
                self._refused = _Refused(500, "the server failed to read this request")
            self._refuse(self._refused)
            return
        except httptools.HttpParserError as exc:
            refused = self._refused or _Refused(400, f"malformed HTTP request: {exc}")
            self._refuse(refused)
            return
        if progress != (self._header_bytes, self._body_bytes, len(self.pending)):
            self._quiet_bytes = 0
            return
        # Nothing came of `data`. httptools keeps a header (or trailer) field in its own
        # buffer until its line ends, so on_header cannot count an endless one: count here.
        self._quiet_bytes += len(data)
        if self._quiet_bytes > self.state.settings.max_header_bytes:
            self._refuse(_Refused(431, "the request line and headers are too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.parser = None
        self.state.connections.discard(self)
        self._disarm()
        if self.exchange is not None:
            self.exchange.disconnect()
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)
        if self.held is not None and not self.ended:
            self._gone(self.held)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        writable = self._writable
        if writable is not None:
            self._writable = None
            if not writable.done():
                writable.set_result(None)
        if self._next_when_writable:
            self._next_when_writable = False
            self._next_request()
        if self.held is not None:
            self.ready()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0
        self._in_request = True
        self._in_trailers = False
        self._continue = False
        if self.exchange is None and not self.pending:
            self._arm(self.state.settings.request_timeout)  # was the keep-alive wait

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        if not self._in_trailers:  # trailers are dropped: never taken for headers
            self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        headers = self._headers
        if self.parser.should_upgrade() and (b"upgrade", b"websocket") in (
            (n, v.lower()) for n, v in headers
        ):
            self._refuse_in_parser(
                501, "this server does not serve WebSockets: serve them under uvicorn"
            )
        length = next((v for n, v in headers if n == b"content-length"), None)
        limit = self.state.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            self._refuse_in_parser(413, "the request body is larger than this server takes")
        if self.parser.get_http_version() == "1.1" and any(
            n == b"expect" and v.lower() == b"100-continue" for n, v in headers
        ):
            if self.exchange is None:
                self.write(_CONTINUE)
            else:  # not in the middle of the answer to the request before: after it
                self._continue = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.state.settings.max_body_bytes:
            self._refuse_in_parser(413, "the request body is larger than this server takes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        scope = self._scope(parser)
        self._in_request = False
        # After an upgrade request comes another protocol: answer it, then close.
        keep = parser.should_keep_alive() and not parser.should_upgrade()
        self.pending.append((scope, b"".join(self._body), keep))
        self._body = []
        if self.exchange is None:
            self._disarm()
            self._run_next()
        elif self.transport is not None:
            self.transport.pause_reading()  # one request ahead is enough (pipelining)

    # -- requests ------------------------------------------------------------------------------

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.state.settings.max_header_bytes:
            self._refuse_in_parser(431, "the request line and headers are too large")

    def _refuse_in_parser(self, status: int, description: str) -> None:
        self._refused = _Refused(status, description)
        raise self._refused  # httptools stops parsing; data_received answers

    def _scope(self, parser: Any) -> dict[str, Any]:
        try:
            url = httptools.parse_url(self._url)
            raw_path: bytes = url.path or b"/"
            path = raw_path.decode("ascii")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            self._refuse_in_parser(400, "the request target is not a valid URL")
        if "%" in path:
            path = urllib.parse.unquote(path)
        transport = self.transport
        assert transport is not None
        return {
            "type": "http",
            "asgi": ASGI,
            "http_version": parser.get_http_version(),
            "server": _address(transport.get_extra_info("sockname")),
            "client": _address(transport.get_extra_info("peername")),
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
            "extensions": {},
            "state": dict(self.state.lifespan_state),
            HOLD: self,
        }

    def _run_next(self) -> None:
        if self.lost or not self.pending:
            return
        scope, body, keep = self.pending.pop(0)
        exchange = self.exchange = Exchange(self, scope, body, keep and self.parser is not None)
        task = self.task = self.state.loop.create_task(self._serve(exchange))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _serve(self, exchange: Exchange) -> None:
        scope = exchange.scope
        failed = False
        try:
            await self.state.app(scope, exchange.receive, exchange.send)
        except Exception:
            log.exception("the app failed on %s %s", scope["method"], scope["path"])
            failed = True
        except asyncio.CancelledError:
            self.abort()
            raise
        finally:
            self.task = None
            self.exchange = None
            exchange.disconnect()
        if not exchange.started:
            if not failed:
                log.error("the app returned without a response to %s", scope["path"])
            self._refuse(_Refused(500, "the server failed to answer this request"))
        elif not exchange.complete:
            # Unless the client left, or the app dropped it on purpose (a stalled stream,
            # under the generic adapter, whose request it cancelled).
            if not (failed or self.lost or scope.get(ABORTED)):
                log.error("the app returned before its response to %s ended", scope["path"])
            self.abort()  # the body cannot be completed
        elif self.held is not None:
            pass  # the connection now belongs to the stream
        elif not exchange.keep_alive or self.state.shutting_down:
            self.close()
        else:
            self._next_request()

    def _next_request(self) -> None:
        """After a whole answer on a keep-alive connection: the next pipelined request, the
        refusal owed, or reading again. While the client is not taking its answers, this
        waits for `resume_writing`: a client that pipelines requests and reads nothing would
        otherwise have every answer buffered, and more with each read."""
        transport = self.transport
        if self.lost or transport is None:
            return
        if self.paused:
            self._next_when_writable = True
            transport.pause_reading()
            self._arm(self.state.settings.request_timeout)  # to take its answers
        elif self.pending:
            self._run_next()
        elif self._refused is not None:  # a later request was refused while this one ran
            self._refuse(self._refused)
        else:
            if self._continue:
                self._continue = False
                self.write(_CONTINUE)
            transport.resume_reading()
            settings = self.state.settings
            self._arm(settings.request_timeout if self._in_request else settings.keepalive_timeout)

    def _refuse(self, refused: _Refused) -> None:
        """Answer `refused` and close; after the requests before it, if they are still being
        answered (pipelining: responses go out in request order)."""
        self.parser = None
        if self.exchange is not None:
            self._refused = refused  # _serve answers it when its turn comes
            return
        self.pending.clear()
        self.write(_error_response(refused.status, refused.description))
        self._linger()

    def _linger(self) -> None:
        """Close without losing the answer just written. The client may still be sending its
        request (a body over the limit): what arrives after a close makes the kernel send a
        reset, which can destroy the answer before the client reads it. So the answer and a
        FIN go now; what still comes is dropped; the connection closes when the client
        closes its side, or after `_LINGER` seconds."""
        transport = self.transport
        if transport is None or self.lost:
            return
        if not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        transport.resume_reading()
        self._disarm()
        self.timer = self.state.loop.call_later(_LINGER, self.close)

    def _arm(self, delay: float) -> None:
        self._disarm()
        self.timer = self.state.loop.call_later(delay, self._timed_out)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            self.abort()  # it does not read its answers: a close would wait for them forever
        elif self._in_request:  # partway through a request
            self._refuse(_Refused(408, "the request did not arrive in time"))
        else:
            self.close()  # idle: a new or keep-alive connection that sent nothing

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    async def writable(self) -> None:
        """Wait until the transport takes writes again (or the connection is gone)."""
        if self.paused and not self.lost:
            if self._writable is None:
                self._writable = self.state.loop.create_future()
            await self._writable

    def close(self) -> None:
        self.parser = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection (a client that stopped reading, a body that cannot end)."""
        self.parser = None
        if self.transport is not None:
            self.transport.abort()

    # -- a held stream (the connection extension; see sidestream.servers) -----------------------

    def hold(self, sub: Subscriber, finish: Callable[[Subscriber], None]) -> None:
        """Take over the stream `sub`: its response's head and first chunk are written, and
        the request that opened it is about to end. `finish` is called once when it ends."""
        exchange = self.exchange
        if exchange is None or not exchange.started or exchange.complete or exchange.head:
            raise RuntimeError("hold() needs a started streaming response")
        self.held, self.finish = sub, finish
        self.parser = None  # no request follows a stream on this connection
        self._headers, self._url = [], b""
        self.pending.clear()
        if self.lost:
            self._gone(sub)
            return
        self.chunked = exchange.chunked
        # A request pipelined behind this one paused reading; read again (what comes is
        # dropped), or a client that leaves would not be noticed until a write failed.
        assert self.transport is not None
        self.transport.resume_reading()
        sub.write_directly(self.write_event)
        sub.listen(self.ready)

    def write_event(self, chunk: bytes) -> bool:
        """The held stream's direct path: write an event now, or return False when the
        connection is not taking writes (then it is queued until it does)."""
        if self.paused:
            return False
        self.transport.write(http_chunk(chunk) if self.chunked else chunk)  # type: ignore[union-attr]
        return True

    def ready(self) -> None:
        """Write what the held stream has: called by its subscriber, and when writable again."""
        sub = self.held
        if sub is None or self.paused or self.ended:
            return
        while (chunk := sub.take()) is not None:
            if not chunk:  # the stream is over
                self.ended = True
                if self.chunked:
                    self.write(_LAST_CHUNK)
                self.close()
                self._finish(sub)
                return
            self.write(http_chunk(chunk) if self.chunked else chunk)
            if self.paused:
                return

    def is_lost(self) -> bool:
        """True once the client has gone."""
        return self.lost

    def _gone(self, sub: Subscriber) -> None:
        """The held stream's client left: close its subscriber and finish it."""
        self.ended = True
        sub.close(drop_queue=True, reason="gone")
        self._finish(sub)

    def _finish(self, sub: Subscriber) -> None:
        finish, self.finish = self.finish, None
        if finish is not None:
            finish(sub)


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None
