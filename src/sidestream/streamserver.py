"""A small HTTP/1.1 server for the stream service: each open stream is held as a connection,
not as a task.

Under an ASGI server such as uvicorn, every open event stream keeps a request running: a task,
its coroutines, the framework's request and response, the server's request cycle. That is most
of what an idle stream costs. This server runs the same ASGI app (every route, middleware and
error of [`create_app`][sidestream.service.create_app] works as under uvicorn), and offers it
one extension: once a stream's headers and first chunk are written, the app hands the
[`Subscriber`][sidestream.hub.Subscriber] to the connection and its request ends. From then on
the hub writes events to the socket through the connection (see
[`Subscriber.listen`][sidestream.hub.Subscriber.listen]); what stays per stream is the socket,
this module's small connection object and the subscriber.

HTTP parsing is httptools' (llhttp, the parser uvicorn and Node.js use). The server enforces
what uvicorn leaves to a proxy: a whole request must arrive within `request_timeout`, headers
are capped at `max_header_bytes` (431) and bodies at `max_body_bytes` (413). It serves HTTP/1.1
and 1.0 with keep-alive and pipelining, no WebSockets (a WebSocket route stays on uvicorn) and
no TLS (terminate it in front, as for uvicorn). On SIGTERM or SIGINT it stops accepting, lets the
app drain its streams (each gets its final `retry:`), and exits.

Run it as `python -m sidestream.streamserver sidestream.service:app --port 8000`, or call
[`serve`][sidestream.streamserver.serve].
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidestream.http_connection import ASGI, HttpConnection, ServerState

__all__ = ["ServerSettings", "main", "serve"]

log = logging.getLogger("sidestream.streamserver")


@dataclass(frozen=True)
class ServerSettings:
    """How the server listens and what it allows a client.

    Attributes:
        host: Address to listen on.
        port: Port to listen on (0: any free port; `serve` reports the one it got).
        backlog: Connections the kernel queues before `accept`.
        reuse_port: Set `SO_REUSEPORT`, so that several processes share the port.
        request_timeout: Seconds a client has to send a whole request (line, headers, body)
            once it starts one, and a new connection to start one; then 408 or a close.
        keepalive_timeout: Seconds an idle keep-alive connection is kept.
        max_header_bytes: Largest request line plus headers (and trailers); more gets 431.
        max_body_bytes: Largest request body; more gets 413.
        shutdown_timeout: Seconds requests still running at shutdown (after the app's drain)
            get before their connections are dropped and they are cancelled.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    backlog: int = 2048
    reuse_port: bool = False
    request_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_header_bytes: int = 16384
    max_body_bytes: int = 1 << 20
    shutdown_timeout: float = 5.0


class _Lifespan:
    """The app's ASGI lifespan: startup before the first connection, shutdown after the last."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except Exception:
            if self.supported:
                log.info("the app does not run ASGI lifespan events", exc_info=True)
            self.supported = False
        finally:
            await self._outbox.put({"type": "lifespan.ended"})

    async def _step(self, name: str) -> None:
        await self._inbox.put({"type": f"lifespan.{name}"})
        reply = await self._outbox.get()
        if reply["type"] == f"lifespan.{name}.failed":
            raise RuntimeError(f"the app's lifespan {name} failed: {reply.get('message', '')}")
        if reply["type"] == "lifespan.ended" and name == "startup" and not self.supported:
            return
        if reply["type"] not in (f"lifespan.{name}.complete", "lifespan.ended"):
            raise RuntimeError(f"unexpected lifespan message {reply['type']!r}")

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._step("startup")

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._step("shutdown")
        await self._task


async def serve(
    app: Any,
    settings: ServerSettings = ServerSettings(),
    *,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve `app` until `stop` is set (or SIGTERM/SIGINT in the main thread), then shut down.

    Shutdown: stop accepting, run the app's lifespan shutdown (the stream service drains its
    streams there), close idle connections, give running requests `shutdown_timeout` seconds,
    then drop their connections and cancel them; serve() returns once they have ended.

    Args:
        app: An ASGI app, such as [`create_app`][sidestream.service.create_app]'s.
        settings: Where to listen and the limits.
        stop: Set it to shut the server down.
        on_listening: Called with the port once the server accepts connections.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()

    def on_signal() -> None:
        loop.call_soon_threadsafe(stop.set)

    restore = _on_signals(on_signal)
    try:
        lifespan = _Lifespan(app)
        await lifespan.startup()
        state = ServerState(app, settings, lifespan.state)
        try:
            server = await loop.create_server(
                lambda: HttpConnection(state),
                settings.host,
                settings.port,
                backlog=settings.backlog,
                reuse_address=True,
                reuse_port=settings.reuse_port or None,
            )
        except OSError:  # the port is taken, say: leave nothing the app started running
            await lifespan.shutdown()
            raise
        port = int(server.sockets[0].getsockname()[1])
        log.info("serving on http://%s:%d", settings.host, port)
        try:
            if on_listening is not None:
                on_listening(port)
            await stop.wait()
            log.info("shutting down: draining streams")
        finally:  # also when serve() itself is cancelled: nothing it started stays running
            server.close()
            state.shutting_down = True
            await lifespan.shutdown()
            await _close_connections(state, settings.shutdown_timeout)
            await server.wait_closed()
    finally:
        restore()


async def _close_connections(state: ServerState, timeout: float) -> None:
    for conn in list(state.connections):
        if conn.exchange is None and conn.held is None:
            conn.close()  # idle keep-alive: nothing to wait for
    deadline = state.loop.time() + timeout
    while (state.connections or state.tasks) and state.loop.time() < deadline:
        await asyncio.sleep(0.02)
    for conn in list(state.connections):
        conn.abort()
    # Requests still running are cancelled: none goes on after serve() returned (and after
    # the app's lifespan shutdown, whose resources it may use).
    tasks = list(state.tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    if state.connections:
        await asyncio.sleep(0)


def _on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """Call `stop` on SIGTERM and SIGINT (main thread only); returns what restores the old
    handlers. Installed before the app's lifespan, so the stream service's own handler (which
    starts its drain at once) chains to this one."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda number, frame: stop())

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"expected module:attribute, like sidestream.service:app; got {target!r}")
    app = importlib.import_module(module_name)
    for part in attr.split("."):
        app = getattr(app, part)
    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m sidestream.streamserver module:app [options]`."""
    defaults = ServerSettings()
    parser = argparse.ArgumentParser(
        prog="python -m sidestream.streamserver", description=__doc__.split("\n")[0]
    )
    parser.add_argument("app", help="the ASGI app, as module:attribute")
    parser.add_argument("--app-dir", default=".", help="where to import the app from")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--backlog", type=int, default=defaults.backlog)
    parser.add_argument("--reuse-port", action="store_true", help="share the port (SO_REUSEPORT)")
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout)
    parser.add_argument("--keepalive-timeout", type=float, default=defaults.keepalive_timeout)
    parser.add_argument("--max-header-bytes", type=int, default=defaults.max_header_bytes)
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--shutdown-timeout", type=float, default=defaults.shutdown_timeout)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.path.insert(0, args.app_dir)
    app = _load(args.app)
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        backlog=args.backlog,
        reuse_port=args.reuse_port,
        request_timeout=args.request_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_header_bytes=args.max_header_bytes,
        max_body_bytes=args.max_body_bytes,
        shutdown_timeout=args.shutdown_timeout,
    )
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(app, settings))


if __name__ == "__main__":
    main()
