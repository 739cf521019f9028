"""WebSocket for two-way traffic: the same app, hub, authorizer and limits as the SSE route.

[`create_app`][sidestream.service.create_app] adds the route `/ws?channel=a&channel=b` (set
`websocket_path`, or `None` for none). A socket reads the channels it joined, like an event
stream, and may publish to the channels its grant allows; what it publishes goes through Redis,
so every socket and stream of every process sees it.

**Handshake.** Everything is checked before the socket is accepted: the channels and cursor (as
for `/events`; `?last_event_id=` resumes), the `Origin` (a browser sends cookies to any site's
WebSocket, so a page from an origin not in `cors_origins` is refused), the capacity, and the
authorizer. The token comes as for SSE (`Authorization`, `?token=`, cookie), or in the
`Sec-WebSocket-Protocol` header, which a browser *can* set: `new WebSocket(url, ["sidestream.v1",
"bearer." + token])`; the socket is then accepted with `sidestream.v1`, never echoing the token.

**Refusals** are never accepted first. On a server with the ASGI `websocket.http.response`
extension (uvicorn) the client gets a real HTTP response, `401`/`403`/`400`/`503` with the same
JSON body as `/events`; elsewhere the app closes the handshake with `3000 + status` and the
reason (Falcon's convention; the server answers HTTP 403). A browser sees neither: a failed
handshake is an `error` event and a `close` with code 1006 and no reason, whatever the cause.

**Frames** are JSON text. The server sends:

| `type` | Fields | When |
| --- | --- | --- |
| `event` | `channel`, `id`, `event`, `data` | an event of a joined channel (replayed first) |
| `ready` | `positions` (`{channel: id}`), `publish` | once, after the replay |
| `ack` | `ref`, `channel`, `id` | a message was published, with its stream id |
| `error` | `error`, `reason`, `ref` | a message was refused; the socket stays open |

`error` is `invalid` (the message), `forbidden` (the channel) or `unavailable` (Redis).

A client sends `{"channel": "room:1", "data": "hi", "event": "message", "ref": "m1"}` (`event`
and `ref` optional; `ref` is echoed in the `ack` or `error`).

**Close codes** (after the handshake; see [`CloseCode`][sidestream.websocket.CloseCode]): 1001
on shutdown, 1003 for a binary frame, 1009 for a message over `max_message_bytes`, 4001 when the
grant expires, 4008 for a socket too slow to take its events; a text frame that is not UTF-8 is
closed with 1007 by the server itself, as RFC 6455 says. A message nested too deep for the JSON
parser, or with text that is not valid Unicode (a lone surrogate), gets an `invalid` error frame.

**Keepalive** is the server's WebSocket ping (uvicorn: `--ws-ping-interval`, `--ws-ping-timeout`,
20 s each by default): browsers answer pings without any JavaScript, the pings keep proxies from
closing an idle socket, and a peer that stops answering is dropped within interval + timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import falcon
import falcon.asgi
from redis.exceptions import RedisError

from sidestream.access import Grant
from sidestream.admission import CURSOR_HEADER, CURSOR_PARAM, Admission, Refusal
from sidestream.bus import RESERVED_EVENTS, validate_channel
from sidestream.errors import AccessDenied, InvalidChannel, InvalidEvent, PayloadTooLarge
from sidestream.hub import Hub, Subscriber
from sidestream.servers import connection


class _App(Protocol):
    """What the route needs of the app it is installed on (a `StreamApp`), named here so that
    this module does not import the service that imports it."""

    hub: Hub
    fast_path: bool
    ws_options: Any

    def add_route(self, uri_template: str, resource: object) -> None: ...


__all__ = [
    "RESERVED_EVENTS",
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "CloseCode",
    "Message",
    "PublishHook",
]

log = logging.getLogger("sidestream.websocket")

SUBPROTOCOL = "sidestream.v1"
"""The subprotocol the service accepts when a client offers one (it must, with a token in
`Sec-WebSocket-Protocol`: a browser fails a handshake that selects none of its offers)."""

TOKEN_SUBPROTOCOL_PREFIX = "bearer."
"""An offered subprotocol `bearer.<token>` carries the token (read as `Authorization: Bearer`)."""


_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's body is at most 125 bytes, 2 for the code
_MAX_REF = 64
_FIELDS = frozenset({"channel", "data", "event", "ref"})
_TITLES = {400: "bad request", 401: "unauthorized", 403: "forbidden", 503: "unavailable"}


class CloseCode(IntEnum):
    """Why the service closed a socket: the `code` of the browser's `CloseEvent`."""

    GOING_AWAY = 1001
    """The service is shutting down (uvicorn itself says 1012 to a socket still open after the
    drain): reconnect, to another instance, and resume."""
    UNSUPPORTED_DATA = 1003
    """A binary frame: send JSON text."""
    MESSAGE_TOO_BIG = 1009
    """A message over `max_message_bytes` (or over uvicorn's `--ws-max-size`)."""
    EXPIRED = 4001
    """The grant (token) expired: fetch a fresh token, reconnect, resume."""
    SLOW_CONSUMER = 4008
    """More than `queue_size` events were waiting for this socket: reconnect and resume."""
    BAD_REQUEST = 3400
    """Handshake refused (without the HTTP response extension): bad channel or cursor."""
    UNAUTHORIZED = 3401
    """Handshake refused: no token, or one that does not verify."""
    FORBIDDEN = 3403
    """Handshake refused: a channel not granted, or an origin not allowed."""
    UNAVAILABLE = 3503
    """Handshake refused: draining, at `max_streams`, or Redis not answering. Retry later."""


