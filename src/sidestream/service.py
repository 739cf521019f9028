"""The stream service: a Falcon ASGI app that serves Server-Sent Events from the bus.

[`create_app`][sidestream.service.create_app] returns a
[`StreamApp`][sidestream.service.StreamApp] (a `falcon.asgi.App`) with three routes:

| Route | What it answers |
| --- | --- |
| `GET /events?channel=a&channel=b` | a `text/event-stream` of those channels |
| `GET /healthz` | `{"status": "ok", "backend": "redis", ...}`; 503 whenever it cannot deliver |
| `GET /metrics` | Prometheus text: streams, channels, deliveries, cut-offs, reconnects, skips |

The module-level `app` is configured from `REDIS_URL` and `SIDESTREAM_TOKEN_KEY` (its streams are
authorized by [stream tokens][sidestream.tokens.authorizer]), for
`uvicorn sidestream.service:app`.

A stream starts with a `retry:` hint (with jitter, so that a restart does not bring every client
back in the same second) and the `id:` of the client's position; then come the events. A client
that reconnects with `Last-Event-ID` (or `?last_event_id=`, for a first connection that must
resume) gets exactly the events it missed, then the live ones. Heartbeat comments keep proxies
from closing an idle stream. Every request is authorized before a byte of the stream is sent;
bad input gets a 4xx JSON body naming the problem. On shutdown every stream gets a final `retry:`
and is closed, so that uvicorn exits and the clients resume on another instance.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import falcon
import falcon.asgi

from sidestream.access import Authorizer, is_allow_everyone
from sidestream.admission import CURSOR_HEADER, CURSOR_PARAM, Admission, Refusal
from sidestream.bus import AsyncBus, backend, connect_async
from sidestream.errors import (
    InvalidArgument,
    InvalidConfig,
    InvalidTokenConfig,
)
from sidestream.hub import Hub, HubStats, Subscriber, close_event
from sidestream.servers import ABORTED, Connection, connection
from sidestream.settings import ServiceSettings
from sidestream.websocket import PublishHook, Sockets, refuse

if TYPE_CHECKING:
    from sidestream.mercure_hub import MercureSettings

__all__ = ["CURSOR_PARAM", "StreamApp", "create_app"]

log = logging.getLogger("sidestream.service")


_STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once, do not buffer the response
}


class StreamApp(falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]):
    """The app [`create_app`][sidestream.service.create_app] returns: a `falcon.asgi.App` that
    also knows its hub and how to drain.

    Attributes:
        hub: The [`Hub`][sidestream.hub.Hub] that feeds every stream of this process.
    """

    hub: Hub
    settings: ServiceSettings
    sockets: Sockets | None
    drain_timeout: float
    fast_path: bool
    _retry: tuple[int, int]

    async def __call__(  # type: ignore[override]
        self, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        # A stream needs its ASGI `receive` (to notice a disconnect, and to drop a connection
        # whose client stopped reading), and a request this app cancelled itself ends quietly.
        if scope["type"] != "lifespan":
            scope["sidestream.receive"] = receive
            scope["sidestream.send"] = send
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if scope.get(ABORTED) and task is not None:
                task.uncancel()
                return
            raise

    def final_event(self) -> bytes:
        """What a draining stream gets last: `event: close` with a jittered `retry:`."""
        base, jitter = self._retry
        return close_event("shutdown", retry=_jittered(base, jitter))

    def begin_drain(self) -> None:
        """Start closing every stream (a final `retry:` each) and refuse new ones with 503."""
        if not self.hub.draining:
            log.info("draining %d open streams", self.hub.open_streams)
        self.hub.begin_drain(self.final_event)

    async def drain(self, timeout: float | None = None) -> int:
        """Close every stream and wait up to `timeout` (default: the app's `drain_timeout`).

        Returns:
            How many streams were still open when the wait ended.
        """
        wait = self.drain_timeout if timeout is None else timeout
        return await self.hub.drain(self.final_event, wait)


def _jittered(base: int, jitter: int) -> int:
    return base + random.randint(0, jitter) if jitter else base


async def _refused(
    req: falcon.asgi.Request, resp: Any, ex: Refusal, params: Any, ws: Any = None
) -> None:
    """How each transport answers a [`Refusal`][sidestream.admission.Refusal]: a WebSocket
    handshake as `sidestream.websocket.refuse` says; an HTTP route with its status, its headers,
    and `{"title", "description"}` as JSON (like any other Falcon error here)."""
    if ws is not None:
        await refuse(req, resp, ex, params, ws)
        return
    raise falcon.HTTPError(
        falcon.code_to_http_status(ex.status),
        title=ex.title,
        description=ex.reason,
        headers=list(ex.headers),
    )


class _Streams:
    """`GET /events`: one event stream per request."""

    def __init__(self, app: StreamApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        admission = self.admission
        channels = admission.channels(req.get_param_as_list("channel") or [])
        cursor = admission.cursor(
            req.get_header(CURSOR_HEADER), req.get_param(CURSOR_PARAM), channels
        )
        grant, sub = await admission.admit(req, channels, cursor)
        hub = self.app.hub

        scope = req.scope
        loop = asyncio.get_running_loop()
        conn = connection(
            scope,
            scope["sidestream.receive"],
            scope["sidestream.send"],
            fast_path=self.app.fast_path,
        )
        gone = functools.partial(sub.close, drop_queue=True)
        direct = conn.direct_writer(gone)
        watcher: asyncio.Task[None] | None = None
        sub.gone = conn.gone_check()
        if sub.gone is None:
            watcher = loop.create_task(conn.watch(gone))

        def abort() -> None:
            # A client that stopped reading: drop its connection (its buffer would never drain).
            if conn.abort():  # the request was cancelled: end what it would have ended
                hub.finish(sub)
                if watcher is not None:
                    watcher.cancel()

        sub.abort = abort
        if grant.expires_at is not None:
            when = loop.time() + (grant.expires_at - time.time())
            hub.expire_at(sub, when, close_event("expired", retry=_jittered(*self.app._retry)))

        resp.content_type = "text/event-stream"
        resp.set_headers(_STREAM_HEADERS)
        first = f"retry: {_jittered(*self.app._retry)}\n".encode() + sub.preamble
        sub.preamble = b""  # a replay can be large: keep it only until it is sent
        if conn.holds:  # the server keeps the stream as a connection: the request ends
            resp.stream = _hand_over(conn, hub, sub, first)
        else:
            resp.stream = _stream(hub, sub, first, watcher, direct)


async def _hand_over(
    conn: Connection, hub: Hub, sub: Subscriber, first: bytes
) -> AsyncIterator[bytes]:
    held = False
    try:
        yield first
        conn.hold(sub, hub.finish)
        held = True
    finally:
        if not held:
            hub.finish(sub)


async def _stream(
    hub: Hub,
    sub: Subscriber,
    first: bytes,
    watcher: asyncio.Task[None] | None,
    direct: Callable[[bytes], bool] | None,
) -> AsyncIterator[bytes]:
    try:
        yield first
        del first
        # The headers and the first chunk are sent: from now on the hub may write directly.
        sub.write_directly(direct)
        next_chunk = sub.next_chunk
        while chunk := await next_chunk():
            yield chunk
    finally:
        if watcher is not None:
            watcher.cancel()
        hub.finish(sub)


class _Health:
    def __init__(self, app: StreamApp) -> None:
        self.app = app

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        # 503 whenever this process cannot deliver: draining, Redis unreachable, or no reader.
        # A load balancer reads the status, not the body.
        stats = self.app.hub.stats()
        draining = self.app.hub.draining
        status = "draining" if draining else "ok" if stats.can_deliver else "unavailable"
        resp.media = {
            "status": status,
            "backend": backend(self.app.hub.bus.redis),
            "redis": "up" if stats.connected else "down",
            "open_streams": stats.open_streams,
        }
        resp.cache_control = ["no-store"]
        if status != "ok":
            resp.status = falcon.HTTP_503


class _Metric(NamedTuple):
    name: str
    kind: str
    help: str
    read: Callable[[HubStats, Sockets | None], int]


# The one table of /metrics: name, type, help text and where the value comes from.
_METRICS: tuple[_Metric, ...] = (
    _Metric("open_streams", "gauge", "Event streams open in this process.",
            lambda s, w: s.open_streams),
    _Metric("subscribed_channels", "gauge", "Channels this process is subscribed to in Redis.",
            lambda s, w: s.channels),
    _Metric("events_delivered_total", "counter",
            "Events handed to streams (one per event per stream).", lambda s, w: s.delivered),
    _Metric("slow_consumer_cutoffs_total", "counter",
            "Streams cut off because their queue filled.", lambda s, w: s.cutoffs),
    _Metric("redis_reconnects_total", "counter",
            "Times the Redis pub/sub connection was reopened.", lambda s, w: s.reconnects),
    _Metric("replayed_events_total", "counter",
            "Events replayed from Streams after a reconnect.", lambda s, w: s.replayed),
    _Metric("redis_connected", "gauge", "1 while the Redis pub/sub connection is up.",
            lambda s, w: int(s.connected)),
    _Metric("poison_messages_total", "counter",
            "Live messages skipped: not in the bus's format.", lambda s, w: s.poison_messages),
    _Metric("invalid_stream_entries_total", "counter",
            "Stream entries skipped: not in the bus's format.", lambda s, w: s.invalid_entries),
    _Metric("reader_restarts_total", "counter",
            "Times the Redis reader failed and was started again.",
            lambda s, w: s.reader_restarts),
)  # fmt: skip
# Only with a WebSocket route (`w`, the route's counters, is then set).
_WEBSOCKET_METRICS: tuple[_Metric, ...] = (
    _Metric("open_websockets", "gauge", "WebSockets open in this process (also in open_streams).",
            lambda s, w: w.open if w else 0),
    _Metric("websocket_messages_published_total", "counter", "Client messages published.",
            lambda s, w: w.published if w else 0),
    _Metric("websocket_messages_refused_total", "counter", "Client messages refused or oversize.",
            lambda s, w: w.refused if w else 0),
)  # fmt: skip


class _Metrics:
    def __init__(self, app: StreamApp) -> None:
        self.app = app

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        stats, sockets = self.app.hub.stats(), self.app.sockets
        metrics = _METRICS + (_WEBSOCKET_METRICS if sockets is not None else ())
        lines = []
        for metric in metrics:
            name = f"sidestream_{metric.name}"
            lines += [
                f"# HELP {name} {metric.help}",
                f"# TYPE {name} {metric.kind}",
                f"{name} {metric.read(stats, sockets)}",
            ]
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.cache_control = ["no-store"]
        resp.text = "\n".join(lines) + "\n"


def _json_errors(req: falcon.asgi.Request, resp: falcon.asgi.Response, exc: Any) -> None:
    """Every refusal is JSON, whatever the `Accept` header: an `EventSource` sends
    `Accept: text/event-stream`, and Falcon's default would then send no body at all."""
    resp.data = exc.to_json()
    resp.content_type = falcon.MEDIA_JSON


class _Vary:
    """Adds `Vary: Origin`: the CORS headers depend on it, so caches must not mix them up."""

    async def process_response(
        self, req: Any, resp: falcon.asgi.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.append_header("Vary", "Origin")


class _Lifespan:
    """Starts the hub; on shutdown (or on the signal that starts it) drains every stream."""

    def __init__(self, app: StreamApp, drain_on_signal: bool, open_reads: bool) -> None:
        self.app = app
        self.drain_on_signal = drain_on_signal
        self.open_reads = open_reads

    async def process_startup(self, scope: Any, event: Any) -> None:
        if self.open_reads:
            log.warning(
                "authorize=allow_everyone: every client may read every channel of this service "
                "(no publishing); pass an authorizer such as sidestream.tokens.authorizer(...) "
                "unless every channel is public"
            )
        await self.app.hub.start()
        if self.drain_on_signal:
            _drain_on_signals(asyncio.get_running_loop(), self.app.begin_drain)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        left = await self.app.drain()
        if left:
            log.warning("%d streams still open after the drain timeout", left)
        await self.app.hub.aclose()


def _drain_on_signals(loop: asyncio.AbstractEventLoop, begin_drain: Callable[[], None]) -> None:
    """Start draining as soon as SIGTERM/SIGINT arrive, before the server's own handler runs.

    uvicorn sends the ASGI lifespan shutdown only *after* every connection has closed, and an
    event stream never closes by itself: without this, uvicorn would wait out
    `--timeout-graceful-shutdown` and then cancel the streams without a last `retry:`. The
    server's handler (which the chained one calls) is restored when the server exits.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers live in the main thread; a server in a thread has none
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue  # no server handler to chain to: leave the default behaviour alone

        def handler(number: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(begin_drain)
            previous(number, frame)

        signal.signal(signum, handler)


def create_app(
    bus: AsyncBus | None = None,
    *,
    hub: Hub | None = None,
    authorize: Authorizer,
    cors_origins: Iterable[str] = (),
    cors_credentials: bool = True,
    heartbeat: float = 15.0,
    max_streams: int = 5000,
    max_channels: int = 16,
    queue_size: int = 256,
    retry: int = 3000,
    retry_jitter: int = 2000,
    retry_after: int = 5,
    drain_timeout: float = 5.0,
    drain_on_signal: bool = True,
    path: str = "/events",
    websocket_path: str | None = "/ws",
    max_message_bytes: int = 65536,
    on_publish: PublishHook | None = None,
    publish_timeout: float = 5.0,
    publish_concurrency: int = 8,
    fast_path: bool = True,
    mercure: MercureSettings | None = None,
) -> StreamApp:
    """The stream service as a Falcon ASGI app.

    Args:
        bus: The bus to read; default: an [`AsyncBus`][sidestream.bus.AsyncBus] on `REDIS_URL`
            (`memory://`: the embedded fakeredis; unset: `InvalidConfig`).
        hub: A ready-made [`Hub`][sidestream.hub.Hub] (then `bus`, `heartbeat` and
            `queue_size` are its own: passing different ones raises).
        authorize: Called with the request and the channels before a stream opens; raises
            [`Unauthorized`][sidestream.errors.Unauthorized] (401) or
            [`Forbidden`][sidestream.errors.Forbidden] (403). Its `Grant.expires_at` closes
            the stream at that time. Required: reads are closed until you name one, such as
            [`sidestream.tokens.authorizer`][sidestream.tokens.authorizer]; public channels say
            [`allow_everyone`][sidestream.access.allow_everyone] (logged as a warning once at
            startup).
        cors_origins: Origins (`https://app.example.com`) whose pages may open streams. Never
            `*`: a browser sends no cookies to a wildcard, and the list is the point.
        cors_credentials: Send `Access-Control-Allow-Credentials: true` to those origins (needed
            for `new EventSource(url, {withCredentials: true})`, i.e. cookies).
        heartbeat: Seconds between heartbeat comments on an idle stream.
        max_streams: Streams this process holds at most; more get 503 with `Retry-After`. Keep it
            below the process's file descriptor limit (`ulimit -n`).
        max_channels: Channels one stream may ask for.
        queue_size: Events a stream may have queued before it is cut off as too slow.
        retry: The reconnection delay (ms) the stream tells the client...
        retry_jitter: ...plus a random 0 to this many ms, different for each stream.
        retry_after: Seconds in the `Retry-After` of a 503.
        drain_timeout: Seconds streams get to finish on shutdown before they are dropped.
        drain_on_signal: Start draining on SIGTERM/SIGINT (see `_drain_on_signals`).
        path: Where the stream route lives.
        websocket_path: Where the WebSocket route lives ([`sidestream.websocket`][]), or `None`
            for no WebSocket route. Same channels, authorizer, limits and drain as `path`.
        max_message_bytes: Largest client message (a text frame, UTF-8); a larger one closes
            the socket with 1009.
        on_publish: Sees each client message a grant allows before it is published; may
            change it (stamp the sender) or refuse it
            ([`PublishHook`][sidestream.websocket.PublishHook]).
        publish_timeout: Seconds a client message may take to reach Redis before the client
            gets an `unavailable` error frame.
        publish_concurrency: Client messages published at once, process-wide (each holds a
            pooled Redis connection); more wait their turn.
        fast_path: Under uvicorn, hand events straight to its `send` and drop stalled
            connections at the TCP level ([`sidestream.servers`][]); `False` serves every
            connection through the generic adapter. Which one serves is logged once.
        mercure: Serve a Mercure hub (draft-08) at its `hub_url`'s path, on the same hub and
            Redis ([`sidestream.mercure_hub`][]); `None`, the default, for none.

    Raises:
        InvalidArgument: a setting is out of range, or `*` in `cors_origins` (checked by
            [`ServiceSettings`][sidestream.settings.ServiceSettings], which the app keeps as
            `app.settings`); or `hub=` with a `bus`, `heartbeat` or `queue_size` that is not
            the hub's.
        InvalidConfig: no `bus` or `hub`, and `REDIS_URL` is unset.
    """
    if not callable(authorize):
        raise InvalidArgument(
            "authorize must be an authorizer, like sidestream.tokens.authorizer(tokens), or "
            f"sidestream.access.allow_everyone for public channels; not {authorize!r}"
        )
    settings = ServiceSettings(
        cors_origins=tuple([cors_origins] if isinstance(cors_origins, str) else cors_origins),
        cors_credentials=cors_credentials,
        heartbeat=heartbeat,
        max_streams=max_streams,
        max_channels=max_channels,
        queue_size=queue_size,
        retry=retry,
        retry_jitter=retry_jitter,
        retry_after=retry_after,
        drain_timeout=drain_timeout,
        drain_on_signal=drain_on_signal,
        path=path,
        websocket_path=websocket_path,
        max_message_bytes=max_message_bytes,
        publish_timeout=publish_timeout,
        publish_concurrency=publish_concurrency,
        fast_path=fast_path,
    )
    if hub is None:
        hub = Hub(bus or AsyncBus(connect_async()), heartbeat=heartbeat, queue_size=queue_size)
    else:
        _check_hub_conflicts(hub, bus, heartbeat, queue_size)
    app = _build(settings, hub, authorize, on_publish)
    if mercure is not None:  # opt-in: the Mercure hub route
        from sidestream.mercure_hub import install

        install(app, hub, mercure)
    return app


_DEFAULTS = ServiceSettings()


def _check_hub_conflicts(hub: Hub, bus: AsyncBus | None, heartbeat: float, queue_size: int) -> None:
    """With `hub=`, the bus, heartbeat and queue size are the hub's: an argument that says
    otherwise is a mistake to raise, not a setting to ignore."""
    if bus is not None and bus is not hub.bus:
        raise InvalidArgument("pass bus= or hub=, not both: the hub reads its own bus")
    for name, given, default, own in (
        ("heartbeat", heartbeat, _DEFAULTS.heartbeat, hub.heartbeat),
        ("queue_size", queue_size, _DEFAULTS.queue_size, hub.queue_size),
    ):
        if given != default and given != own:
            raise InvalidArgument(
                f"{name}={given!r} conflicts with the hub's {name} ({own!r}): with hub=, set it "
                f"on Hub(...)"
            )


def _build(
    settings: ServiceSettings, hub: Hub, authorize: Authorizer, on_publish: PublishHook | None
) -> StreamApp:
    origins = list(settings.cors_origins)
    middleware: list[Any] = []
    if origins:
        middleware += [
            falcon.CORSMiddleware(
                allow_origins=origins,
                # The browser client's wait after a 503, and the Mercure route's resume point
                # (the CORS middleware writes this header last, for every route).
                expose_headers=["Retry-After", "Mercure-Last-Event-ID", "Last-Event-ID"],
                allow_credentials=origins if settings.cors_credentials else None,
            ),
            _Vary(),
        ]
    app = StreamApp(middleware=middleware)
    app.set_error_serializer(_json_errors)
    app.settings = settings
    app.hub = hub
    app.drain_timeout = settings.drain_timeout
    app.fast_path = settings.fast_path
    app._retry = settings.retry_range
    app.add_middleware(_Lifespan(app, settings.drain_on_signal, is_allow_everyone(authorize)))
    admission = Admission(
        hub, authorize, settings.max_streams, settings.max_channels, settings.retry_after
    )
    app.add_error_handler(Refusal, _refused)
    app.add_route(settings.path, _Streams(app, admission))
    app.sockets = None
    if settings.websocket_path is not None:
        app.sockets = Sockets(
            app,
            admission,
            origins=origins,
            max_message_bytes=settings.max_message_bytes,
            on_publish=on_publish,
            publish_timeout=settings.publish_timeout,
            publish_concurrency=settings.publish_concurrency,
        )
        app.sockets.install(settings.websocket_path)
    app.add_route("/healthz", _Health(app))
    app.add_route("/metrics", _Metrics(app))
    return app


_module_app: StreamApp | None = None


def _app_from_env() -> StreamApp:
    """`sidestream.service:app`: `REDIS_URL`, and stream tokens keyed by `SIDESTREAM_TOKEN_KEY`."""
    from sidestream.tokens import StreamTokens, authorizer

    try:
        tokens = StreamTokens.from_env()
    except InvalidTokenConfig as exc:
        raise InvalidConfig(
            f"sidestream.service:app reads only streams its tokens allow: {exc}. For another "
            "authorizer, serve your own create_app(authorize=...)"
        ) from exc
    return create_app(authorize=authorizer(tokens))


def __getattr__(name: str) -> Any:
    # `uvicorn sidestream.service:app` reads `app`; it is made on first use, so that importing
    # this module (docs, tests) opens nothing.
    global _module_app
    if name == "app":
        if _module_app is None:
            _module_app = _app_from_env()
        return _module_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
