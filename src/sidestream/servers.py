"""Server adapters: what a stream needs from the ASGI server, behind one small interface.

A long-lived stream needs three things the ASGI interface does not give it directly: noticing
that the client left (sending to a closed connection can succeed silently), dropping a connection
whose client stopped reading (its buffer would never drain), and, as an optimisation, writing an
event without waking the stream's task. [`connection`][sidestream.servers.connection] picks one
adapter per connection, once:

- **`uvicorn`**, when uvicorn's request cycle is behind `receive`: a gone client is its
  `disconnected` flag, checked at each heartbeat; an abort closes the TCP connection; the fast
  path writes an event straight to the connection when that would not wait, framed as an HTTP/1.1
  chunk once per event for all the streams it goes to (through uvicorn's `send` where the
  response is not chunked).
- **`streamserver`**, under [`sidestream.streamserver`][]: the server takes the stream over
  once its head is written (`hold`), and the request ends; no task stays behind an open stream.
- **`generic`**, under any other server, behind a middleware that wraps `receive`, or with
  `create_app(fast_path=False)`: a task waits for `http.disconnect`; an abort cancels the
  request; every event goes through the stream's queue.

The `uvicorn` adapter reads private attributes of uvicorn's request cycle; this module is the
only place that does. The process logs once which adapter serves its streams, so a uvicorn
upgrade or a middleware that switches the fast path off is seen, not silent (and
`tests/e2e/test_uvicorn_fast_path.py` fails when it does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from sidestream.subscriber import Subscriber

__all__ = ["HOLD", "Connection", "HeldConnection", "UvicornConnection", "connection", "http_chunk"]

log = logging.getLogger("sidestream.servers")

ABORTED: Final = "sidestream.aborted"
"""The scope key set on a request this app cancelled itself (the app then ends it quietly)."""

HOLD: Final = "sidestream.connection"
"""The scope key under which [`sidestream.streamserver`][] offers its connection to the app: an
object with `hold(subscriber, finish)`, `abort()` and `is_lost()`."""

_logged: set[tuple[str, str]] = set()  # (scope type, adapter): logged once per process

_last_framed: tuple[bytes, bytes] = (b"", b"")  # (body, its chunk): one event, many streams


def http_chunk(body: bytes) -> bytes:
    """`body` framed as one HTTP/1.1 chunk (RFC 9112, 7.1), as uvicorn frames it.

    A fan-out writes the same event to every stream in turn, so the last framing is kept and
    served again while the same bytes object comes back.
    """
    global _last_framed
    if not body:
        return b""  # an empty chunk would end the response; uvicorn writes nothing
    last = _last_framed
    if last[0] is body:
        return last[1]
    framed = b"%x\r\n%b\r\n" % (len(body), body)
    _last_framed = (body, framed)
    return framed


class Connection:
    """The generic adapter: works under any ASGI server.

    Attributes:
        adapter: `"generic"` (`"uvicorn"` for a
            [`UvicornConnection`][sidestream.servers.UvicornConnection]).
    """

    adapter = "generic"
    holds = False
    """True when the server can take the stream over (see `hold`)."""

    def __init__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.task = asyncio.current_task()

    def direct_writer(self, on_gone: Callable[[], None]) -> Callable[[bytes], bool] | None:
        """A function that writes a chunk at once and returns True, or does nothing and returns
        False (then the event takes the queue); `None`: no fast path here."""
        return None

    def gone_check(self) -> Callable[[], bool] | None:
        """A cheap "has the client left?" to ask at each heartbeat; `None`: use `watch`."""
        return None

    async def watch(self, on_gone: Callable[[], None]) -> None:
        """Wait for the client to go away (the server may not tell a writer), then call
        `on_gone`. Run as a task when `gone_check` is `None`."""
        while True:
            message = await self.receive()
            if message["type"] in ("http.disconnect", "websocket.disconnect"):
                on_gone()
                return

    def hold(self, sub: Subscriber, finish: Callable[[Subscriber], None]) -> None:
        """Hand the stream to the server once its head and first chunk are written; the request
        then ends, and the server calls `finish(sub)` when the stream does. Only where
        `holds`."""
        raise NotImplementedError(f"the {self.adapter} adapter cannot hold a stream")

    def abort(self) -> bool:
        """Drop the connection. Returns True when it did so by cancelling the request's task
        (the caller then cleans up what the task would have), False when the server closed the
        connection itself."""
        if self.task is None:
            return False
        self.scope[ABORTED] = True
        self.task.cancel()
        return True


class UvicornConnection(Connection):
    """The uvicorn adapter: its request cycle (the object behind `receive`) says whether the
    client left and whether writing would wait, and its transport can be aborted."""

    adapter = "uvicorn"

    def __init__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        super().__init__(scope, receive, send)
        self.cycle: Any = receive.__self__

    def direct_writer(self, on_gone: Callable[[], None]) -> Callable[[bytes], bool] | None:
        """Write an event without waking the stream's task.

        uvicorn writes a body chunk without awaiting anything unless the connection has paused
        writing (its buffer is full) or the client left. Then the event takes the usual way,
        through the queue. This saves a task wake-up and a pass through Falcon's stream loop per
        event per client. On a chunked response (HTTP/1.1, httptools) the event is framed once
        for every stream ([`http_chunk`][sidestream.servers.http_chunk]) and written to the
        transport, as uvicorn's `send` would write it; otherwise (h11, `HEAD`, a response with a
        length, or a middleware that wraps `send`, such as a compressor) it goes through `send`.
        The bytes on the wire are the same either way.
        """
        cycle, send = self.cycle, self.send
        flow: Any = getattr(cycle, "flow", None)
        if not (hasattr(flow, "write_paused") and hasattr(cycle, "disconnected")):
            return None  # a WebSocket, or a uvicorn whose cycle no longer looks like this
        transport: Any = getattr(cycle, "transport", None)
        framed = (  # httptools' cycle: frames chunks itself; h11's cycle does not say
            self.scope.get("method") != "HEAD"
            and getattr(send, "__self__", None) is cycle  # no middleware wraps `send`
            and hasattr(cycle, "chunked_encoding")
            and hasattr(transport, "write")
        )

        def write(chunk: bytes) -> bool:
            if cycle.disconnected:
                on_gone()  # the client left: end the stream now
                return False
            if flow.write_paused or cycle.response_complete:
                return False
            if framed and cycle.chunked_encoding is True:  # a chunked response under way
                last = _last_framed  # the fan-out's other streams: no call, no new bytes
                transport.write(last[1] if last[0] is chunk else http_chunk(chunk))
                return True
            step = send({"type": "http.response.body", "body": chunk, "more_body": True})
            try:
                step.send(None)
            except StopIteration:
                return True
            step.close()  # it wanted to wait after all: nothing was written, take the usual way
            return False

        return write

    def gone_check(self) -> Callable[[], bool] | None:
        cycle = self.cycle
        if not hasattr(cycle, "disconnected"):
            return None
        return lambda: bool(cycle.disconnected)

    def abort(self) -> bool:
        transport = getattr(self.cycle, "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            transport.abort()  # uvicorn: drop the TCP connection
            return False
        return super().abort()


class HeldConnection(Connection):
    """The streamserver adapter: [`sidestream.streamserver`][] holds the stream as a
    connection, so no task stays behind it; the server notices a gone client itself."""

    adapter = "streamserver"
    holds = True

    def __init__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        super().__init__(scope, receive, send)
        self.server_connection: Any = scope[HOLD]

    def gone_check(self) -> Callable[[], bool] | None:
        is_lost: Callable[[], bool] = self.server_connection.is_lost
        return is_lost

    def hold(self, sub: Subscriber, finish: Callable[[Subscriber], None]) -> None:
        server_connection = self.server_connection
        # What the stream keeps must not keep this request (its scope, its task) alive: the
        # route's abort closes over this adapter. (`sub.gone` is already `is_lost`.)
        sub.abort = server_connection.abort
        server_connection.hold(sub, finish)

    def abort(self) -> bool:
        self.server_connection.abort()
        return False


def connection(
    scope: MutableMapping[str, Any], receive: Any, send: Any, *, fast_path: bool = True
) -> Connection:
    """The adapter for this connection, chosen once: `uvicorn` when uvicorn's request cycle is
    behind `receive` and `fast_path` is on, else `generic`. Logs the first choice of each."""
    cycle = getattr(receive, "__self__", None)
    chosen: Connection
    if fast_path and HOLD in scope:
        chosen = HeldConnection(scope, receive, send)
    elif fast_path and hasattr(getattr(cycle, "transport", None), "abort"):
        chosen = UvicornConnection(scope, receive, send)
    else:
        chosen = Connection(scope, receive, send)
    why = "" if fast_path else " (fast_path=False)"
    kind = (str(scope.get("type")), chosen.adapter + why)
    if kind not in _logged:
        _logged.add(kind)
        log.info("%s connections are served by the %s adapter%s", kind[0], chosen.adapter, why)
    return chosen