_CLOSES: dict[str | None, tuple[CloseCode, str]] = {
    "shutdown": (CloseCode.GOING_AWAY, "shutdown: reconnect and resume"),
    "expired": (CloseCode.EXPIRED, "expired: fetch a new token, reconnect and resume"),
    "slow-consumer": (CloseCode.SLOW_CONSUMER, "slow-consumer: reconnect and resume"),
}


@dataclass(frozen=True)
class Message:
    """A client's message, validated: what will be published.

    Attributes:
        channel: Where to publish (a valid channel name the grant allows).
        data: The event's data, published as is.
        event: The event type, or `None` for the default.
        ref: The client's own reference, echoed in the `ack` or `error` frame.
    """

    channel: str
    data: str
    event: str | None = None
    ref: str | int | None = None


PublishHook = Callable[[Grant, Message], Awaitable[Message]]
"""Called with the socket's grant and each valid message it is allowed to publish; returns the
message to publish (say, with the sender stamped into `data`, since a client may claim to be
anyone) or raises [`Forbidden`][sidestream.errors.Forbidden] /
[`InvalidEvent`][sidestream.errors.InvalidEvent] to refuse it with an `error` frame."""


class _BadMessage(Exception):
    def __init__(self, error: str, reason: str, ref: str | int | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.ref = ref


def _frame(**fields: Any) -> str:
    return json.dumps(fields, ensure_ascii=False)


def _short(reason: str) -> str:
    """A close reason that fits a close frame (123 bytes of UTF-8)."""
    raw = reason.encode()
    if len(raw) <= _MAX_REASON_BYTES:
        return reason
    return raw[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


async def refuse(
    req: falcon.asgi.Request, resp: Any, ex: Refusal, params: Any, ws: Any = None
) -> None:
    """Answer a refused handshake without accepting it (the app's `Refusal` handler calls this
    for a WebSocket request)."""
    send = req.scope.get("sidestream.send")
    if send is not None and "websocket.http.response" in req.scope.get("extensions", {}):
        body = json.dumps({"title": _TITLES[ex.status], "description": ex.reason}).encode()
        headers = [(b"content-type", b"application/json")]
        headers += [(name.lower().encode(), value.encode()) for name, value in ex.headers]
        await send(
            {"type": "websocket.http.response.start", "status": ex.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": body})
    elif ws is not None:
        await ws.close(3000 + ex.status, _short(ex.reason))


class _BearerFromSubprotocol:
    """The handshake request, reading a `bearer.<token>` subprotocol as `Authorization`."""

    def __init__(self, req: falcon.asgi.Request, token: str) -> None:
        self._req = req
        self._token = token

    def get_header(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name.lower() == "authorization":
            return f"Bearer {self._token}"
        return self._req.get_header(name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._req, name)


class Sockets:
    """The `on_websocket` resource. Made by `create_app`; its counters feed `/metrics`.

    Attributes:
        open: Sockets accepted and not yet ended.
        published: Client messages published.
        refused: Client messages answered with an `error` frame or a close.
    """

    def __init__(
        self,
        app: _App,
        admission: Admission,
        *,
        origins: Sequence[str],
        max_message_bytes: int,
        on_publish: PublishHook | None,
        publish_timeout: float,
        publish_concurrency: int,
    ) -> None:
        self.app = app
        self.admission = admission  # the same channel, cursor, limit and authorizer rules
        self.origins = frozenset(origins)
        self.max_message_bytes = max_message_bytes
        self.on_publish = on_publish
        self.publish_timeout = publish_timeout
        self._publishing = asyncio.Semaphore(publish_concurrency)
        self.open = 0
        self.published = 0
        self.refused = 0

    def install(self, path: str) -> None:
        """Route `path` to this resource on its app, and answer refused handshakes."""
        self.app.ws_options.max_receive_queue = 0  # the socket's reader notices a disconnect
        self.app.add_route(path, self)

    # -- the handshake -------------------------------------------------------------------------

    def _check(self, req: falcon.asgi.Request) -> tuple[list[str], str | None]:
        admission = self.admission
        channels = admission.channels(req.get_param_as_list("channel") or [])
        header, param = req.get_header(CURSOR_HEADER), req.get_param(CURSOR_PARAM)
        cursor = admission.cursor(header, param, channels)
        origin = req.get_header("Origin")
        same_site = origin is not None and urlsplit(origin).netloc == req.get_header("Host")
        if origin is not None and origin not in self.origins and not same_site:
            raise Refusal(403, f"origin {origin} may not open sockets here: add it to cors_origins")
        return channels, cursor

    def _subprotocol(self, req: falcon.asgi.Request, ws: Any) -> tuple[Any, str | None]:
        """The request the authorizer sees, and the subprotocol to accept."""
        offered: tuple[str, ...] = ws.subprotocols
        if not offered:
            return req, None
        if SUBPROTOCOL not in offered:
            raise Refusal(400, f"offer the {SUBPROTOCOL!r} subprotocol (with 'bearer.<token>')")
        tokens = [p for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)]
        if tokens:
            return _BearerFromSubprotocol(
                req, tokens[0][len(TOKEN_SUBPROTOCOL_PREFIX) :]
            ), SUBPROTOCOL
        return req, SUBPROTOCOL

    async def on_websocket(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        channels, cursor = self._check(req)
        request, subprotocol = self._subprotocol(req, ws)
        hub = self.app.hub
        grant, sub = await self.admission.admit(request, channels, cursor, frames=True)
        try:
            await ws.accept(subprotocol=subprotocol)
        except BaseException:
            hub.finish(sub)
            raise
        self.open += 1
        try:
            await self._serve(req, ws, sub, grant)
        finally:
            self.open -= 1
            hub.finish(sub)

    # -- an open socket ------------------------------------------------------------------------

    async def _serve(
        self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket, sub: Subscriber, grant: Grant
    ) -> None:
        hub = self.app.hub
        loop = asyncio.get_running_loop()
        scope = req.scope
        conn = connection(
            scope,
            scope.get("sidestream.receive"),
            scope.get("sidestream.send"),
            fast_path=self.app.fast_path,
        )

        def abort() -> None:
            # A socket that took no frame for cutoff_grace seconds after it was closed: uvicorn
            # drops the TCP connection; elsewhere the handler is cancelled (StreamApp ends it).
            conn.abort()

        sub.abort = abort
        if grant.expires_at is not None:
            hub.expire_at(sub, loop.time() + (grant.expires_at - time.time()))
        ready = _frame(type="ready", positions=sub.start, publish=list(grant.publish))
        writer = loop.create_task(self._write(ws, sub, ready))
        writer.add_done_callback(_log_failure)
        try:
            await self._read(ws, grant)
        finally:
            writer.cancel()

    async def _write(self, ws: falcon.asgi.WebSocket, sub: Subscriber, ready: str) -> None:
        send = ws.send_text
        try:
            for frame in sub.replay:
                await send(frame)
            sub.replay = ()
            await send(ready)
            next_frames = sub.next_frames
            while frames := await next_frames():
                for frame in frames:
                    await send(frame)
            if sub.closed not in ("gone", "finished"):  # else the client left or we ended
                code, reason = _CLOSES.get(sub.closed, _CLOSES["shutdown"])
                await ws.close(code, reason)
        except falcon.WebSocketDisconnected:
            sub.close(drop_queue=True, reason="gone")

    async def _read(self, ws: falcon.asgi.WebSocket, grant: Grant) -> None:
        limit = self.max_message_bytes
        while True:
            try:
                text = await ws.receive_text()
            except falcon.WebSocketDisconnected:
                return
            except falcon.PayloadTypeError:
                self.refused += 1
                await self._close(ws, CloseCode.UNSUPPORTED_DATA, "send JSON text, not binary")
                return
            if len(text) > limit // 4 and len(text.encode()) > limit:
                self.refused += 1
                await self._close(ws, CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
                return
            try:
                reply = await self._publish(text, grant)
                self.published += 1
            except _BadMessage as bad:
                self.refused += 1
                reply = _frame(type="error", error=bad.error, reason=bad.reason, ref=bad.ref)
            try:
                await ws.send_text(reply)
            except falcon.WebSocketDisconnected:
                return

    async def _close(self, ws: falcon.asgi.WebSocket, code: CloseCode, reason: str) -> None:
        with contextlib.suppress(falcon.WebSocketDisconnected):
            await ws.close(code, reason)

    async def _publish(self, text: str, grant: Grant) -> str:
        message = _parse_message(text)
        if not grant.may_publish(message.channel):
            who = grant.subject or "this socket"
            raise _BadMessage(
                "forbidden", f"{who} may not publish to {message.channel}", message.ref
            )
        ref = message.ref
        if self.on_publish is not None:
            try:
                message = await self.on_publish(grant, message)
            except AccessDenied as exc:
                raise _BadMessage("forbidden", exc.reason, ref) from None
            except (InvalidEvent, PayloadTooLarge, InvalidChannel) as exc:
                raise _BadMessage("invalid", str(exc), ref) from None
        bus = self.app.hub.bus
        try:
            async with self._publishing:
                event_id = await asyncio.wait_for(
                    bus.publish(message.channel, message.data, message.event), self.publish_timeout
                )
        except (InvalidEvent, PayloadTooLarge, InvalidChannel) as exc:
            raise _BadMessage("invalid", str(exc), ref) from None
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("publishing a client message failed: %s", exc)
            raise _BadMessage("unavailable", "Redis did not take the message: retry", ref) from None
        return _frame(type="ack", ref=ref, channel=message.channel, id=event_id)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("a socket's writer failed", exc_info=error)


def _parse_message(text: str) -> Message:
    """Validate a client's text frame: a JSON object with `channel`, `data`, and optionally
    `event` and `ref`.

    Raises:
        _BadMessage: what is wrong with it, for an `error` frame.
    """
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _BadMessage("invalid", f"message is not JSON: {exc}") from None
    except RecursionError:  # `[[[[...` thousands deep: the parser gives up, the socket does not
        raise _BadMessage(
            "invalid", "message is nested more than the JSON parser allows: send a flat object"
        ) from None
    if not isinstance(obj, dict):
        raise _BadMessage(
            "invalid", 'a message is a JSON object like {"channel": "room:1", "data": "hi"}'
        )
    ref = obj.get("ref")
    if not (ref is None or isinstance(ref, int) or (isinstance(ref, str) and len(ref) <= _MAX_REF)):
        raise _BadMessage("invalid", f"'ref' must be an int or a string of at most {_MAX_REF}")
    if unknown := sorted(set(obj) - _FIELDS):
        raise _BadMessage("invalid", f"unknown fields {unknown}: use {sorted(_FIELDS)}", ref)
    channel, data, event = obj.get("channel"), obj.get("data"), obj.get("event")
    if not isinstance(data, str):
        raise _BadMessage("invalid", "'data' must be a string (JSON-encode objects first)", ref)
    try:
        channel = validate_channel(cast(str, channel))  # raises for a non-str too
    except InvalidChannel as exc:
        raise _BadMessage("invalid", str(exc), ref) from None
    if event is not None and (not isinstance(event, str) or event in RESERVED_EVENTS):
        reserved = ", ".join(sorted(RESERVED_EVENTS))
        raise _BadMessage("invalid", f"'event' must be a string other than {reserved}", ref)
    return Message(channel, data, event, ref)
