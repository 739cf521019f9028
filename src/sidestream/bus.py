"""The Redis event bus: publish once, read live, resume from history, wait without polling.

Each channel is two things in Redis, both named under a configurable prefix:

- a **stream** ([`stream_key`][sidestream.bus.Bus.stream_key]) that keeps the last `maxlen` events
  (approximately: `XADD … MAXLEN ~`), so a client that comes back with the last id it saw gets
  exactly what it missed, and
- a **pub/sub channel** ([`live_channel`][sidestream.bus.Bus.live_channel]) that announces each
  event to whoever is listening right now (the stream service's one subscription per process).

[`Bus.publish`][sidestream.bus.Bus.publish] does both in one Lua script, so no listener can see an
event that history does not have. [`Bus.wait`][sidestream.bus.Bus.wait] is one `XREAD BLOCK`:
Redis parks the request and answers when an event arrives, and the waiting costs no command at
all. [`Bus.publish_live`][sidestream.bus.Bus.publish_live] is the plain pub/sub mode: fire and
forget, no history, nothing to resume from.

```python
from sidestream.bus import Bus, connect

bus = Bus(connect("memory://"), prefix="doc:")
first = bus.publish("orders", '{"id": 1}', event="created")
bus.publish("orders", '{"id": 2}', event="created")
print([event.data for event in bus.history("orders", after_id=first)])
#> ['{"id": 2}']
print(bus.wait("orders", after_id=bus.latest_id("orders"), timeout=0.01))
#> []
```

[`Bus`][sidestream.bus.Bus] is for WSGI code (Flask); [`AsyncBus`][sidestream.bus.AsyncBus] has
the same methods, awaited, for asyncio code (the Falcon service). Both share one implementation:
each operation is written once as a plan of Redis commands, and only the loop that sends them
differs.

**Connections.** Every method borrows one connection from the client's pool for one command,
except `wait`, which holds it for the whole wait. redis-py's pool holds at most 100 connections by
default, so one process can hold about 100 waits at a time; raise it with `?max_connections=` in
the URL. redis-py 8 also gives every connection a 5 second socket timeout by default, which would
cut a longer `XREAD BLOCK` short: [`connect`][sidestream.bus.connect] sets
[`SOCKET_TIMEOUT`][sidestream.bus.SOCKET_TIMEOUT] instead, and with any other client `wait` blocks
in slices that fit its socket timeout (one command per slice instead of one per wait).

**Responses.** `connect` returns clients with `decode_responses=False` (bytes); the bus accepts
clients with either setting, and RESP2 or RESP3.

**Redis Cluster.** A URL `redis+cluster://host:port[,host:port...]` (see
[`sidestream.cluster`][sidestream.cluster]) makes `connect` and `connect_async` return redis-py's
cluster clients. With one, the bus announces events with `SPUBLISH` (sharded pub/sub, Redis >= 7)
on the master of the channel's slot, and history and waits go to that master too: the hash tag
in both key names puts a channel's stream and live channel in one slot.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import NoScriptError, ResponseError

from sidestream.cluster import connect_cluster, connect_cluster_async, is_cluster, is_cluster_url
from sidestream.cursor import CHANNEL_PATTERN, U64_MAX, format_id, parse_cursor, validate_channel
from sidestream.errors import (
    CursorAhead,
    HistoryGap,
    InvalidArgument,
    InvalidConfig,
    InvalidEvent,
    PayloadTooLarge,
)
from sidestream.sse import Event

if TYPE_CHECKING:
    import fakeredis

__all__ = [
    "CHANNEL_PATTERN",
    "MEMORY_URL",
    "RESERVED_EVENTS",
    "SOCKET_TIMEOUT",
    "AsyncBus",
    "Bus",
    "backend",
    "connect",
    "connect_async",
    "decode_live",
    "fake_server",
    "parse_cursor",
    "validate_channel",
]

log = logging.getLogger("sidestream.bus")

MEMORY_URL: Final = "memory://"
"""The URL of the embedded fakeredis server: the only way to it (an unset `REDIS_URL` is an
error, not this)."""

SOCKET_TIMEOUT: Final = 35.0
"""Socket timeout (seconds) of the clients [`connect`][sidestream.bus.connect] makes: longer than
the longest long poll (30 s), so one `XREAD BLOCK` covers a whole wait."""

_U64_MAX: Final = U64_MAX
_MAX_LIMIT: Final = 10_000
_MAX_EVENT_TYPE: Final = 256

RESERVED_EVENTS: Final = frozenset({"close", "reset"})
"""Event types only the stream service sends (`close` ends a stream, `reset` says history was
lost): a client acts on them, so nobody else may publish them."""

# KEYS[1] = stream; ARGV = maxlen, data, event type ('' for none), live channel.
# `prev` records the id this event follows, so history can tell a trimmed gap from no gap at all.
_PUBLISH_LUA: Final = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if last[1] then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                      'data', ARGV[2], 'event', ARGV[3], 'prev', prev)
redis.call('PUBLISH', ARGV[4], id .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[2])
return id
"""
_PUBLISH_SHA: Final = hashlib.sha1(_PUBLISH_LUA.encode()).hexdigest()
# On Redis Cluster the live message goes out with SPUBLISH (sharded pub/sub): it stays on the
# slot's own master (and its replicas), where the hub's one connection per shard listens.
_SPUBLISH_LUA: Final = _PUBLISH_LUA.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
_SPUBLISH_SHA: Final = hashlib.sha1(_SPUBLISH_LUA.encode()).hexdigest()

