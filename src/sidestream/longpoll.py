"""Long polling served by a stateless WSGI API: one request blocks on Redis until there is news.

The client sends the id of the last event it has (`last_id`) and how long it is willing to wait
(`timeout`, seconds). [`long_poll`][sidestream.longpoll.long_poll] answers with every event after
that id, as soon as there is one, or with an empty list when the time is up:

```json
{"events": [{"id": "1700000000000-0", "event": "created", "data": "{\\"id\\": 7}"}],
 "last_id": "1700000000000-0", "reset": false}
```

The client sends `last_id` back on its next request, so nothing is lost between two polls: the
events stay in the channel's Redis stream, and `last_id` points into it.

The rules, in the order the helper applies them:

- **No cursor** (`last_id` absent or empty): answer at once with no events and the newest id, so
  the client has a cursor to wait after. (A page that renders state on the server should embed
  [`Bus.latest_id`][sidestream.bus.Bus.latest_id] instead: then nothing slips between rendering
  and the first poll.)
- **Bad input**: `400` with `{"error": "invalid_parameter", "parameter": ..., "detail": ...}`
  naming `channel`, `last_id` or `timeout`. A timeout outside 1..30 is not an error: it is
  clamped into that range.
- **Missed events** (the cursor is older than the retained history, or Redis lost the history):
  `200` with `{"events": [], "last_id": <newest>, "reset": true, "detail": ...}`. The client
  must reload its state and then poll from the new `last_id`. It is a `200`, not a `410`, so the
  body always has the same shape and a client loop needs one `if`, not an error path.
- **Redis unavailable** (down, or the connection pool is exhausted): `503` with a `Retry-After`
  header; the client backs off and retries with the same cursor.

**What a waiting request costs**: one worker thread and one Redis connection, for up to the
timeout. Redis does the waiting (`XREAD BLOCK`): no command is sent and no CPU is used until an
event arrives. Serve it with threads (gunicorn `--worker-class gthread --threads 32`), and keep
the Redis pool (100 connections per process by default) larger than the threads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import redis

from sidestream.errors import HistoryGap, InvalidChannel, InvalidCursor
from sidestream.sse import Event

if TYPE_CHECKING:
    from sidestream.bus import Bus

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
    "MIN_TIMEOUT",
    "Reply",
    "long_poll",
    "parse_timeout",
]

MIN_TIMEOUT: Final = 1.0
"""The shortest wait a client can ask for, in seconds (shorter requests are raised to this)."""

MAX_TIMEOUT: Final = 30.0
"""The longest wait, in seconds: under the 30 to 60 s idle limits of most proxies and load
balancers, so none of them cuts a waiting request."""

DEFAULT_TIMEOUT: Final = 25.0
"""The wait when the client does not say."""

_NO_STORE: Final = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class Reply:
    """A long-poll answer, independent of any web framework.

    Attributes:
        status: The HTTP status code.
        body: The JSON body, as a dict.
        headers: Extra response headers (`Cache-Control: no-store`; `Retry-After` on a 503).
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: dict(_NO_STORE))

    def json_bytes(self) -> bytes:
        """The body encoded as UTF-8 JSON."""
        return json.dumps(self.body, separators=(",", ":")).encode()

    def wsgi(self, start_response: _StartResponse) -> Iterable[bytes]:
        """Send this reply from a plain WSGI application: `return reply.wsgi(start_response)`."""
        body = self.json_bytes()
        start_response(
            f"{self.status} {_REASONS.get(self.status, '')}".rstrip(),
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *self.headers.items(),
            ],
        )
        return [body]


class _StartResponse(Protocol):
    def __call__(self, status: str, headers: list[tuple[str, str]], /) -> Any: ...


_REASONS: Final = {200: "OK", 400: "Bad Request", 503: "Service Unavailable"}


def _bad(parameter: str, detail: str) -> Reply:
    return Reply(400, {"error": "invalid_parameter", "parameter": parameter, "detail": detail})


def parse_timeout(raw: str | float | None, default: float = DEFAULT_TIMEOUT) -> float:
    """The wait in seconds for a raw `timeout` parameter, clamped to 1..30.

    Args:
        raw: The parameter as received (a query-string value), a number, or `None` / `""` for
            the default.
        default: The wait when `raw` is absent.

    Raises:
        ValueError: `raw` is not a finite decimal number.
    """
    if raw is None or raw == "":
        value = float(default)
    elif isinstance(raw, bool):
        raise ValueError("timeout must be a number of seconds")
    else:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(
                f"timeout must be a number of seconds (1 to 30), got {str(raw)[:40]!r}"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"timeout must be a finite number of seconds, got {raw!r}")
    return min(max(value, MIN_TIMEOUT), MAX_TIMEOUT)


def _event_json(event: Event) -> dict[str, Any]:
    return {"id": event.id, "event": event.event, "data": event.data}


def long_poll(
    bus: Bus,
    channel: str,
    last_id: str | None,
    timeout: str | float | None = None,
    *,
    limit: int = 100,
) -> Reply:
    """Wait for events on `channel` after `last_id`, for at most `timeout` seconds.

    Call it from any WSGI view with the request's parameters as they came (strings or `None`);
    it validates them and never raises for bad input.

    Args:
        bus: The sync [`Bus`][sidestream.bus.Bus] the API publishes to.
        channel: The channel to read (from the URL, or chosen by the view, like `user:42`).
        last_id: The id of the last event the client has; `None` or `""` for "I have none".
        timeout: Seconds to wait, as received; clamped to 1..30, default 25.
        limit: The most events in one answer; the client gets the rest on its next poll,
            at once.

    Returns:
        The [`Reply`][sidestream.longpoll.Reply] to send: status, JSON body and headers.
    """
    try:
        wait = parse_timeout(timeout)
    except ValueError as exc:
        return _bad("timeout", str(exc))
    try:
        if not last_id:
            return Reply(200, {"events": [], "last_id": bus.latest_id(channel), "reset": False})
        events = bus.wait(channel, after_id=last_id, timeout=wait, limit=limit)
    except InvalidChannel as exc:
        return _bad("channel", str(exc))
    except InvalidCursor as exc:
        return _bad("last_id", str(exc))
    except HistoryGap as gap:
        body = {"events": [], "last_id": gap.latest_id, "reset": True, "detail": str(gap)}
        return Reply(200, body)
    except redis.RedisError as exc:
        detail = (
            f"the event store is unavailable ({type(exc).__name__}); retry with the same last_id"
        )
        return Reply(
            503, {"error": "unavailable", "detail": detail}, {**_NO_STORE, "Retry-After": "2"}
        )
    cursor = events[-1].id if events else last_id
    return Reply(
        200, {"events": [_event_json(e) for e in events], "last_id": cursor, "reset": False}
    )
