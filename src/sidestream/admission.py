"""One admission path for every route that opens a stream: `/events`, `/ws`, and any later one.

Before a byte of a stream is sent, the same questions are asked in the same order:

1. the channels (present, valid names, at most `max_channels`) and the cursor (`Last-Event-ID`,
   or the `last_event_id` query parameter) parse;
2. the process is not draining and holds fewer than `max_streams` streams;
3. the authorizer grants the channels, and its grant has not already expired;
4. the hub registers the subscriber (Redis confirmed the subscription, the replay was read).

Any "no" is a [`Refusal`][sidestream.admission.Refusal]: a status, a reason safe to show the
client, and headers (`WWW-Authenticate` on a 401, `Retry-After` on a 503). It names no framework
and no transport: the SSE route answers it as an HTTP error with a JSON body, the WebSocket
route as an HTTP answer to the handshake (or a `3000 + status` close). Transport-only checks
(the WebSocket's `Origin` and subprotocol) stay with their transport.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sidestream.access import Authorizer, Grant
from sidestream.cursor import parse_stream_cursor, validate_channel
from sidestream.errors import AccessDenied, InvalidChannel, InvalidCursor, Unavailable
from sidestream.hub import Hub, Subscriber

__all__ = ["CURSOR_HEADER", "CURSOR_PARAM", "Admission", "Refusal"]

CURSOR_PARAM: Final = "last_event_id"
"""The query parameter that carries a cursor on a first connection (`EventSource` sends the
`Last-Event-ID` header only when it reconnects by itself). The header wins when both are sent,
because it is the newer of the two."""

CURSOR_HEADER: Final = "Last-Event-ID"
"""The header a reconnecting `EventSource` sends its last event id in."""


class Refusal(Exception):
    """Why a stream is not opened, for any transport to answer in its own way.

    Attributes:
        status: The HTTP status it stands for: 400, 401, 403 or 503.
        reason: What went wrong and what to do, safe to show the client.
        headers: Headers the answer carries (`WWW-Authenticate: Bearer`, `Retry-After`).
        title: A short title for the JSON body (`"unauthorized"`, `"Invalid parameter"`).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
        title: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)
        self.title = title or _TITLES[status]


_TITLES: Final = {400: "bad request", 401: "unauthorized", 403: "forbidden", 503: "unavailable"}
_BEARER: Final = (("WWW-Authenticate", "Bearer"),)


def _missing(name: str) -> Refusal:
    return Refusal(400, f'The "{name}" parameter is required.', title="Missing parameter")


def _invalid_param(name: str, detail: str) -> Refusal:
    return Refusal(400, f'The "{name}" parameter is invalid. {detail}', title="Invalid parameter")


def _invalid_header(name: str, detail: str) -> Refusal:
    return Refusal(
        400,
        f'The value provided for the "{name}" header is invalid. {detail}',
        title="Invalid header value",
    )


@dataclass
class Admission:
    """The admission rules of one app, shared by its routes.

    Attributes:
        hub: The hub that registers admitted subscribers.
        authorize: The app's authorizer.
        max_streams: Streams the process holds at most (503 beyond).
        max_channels: Channels one stream may ask for (400 beyond).
        retry_after: Seconds in the `Retry-After` of a 503.
    """

    hub: Hub
    authorize: Authorizer
    max_streams: int
    max_channels: int
    retry_after: int

    def channels(self, names: Sequence[str]) -> list[str]:
        """The requested channels, checked and without duplicates.

        Raises:
            Refusal: 400, none, too many, or a name that is not a channel name.
        """
        if not names:
            raise _missing("channel")
        if len(names) > self.max_channels:
            raise _invalid_param(
                "channel", f"at most {self.max_channels} channels per stream, got {len(names)}"
            )
        try:
            return list(dict.fromkeys(validate_channel(name) for name in names))
        except InvalidChannel as exc:
            raise _invalid_param("channel", str(exc)) from None

    def cursor(self, header: str | None, param: str | None, channels: Sequence[str]) -> str | None:
        """The client's cursor (the header wins over the parameter), checked, or `None`.

        Raises:
            Refusal: 400 naming the header or the parameter the bad cursor came in.
        """
        cursor = header or param or None
        if cursor is None:
            return None
        try:
            parse_stream_cursor(cursor, channels)
        except InvalidCursor as exc:
            if header:
                raise _invalid_header(CURSOR_HEADER, str(exc)) from None
            raise _invalid_param(CURSOR_PARAM, str(exc)) from None
        return cursor

    def _unavailable(self, reason: str) -> Refusal:
        return Refusal(503, reason, (("Retry-After", str(self.retry_after)),))

    async def admit(
        self,
        request: Any,
        channels: Sequence[str],
        cursor: str | None,
        *,
        frames: bool = False,
    ) -> tuple[Grant, Subscriber]:
        """Capacity, authorization and expiry, then the hub's subscriber.

        Args:
            request: What the authorizer reads the credentials from.
            channels: Checked channel names ([`channels`][sidestream.admission.Admission]).
            cursor: A checked cursor, or `None` to start from now.
            frames: For a WebSocket: the replay as text frames (see `Hub.subscribe`).

        Raises:
            Refusal: 503 (draining, full, Redis not answering), 401 or 403.
        """
        hub = self.hub
        if hub.draining:
            raise self._unavailable("the service is shutting down")
        if hub.open_streams >= self.max_streams:
            raise self._unavailable(f"this process holds its maximum of {self.max_streams} streams")
        try:
            grant = await self.authorize(request, channels)
        except AccessDenied as exc:
            raise Refusal(exc.status, exc.reason, _BEARER if exc.status == 401 else ()) from None
        if grant.expires_at is not None and grant.expires_at <= time.time():
            raise Refusal(401, "the grant has already expired", _BEARER)
        try:
            sub = await hub.subscribe(channels, cursor=cursor, frames=frames)
        except Unavailable as exc:
            raise self._unavailable(str(exc)) from None
        except InvalidCursor as exc:  # pragma: no cover - checked by `cursor`
            raise _invalid_param(CURSOR_PARAM, str(exc)) from None
        return grant, sub