# ---------------------------------------------------------------------------------------------
# Connecting
# ---------------------------------------------------------------------------------------------

_server: fakeredis.FakeServer | None = None
_server_lock = threading.Lock()


def fake_server() -> fakeredis.FakeServer:
    """The one process-wide embedded server behind every `memory://` client (sync and async)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = _fakeredis().FakeServer()
        return _server


def _resolve(url: str | None) -> str | None:
    """The real Redis URL to use, or None for the embedded server (`memory://` only)."""
    if url is None:
        url = os.environ.get("REDIS_URL", "")
    if not isinstance(url, str) or not url.strip():
        raise InvalidConfig(
            "REDIS_URL is not set: set it (or pass a URL) to your Redis, like "
            "'redis://host:6379/0' (also rediss:// and unix://), or to 'memory://' for the "
            "embedded fakeredis server of this one process (for trying and testing only)"
        )
    return None if url == MEMORY_URL else url


def _fakeredis() -> Any:
    try:
        import fakeredis
    except ImportError:
        raise InvalidConfig(
            "memory:// needs fakeredis, which is not installed: pip install 'sidestream[memory]' "
            "(or point REDIS_URL at a real Redis, like 'redis://host:6379/0')"
        ) from None
    return fakeredis


def backend(client: Any) -> str:
    """`"memory"` for a client of the embedded fakeredis server, else `"redis"`."""
    return "memory" if type(client).__module__.split(".")[0] == "fakeredis" else "redis"


def connect(url: str | None = None) -> redis.Redis | redis.cluster.RedisCluster:
    """A sync Redis client for [`Bus`][sidestream.bus.Bus].

    Args:
        url: A `redis://` / `rediss://` / `unix://` URL, a Redis Cluster's
            `redis+cluster://host:port[,host:port...]`, or `memory://` for the embedded
            fakeredis server (one per process, shared with
            [`connect_async`][sidestream.bus.connect_async]; needs `sidestream[memory]`).
            Defaults to the `REDIS_URL` environment variable. Query options in the URL
            (`?max_connections=200&socket_timeout=40`) override the defaults set here.

    Returns:
        A client with `decode_responses=False` and a socket timeout of
        [`SOCKET_TIMEOUT`][sidestream.bus.SOCKET_TIMEOUT].

    Raises:
        InvalidConfig: no URL and `REDIS_URL` unset or empty (there is no silent default: an
            API and a service that each fell back to their own embedded server would never
            see each other's events), or `memory://` without fakeredis installed.
    """
    real = _resolve(url)
    if real is None:
        client: redis.Redis = _fakeredis().FakeRedis(
            server=fake_server(), socket_timeout=SOCKET_TIMEOUT
        )
        return client
    if is_cluster_url(real):
        return connect_cluster(real, socket_timeout=SOCKET_TIMEOUT)
    return redis.Redis.from_url(real, socket_timeout=SOCKET_TIMEOUT)


def connect_async(
    url: str | None = None,
) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """An asyncio client for [`AsyncBus`][sidestream.bus.AsyncBus].

    Same URL rules, settings and errors as [`connect`][sidestream.bus.connect]; a `memory://`
    client shares the embedded server with the sync ones.
    """
    real = _resolve(url)
    if real is None:
        client: redis.asyncio.Redis = _fakeredis().FakeAsyncRedis(
            server=fake_server(), socket_timeout=SOCKET_TIMEOUT
        )
        return client
    if is_cluster_url(real):
        return connect_cluster_async(real, socket_timeout=SOCKET_TIMEOUT)
    return redis.asyncio.Redis.from_url(real, socket_timeout=SOCKET_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Validation and encoding (pure functions, shared by both buses)
# ---------------------------------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _check_event(data: str, event: str | None, max_data_bytes: int) -> tuple[bytes, bytes]:
    """Validate an event to publish; return its data and type as the bytes Redis will store."""
    if not isinstance(data, str):
        raise InvalidEvent(
            f"data must be a str, not {type(data).__name__}: serialize it first "
            "(for example json.dumps(payload))"
        )
    if event is not None and (
        not isinstance(event, str)
        or not event
        or len(event) > _MAX_EVENT_TYPE
        or any(c in event for c in "\r\n\0")
    ):
        raise InvalidEvent(
            f"event type {event!r} is not valid: use None for the default type, or a non-empty "
            f"str of at most {_MAX_EVENT_TYPE} characters without CR, LF or NUL"
        )
    if event in RESERVED_EVENTS:
        raise InvalidEvent(
            f"event type {event!r} is reserved: the stream service sends "
            f"{' and '.join(sorted(RESERVED_EVENTS))} itself; name your event type otherwise"
        )
    try:
        encoded = data.encode()
        event_type = (event or "").encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: not text any Redis client can read
        raise InvalidEvent(
            f"event {'data' if exc.object is data else 'type'} is not valid Unicode text "
            f"(a lone surrogate at position {exc.start}): publish text that encodes as UTF-8"
        ) from None
    if len(encoded) > max_data_bytes:
        raise PayloadTooLarge(
            f"event data is {len(encoded)} bytes, over this bus's cap of {max_data_bytes}: "
            "publish an id or a URL and let clients fetch the body, or raise max_data_bytes"
        )
    return encoded, event_type


def decode_live(payload: bytes | str) -> Event:
    """Parse a message from a [`live_channel`][sidestream.bus.Bus.live_channel].

    The payload is `<id>\\n<event type or empty>\\n<data>`; the id is empty for messages sent
    with [`publish_live`][sidestream.bus.Bus.publish_live] (they have no history).

    Raises:
        ValueError: the payload was not written by this module.
    """
    parts = _text(payload).split("\n", 2)
    if len(parts) != 3:
        raise ValueError(f"not a sidestream live message (expected id, type, data): {payload!r}")
    event_id, event, data = parts
    return Event(data=data, event=event or None, id=event_id or None)


@dataclass(frozen=True)
class _Entry:
    """One stream entry as read back: the event plus the id it was published after."""

    event: Event
    id: tuple[int, int]
    prev: tuple[int, int] | None


def _entry(raw_id: bytes | str, fields: Any) -> _Entry:
    """One stream entry, checked; raises ValueError for one this module could not have written
    (another producer's XADD): an event type with CR, LF or NUL, text that is not UTF-8."""
    if not isinstance(fields, dict):  # a flat [field, value, ...] list, as some parsers return
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    values = {_text(k): _text(v) for k, v in fields.items()}
    event_id = _text(raw_id)
    prev = values.get("prev")
    if "data" not in values:
        raise ValueError("no 'data' field")
    event = values.get("event") or None
    if event is not None and (len(event) > _MAX_EVENT_TYPE or any(c in event for c in "\r\n\0")):
        raise ValueError(f"event type {event[:40]!r} has CR, LF or NUL, or is too long")
    return _Entry(
        event=Event(data=values.get("data", ""), event=event, id=event_id),
        id=parse_cursor(event_id),
        prev=parse_cursor(prev) if prev is not None else None,
    )


@dataclass(frozen=True)
class _Page:
    """Stream entries as read: the valid ones, and the last id read (valid or not)."""

    entries: list[_Entry]
    last_id: tuple[int, int] | None
    read: int
    first_prev: tuple[int, int] | None = None  # what the first entry read was published after
    first_id: str | None = None


def _raw_id(raw_id: bytes | str) -> tuple[int, int] | None:
    try:
        return parse_cursor(_text(raw_id))
    except (ValueError, UnicodeDecodeError):
        return None


def _xread_entries(reply: Any) -> Any:
    """XREAD of one stream: RESP2 gives [[key, entries]], RESP3 gives {key: [entries]}."""
    if not reply:
        return []
    return next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]


def _socket_timeout(client: Any) -> float | None:
    """The read timeout of the client's connections (None: no timeout)."""
    nodes = getattr(client, "nodes_manager", None)
    if nodes is not None:  # a cluster client: every node's connections share its settings
        value = nodes.connection_kwargs.get("socket_timeout", 5.0)
        return None if value is None else float(value)
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return 5.0
    if "socket_timeout" in pool.connection_kwargs:
        value = pool.connection_kwargs["socket_timeout"]
        return None if value is None else float(value)
    # Not given: the connection class's own default (5 s in redis-py 8).
    for cls in pool.connection_class.__mro__:
        parameter = inspect.signature(cls.__init__).parameters.get("socket_timeout")
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return None if parameter.default is None else float(parameter.default)
    return 5.0


# ---------------------------------------------------------------------------------------------
# Operations, written once as plans: generators that yield Redis commands and receive replies
# ---------------------------------------------------------------------------------------------

T = TypeVar("T")
Command: TypeAlias = tuple[Any, ...]
Plan: TypeAlias = Generator[Command, Any, T]


class _BusCore:
    """Key naming, validation and the command plans of both buses."""

    sharded: bool = False
    """True on Redis Cluster: live messages go out with `SPUBLISH` (sharded pub/sub)."""

    def __init__(
        self, socket_timeout: float | None, prefix: str, maxlen: int, max_data_bytes: int
    ) -> None:
        if not isinstance(prefix, str):
            raise InvalidArgument(
                f"prefix must be a str like 'myapp:', not {type(prefix).__name__}"
            )
        if not isinstance(maxlen, int) or maxlen < 1:
            raise InvalidArgument(
                f"maxlen must be an int >= 1 (events kept per channel), not {maxlen!r}"
            )
        if not isinstance(max_data_bytes, int) or max_data_bytes < 1:
            raise InvalidArgument(f"max_data_bytes must be an int >= 1, not {max_data_bytes!r}")
        self.prefix = prefix
        self.maxlen = maxlen
        self.max_data_bytes = max_data_bytes
        self.invalid_entries = 0
        """Stream entries skipped because another producer wrote them badly (logged too)."""
        # Longest single XREAD BLOCK that the client's socket timeout lets finish.
        self._max_block = (
            None
            if socket_timeout is None
            else max(socket_timeout - min(5.0, socket_timeout / 2), 0.001)
        )

    def stream_key(self, channel: str) -> str:
        """The Redis key of the channel's stream, e.g. `sidestream:stream:{orders}`.

        The braces are a Redis Cluster hash tag: a channel's stream and live channel hash to the
        same slot, so the publish script is valid on a cluster too.
        """
        return f"{self.prefix}stream:{{{validate_channel(channel)}}}"

    def live_channel(self, channel: str) -> str:
        """The pub/sub channel announcing the channel's events, e.g. `sidestream:live:{orders}`."""
        return f"{self.prefix}live:{{{validate_channel(channel)}}}"

    def _publish_plan(self, channel: str, data: str, event: str | None) -> Plan[str]:
        key, live = self.stream_key(channel), self.live_channel(channel)
        payload, event_type = _check_event(data, event, self.max_data_bytes)
        args = (1, key, self.maxlen, payload, event_type, live)
        script, sha = _PUBLISH_LUA, _PUBLISH_SHA
        if self.sharded:
            script, sha = _SPUBLISH_LUA, _SPUBLISH_SHA
        try:
            reply = yield ("EVALSHA", sha, *args)
        except NoScriptError:  # first use on this server (or after SCRIPT FLUSH / a restart)
            reply = yield ("EVAL", script, *args)
        return _text(reply)

    def _publish_live_plan(self, channel: str, data: str, event: str | None) -> Plan[int]:
        live = self.live_channel(channel)
        payload, event_type = _check_event(data, event, self.max_data_bytes)
        publish = "SPUBLISH" if self.sharded else "PUBLISH"
        receivers = yield (publish, live, b"\n" + event_type + b"\n" + payload)
        return int(receivers)

    def _page(self, channel: str, raw: Any) -> _Page:
        """Parse entries as read; skip (log and count) those another producer wrote badly."""
        entries: list[_Entry] = []
        last: tuple[int, int] | None = None
        first_prev: tuple[int, int] | None = None
        for index, (raw_id, fields) in enumerate(raw or []):
            last = _raw_id(raw_id) or last
            try:
                entries.append(_entry(raw_id, fields))
                if index == 0:  # only the bus's own entries say truly what they follow
                    first_prev = entries[0].prev
            except (ValueError, UnicodeDecodeError, TypeError) as exc:
                self.invalid_entries += 1
                log.warning(
                    "skipping stream entry %r on %r that sidestream did not write: %s",
                    raw_id,
                    channel,
                    exc,
                )
        first_id = _text(raw[0][0]) if raw else None
        return _Page(entries, last, len(raw or []), first_prev, first_id)

    def _latest_plan(self, channel: str) -> Plan[str]:
        # The newest id, valid entry or not: a cursor after it is the stream's present.
        reply = yield ("XREVRANGE", self.stream_key(channel), "+", "-", "COUNT", 1)
        last = _raw_id(reply[0][0]) if reply else None
        return format_id(last) if last is not None else "0-0"

    def _gap_check(self, channel: str, after: tuple[int, int], page: _Page) -> Plan[None]:
        """Raise HistoryGap if an event after `after` is missing before the first one we read.

        Each entry stores the id it was published after (`prev`). If the first entry we read
        was published after an id newer than the cursor, that newer event was trimmed (or
        deleted). `prev == 0-0` with a non-zero cursor means the stream was created anew after
        the client's cursor (e.g. Redis restarted without persistence): the client cannot know
        what it missed either.
        """
        prev = page.first_prev
        if prev is None:
            return
        if prev > after or (prev == (0, 0) and after != (0, 0)):
            latest = yield from self._latest_plan(channel)
            raise HistoryGap(channel, format_id(after), page.first_id, latest)

    def _ahead_check(self, channel: str, after: tuple[int, int]) -> Plan[None]:
        """Raise CursorAhead if `after` is newer than the stream's newest entry."""
        latest = yield from self._latest_plan(channel)
        if after > parse_cursor(latest):
            raise CursorAhead(channel, format_id(after), None, latest)

    def _history_plan(self, channel: str, after_id: str, limit: int) -> Plan[list[Event]]:
        key, after = self.stream_key(channel), parse_cursor(after_id)
        _check_limit(limit)
        if after == (_U64_MAX, _U64_MAX):  # no entry can follow it
            yield from self._ahead_check(channel, after)
            return []
        entries: list[_Entry] = []
        first: _Page | None = None
        start = after
        while True:  # more pages only when entries were skipped: `limit` valid ones, or the end
            want = limit - len(entries)
            reply = yield ("XRANGE", key, f"({format_id(start)}", "+", "COUNT", want)
            page = self._page(channel, reply)
            if first is None:
                first = page
                if page.read == 0:
                    yield from self._ahead_check(channel, after)
            entries += page.entries
            if page.read < want or page.last_id is None or len(entries) >= limit:
                break
            start = page.last_id
        yield from self._gap_check(channel, after, first)
        return [entry.event for entry in entries]

    def _wait_plan(
        self, channel: str, after_id: str, timeout: float, limit: int
    ) -> Plan[list[Event]]:
        key, after = self.stream_key(channel), parse_cursor(after_id)
        _check_limit(limit)
        if not isinstance(timeout, int | float) or not timeout >= 0:
            raise InvalidArgument(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        # A cursor ahead of the stream would wait for ids that are not coming: say so at once.
        yield from self._ahead_check(channel, after)
        deadline = time.monotonic() + timeout
        remaining = float(timeout)
        checked = False
        while True:
            block = remaining if self._max_block is None else min(remaining, self._max_block)
            block_ms = math.ceil(block * 1000)
            if block_ms >= 1:
                command: Command = ("XREAD", "COUNT", limit, "BLOCK", block_ms, "STREAMS", key)
            else:  # timeout=0: look once without blocking
                command = ("XREAD", "COUNT", limit, "STREAMS", key)
            page = self._page(channel, _xread_entries((yield (*command, format_id(after)))))
            if page.read and not checked:
                checked = True
                yield from self._gap_check(channel, after, page)
            if page.entries:
                return [entry.event for entry in page.entries]
            if page.last_id is not None:  # only entries to skip: wait after them
                after = page.last_id
            remaining = deadline - time.monotonic()
            if remaining <= 0.001:  # not worth another command
                return []


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise InvalidArgument(f"limit must be an int from 1 to {_MAX_LIMIT}, not {limit!r}")


# ---------------------------------------------------------------------------------------------
# The two buses: the same plans, run by a blocking loop or an awaiting one
# ---------------------------------------------------------------------------------------------


def _run(execute: Callable[..., Any], plan: Plan[T]) -> T:
    """Send each command of `plan` with `execute` and feed the reply (or Redis error) back."""
    try:
        command = next(plan)
        while True:
            try:
                reply = execute(*command)
            except ResponseError as exc:
                command = plan.throw(exc)
            else:
                command = plan.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _run_async(execute: Callable[..., Awaitable[Any]], plan: Plan[T]) -> T:
    """`_run`, awaiting each command."""
    try:
        command = next(plan)
        while True:
            try:
                reply = await execute(*command)
            except ResponseError as exc:
                command = plan.throw(exc)
            else:
                command = plan.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Bus(_BusCore):
    """The event bus for blocking code (Flask views, scripts, gunicorn workers).

    Args:
        redis: A client, usually from [`connect`][sidestream.bus.connect].
        prefix: Prepended to every key and pub/sub channel name.
        maxlen: Events kept per channel, approximately (Redis trims whole blocks of entries, so
            a few more may stay).
        max_data_bytes: Largest event data accepted by `publish`, in UTF-8 bytes.

    Raises:
        InvalidArgument: a setting is out of range.
    """

    def __init__(
        self,
        redis: redis.Redis | redis.cluster.RedisCluster,
        *,
        prefix: str = "sidestream:",
        maxlen: int = 1000,
        max_data_bytes: int = 65536,
    ) -> None:
        super().__init__(_socket_timeout(redis), prefix, maxlen, max_data_bytes)
        self.redis = redis
        self.sharded = is_cluster(redis)

    def publish(self, channel: str, data: str, event: str | None = None) -> str:
        """Append an event to the channel's history and announce it live, atomically.

        Args:
            channel: The channel name (see [`validate_channel`][sidestream.bus.validate_channel]).
            data: The payload, any text (JSON, usually).
            event: The SSE event type, or None for the default (`message`).

        Returns:
            The event's id, e.g. `"1700000000000-0"`: its SSE `id:`, and a cursor for
            `history` and `wait`.

        Raises:
            InvalidChannel: bad channel name.
            InvalidEvent: data is not a str, or a bad event type.
            PayloadTooLarge: data is over `max_data_bytes`.
        """
        return _run(self.redis.execute_command, self._publish_plan(channel, data, event))

    def publish_live(self, channel: str, data: str, event: str | None = None) -> int:
        """The plain pub/sub mode: announce an event to current listeners only.

        Nothing is stored: a listener that is not connected at this moment never gets it, and
        the event has no id to resume from. Use it for data that is stale a second later
        (cursor positions, typing indicators); use `publish` for anything a client must not miss.

        Returns:
            How many subscriptions received it (per Redis; one per service process, not per
            browser).
        """
        return _run(self.redis.execute_command, self._publish_live_plan(channel, data, event))

    def history(self, channel: str, after_id: str = "0", limit: int = 100) -> list[Event]:
        """The retained events strictly after `after_id`, oldest first, at most `limit`.

        Raises:
            HistoryGap: events after `after_id` were trimmed: the client missed events it can
                no longer get and must reload its state, then continue from `.latest_id`. A
                cursor of `"0"` counts too: it asks for *everything*, and raises once history
                has been trimmed.
            InvalidCursor: `after_id` is not an event id.
        """
        return _run(self.redis.execute_command, self._history_plan(channel, after_id, limit))

    def wait(self, channel: str, after_id: str, timeout: float, limit: int = 100) -> list[Event]:
        """Block until there are events after `after_id`, or `timeout` seconds pass.

        One `XREAD BLOCK` (per socket-timeout slice, see the module notes): Redis holds the
        request and answers the moment an event is published; no command is sent while waiting.
        Returns at once if events are already there. `timeout=0` looks without blocking.

        Returns:
            The events after `after_id` (at most `limit`), or `[]` when the timeout passed.

        Raises:
            HistoryGap: as for `history`.
            InvalidCursor: `after_id` is not an event id.
            InvalidArgument: `timeout` is negative or `limit` out of range.
        """
        plan = self._wait_plan(channel, after_id, timeout, limit)
        return _run(self.redis.execute_command, plan)

    def latest_id(self, channel: str) -> str:
        """The id of the newest retained event, or `"0-0"` when the channel has none.

        A client that loads its state now and then waits after this id misses nothing.
        """
        return _run(self.redis.execute_command, self._latest_plan(channel))


class AsyncBus(_BusCore):
    """The event bus for asyncio code: [`Bus`][sidestream.bus.Bus]'s methods, awaited.

    Args:
        redis: A client, usually from [`connect_async`][sidestream.bus.connect_async].
        prefix: As for [`Bus`][sidestream.bus.Bus].
        maxlen: As for [`Bus`][sidestream.bus.Bus].
        max_data_bytes: As for [`Bus`][sidestream.bus.Bus].
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
        *,
        prefix: str = "sidestream:",
        maxlen: int = 1000,
        max_data_bytes: int = 65536,
    ) -> None:
        super().__init__(_socket_timeout(redis), prefix, maxlen, max_data_bytes)
        self.redis = redis
        self.sharded = is_cluster(redis)

    async def publish(self, channel: str, data: str, event: str | None = None) -> str:
        """See [`Bus.publish`][sidestream.bus.Bus.publish]."""
        plan = self._publish_plan(channel, data, event)
        return await _run_async(self.redis.execute_command, plan)

    async def publish_live(self, channel: str, data: str, event: str | None = None) -> int:
        """See [`Bus.publish_live`][sidestream.bus.Bus.publish_live]."""
        plan = self._publish_live_plan(channel, data, event)
        return await _run_async(self.redis.execute_command, plan)

    async def history(self, channel: str, after_id: str = "0", limit: int = 100) -> list[Event]:
        """See [`Bus.history`][sidestream.bus.Bus.history]."""
        plan = self._history_plan(channel, after_id, limit)
        return await _run_async(self.redis.execute_command, plan)

    async def wait(
        self, channel: str, after_id: str, timeout: float, limit: int = 100
    ) -> list[Event]:
        """See [`Bus.wait`][sidestream.bus.Bus.wait]. Cancelling the task abandons the wait."""
        plan = self._wait_plan(channel, after_id, timeout, limit)
        return await _run_async(self.redis.execute_command, plan)

    async def latest_id(self, channel: str) -> str:
        """See [`Bus.latest_id`][sidestream.bus.Bus.latest_id]."""
        return await _run_async(self.redis.execute_command, self._latest_plan(channel))
