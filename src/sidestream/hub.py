r"""Per-process fan-out: one Redis subscription for every stream the process serves.

A [`Hub`][sidestream.hub.Hub] holds **one** Redis pub/sub connection, whatever the number of
clients. A channel is subscribed while at least one local client wants it and unsubscribed when the
last one leaves. Each event that arrives is encoded **once** (with
[`sse.encode`][sidestream.sse.encode]) and the same `bytes` object is appended to the queue of
every [`Subscriber`][sidestream.hub.Subscriber] of that channel: no per-client JSON, no per-client
Redis command.

What the hub guarantees, per channel:

- **No gap, no duplicate.** A client joining with a cursor (its `Last-Event-ID`) is registered
  for live events *first*, then its missed events are replayed from the channel's Redis Stream
  ([`AsyncBus.history`][sidestream.bus.AsyncBus.history]), and live events it already got from
  the replay are dropped by id. A cursor older than the retained history gets an explicit
  `reset` event carrying the latest id, never a silent gap.
- **Bounded queues.** A client whose queue fills up (a slow consumer) is cut off: its queue is
  dropped, it gets a final `close` event saying why, and if it still has not finished after
  `cutoff_grace` seconds its connection is aborted. The others are never delayed: the hub only
  ever appends to queues, it never waits for a client.
- **Reconnects.** If the Redis connection drops, the hub reconnects with exponential backoff and
  full jitter, subscribes again, and replays from the Streams what was published meanwhile; the
  ids tell what was already delivered.
- **Poison.** A live message not in the bus's format (another producer writing Redis directly)
  is logged, counted (`poison_messages`) and skipped; it never reaches a subscriber, other channels
  or later events. A live id is a hint, not a fact: one further ahead of Redis's own clock (read
  with `TIME` at connect) than an `XADD` could make it is checked against the channel's Stream,
  which delivers what it really holds; without that, such an id would make every later event
  look already seen. A reader that fails for any reason is started again and replays.
- **Cursors ahead of the Stream** (from another stream, or kept across a Redis that lost its
  data) get the same `reset` event as a gap, with the reason `cursor-ahead`: never silence.
- **Heartbeats.** Every `heartbeat` seconds each subscriber is woken to send a comment, also when
  Redis is down. No subscriber ever waits on Redis: it waits on its own queue, which the hub
  fills.

The service ([`sidestream.service`][sidestream.service]) uses it like this; any ASGI code can:

```python
import asyncio

from sidestream.bus import AsyncBus, connect_async
from sidestream.hub import Hub

with asyncio.Runner() as loop:
    bus = AsyncBus(connect_async("memory://"), prefix="hub-doc:")
    hub = Hub(bus)
    subscriber = loop.run(hub.subscribe(["orders"]))
    loop.run(bus.publish("orders", '{"id": 1}', event="created"))
    chunk = loop.run(subscriber.next_chunk())
    print(chunk.split(b"\n")[0], chunk.split(b"\n")[2])
    #> b'event: created' b'data: {"id": 1}'
    hub.finish(subscriber)
    loop.run(hub.aclose())
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from sidestream.bus import AsyncBus, decode_live
from sidestream.cursor import format_cursor, parse_cursor, parse_stream_cursor, validate_channel
from sidestream.errors import HistoryGap, InvalidArgument, Unavailable
from sidestream.listener import Listener, PubSubListener
from sidestream.replay import History, catch_up, reset_event
from sidestream.sse import Event
from sidestream.subscriber import (
    HEARTBEAT,
    Counters,
    Item,
    Subscriber,
    close_event,
    event_frame,
)

__all__ = [
    "HEARTBEAT",
    "Hub",
    "HubStats",
    "Subscriber",
    "close_event",
    "event_frame",
    "format_cursor",
    "parse_stream_cursor",
]

log = logging.getLogger("sidestream.hub")

_YIELD_EVERY = 64  # let subscribers write after this many messages read in one go
# A live id more than this far ahead of Redis's clock is not taken on trust: the Stream decides.
_AHEAD_SLACK_MS = 2000
Key = tuple[int, int]


class _Channel:
    __slots__ = (
        "_snapshot",
        "joining",
        "last_id",
        "last_key",
        "live",
        "name",
        "primed",
        "ready",
        "stale",
        "subs",
    )

    def __init__(self, name: str, live: str, ready: asyncio.Future[None]) -> None:
        self.name = name
        self.live = live
        self.subs: dict[Subscriber, None] = {}
        self._snapshot: tuple[Subscriber, ...] | None = ()
        self.joining = 0  # subscribers waiting for `ready`
        self.ready = ready  # done once subscribed and the start position is known
        self.primed = False
        self.stale = False  # the connection dropped: replay from last_id when subscribed again
        self.last_key: Key = (0, 0)
        self.last_id = "0-0"

    def snapshot(self) -> tuple[Subscriber, ...]:
        snap = self._snapshot
        if snap is None:
            snap = self._snapshot = tuple(self.subs)
        return snap

    def add(self, sub: Subscriber) -> None:
        self.subs[sub] = None
        self._snapshot = None

    def discard(self, sub: Subscriber) -> None:
        if self.subs.pop(sub, 0) is None:
            self._snapshot = None


@dataclass(frozen=True)
class HubStats:
    """A snapshot of a hub's counters (what `/metrics` reports).

    Attributes:
        open_streams: Subscribers that have not finished.
        channels: Channels subscribed in Redis right now.
        delivered: Events handed to writers since start (one per event per subscriber).
        cutoffs: Slow consumers cut off since start.
        reconnects: Times the Redis pub/sub connection was lost and opened again.
        replayed: Events fetched from the Streams after a reconnect (not per subscriber).
        connected: Whether the pub/sub connection is up right now.
        poison_messages: Live messages skipped because they were not in the bus's format, or
            carried an id the Stream does not hold (another producer writing Redis directly).
        invalid_entries: Stream entries skipped on replay for the same reason.
        reader_restarts: Times the reader failed on something other than the connection and
            was started again.
        reader_alive: Whether the task that reads Redis is running.
    """

    open_streams: int
    channels: int
    delivered: int
    cutoffs: int
    reconnects: int
    replayed: int
    connected: bool
    poison_messages: int = 0
    invalid_entries: int = 0
    reader_restarts: int = 0
    reader_alive: bool = True

    @property
    def can_deliver(self) -> bool:
        """Connected to Redis with a live reader: what `/healthz` answers 200 for."""
        return self.connected and self.reader_alive


class _Host:
    """The hub as its listener sees it ([`ListenerHost`][sidestream.listener.ListenerHost])."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def wanted(self) -> list[str]:
        return [ch.live for ch in self.hub._channels.values()]

    def is_wanted(self, live: str) -> bool:
        return live in self.hub._by_live

    def on_message(self, live: bytes | str, payload: bytes | str) -> Awaitable[None] | None:
        return self.hub._on_message(live, payload)

    async def on_subscribed(self, live: str) -> None:
        await self.hub._on_subscribed(live)

    def on_lost(self) -> None:
        self.hub._on_lost()


class Hub:
    """Fan-out of Redis events to local subscribers over one pub/sub connection.

    Args:
        bus: The bus the events are published on (its prefix names the keys).
        queue_size: Events a subscriber may have queued before it is cut off as a slow
            consumer. The queue holds references to shared objects, so this bounds memory at
            about 8 bytes per slot per subscriber, plus what the events themselves weigh once.
        heartbeat: Seconds between heartbeat comments.
        cutoff_grace: Seconds a closed subscriber may take to finish before `abort` is called.
        redis_commands: How many Redis commands (history, latest id) the hub sends at once,
            beside the pub/sub connection. The process holds at most this many pooled
            connections plus one, whatever the number of streams.
        ready_timeout: Seconds `subscribe` waits for Redis to confirm a new subscription before
            it raises [`Unavailable`][sidestream.errors.Unavailable].
        reconnect_delay: `(first, cap)` of the exponential backoff between connection attempts,
            in seconds; each delay is drawn uniformly between 0 and the current step.
        ping_interval: Seconds of silence on the pub/sub connection after which the hub sends a
            PING; no answer within as long again counts as a lost connection.
    """

    def __init__(
        self,
        bus: AsyncBus,
        *,
        queue_size: int = 256,
        heartbeat: float = 15.0,
        cutoff_grace: float = 5.0,
        redis_commands: int = 1,
        ready_timeout: float = 10.0,
        reconnect_delay: tuple[float, float] = (0.1, 5.0),
        ping_interval: float = 10.0,
    ) -> None:
        for name, value in (
            ("heartbeat", heartbeat),
            ("cutoff_grace", cutoff_grace),
            ("ready_timeout", ready_timeout),
            ("ping_interval", ping_interval),
        ):
            if not isinstance(value, int | float) or not value > 0:
                raise InvalidArgument(f"{name} must be a number of seconds > 0, not {value!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise InvalidArgument(f"queue_size must be an int >= 1, not {queue_size!r}")
        if not isinstance(redis_commands, int) or redis_commands < 1:
            raise InvalidArgument(f"redis_commands must be an int >= 1, not {redis_commands!r}")
        first, cap = reconnect_delay
        if not 0 < first <= cap:
            raise InvalidArgument(
                f"reconnect_delay must be (first, cap), 0 < first <= cap: {reconnect_delay!r}"
            )
        self.bus = bus
        self.queue_size = queue_size
        self.heartbeat = float(heartbeat)
        self.cutoff_grace = float(cutoff_grace)
        self.ready_timeout = float(ready_timeout)
        self.reconnect_delay = (float(first), float(cap))
        self.ping_interval = float(ping_interval)
        self.counters = Counters()
        self.cutoffs = 0
        self.replayed = 0
        self.poison_messages = 0
        self.history = History(bus, redis_commands)
        self._channels: dict[str, _Channel] = {}
        self._by_live: dict[str, _Channel] = {}
        self._subscribers: set[Subscriber] = set()
        self.listener: Listener = PubSubListener(
            bus.redis,
            _Host(self),
            ping_interval=self.ping_interval,
            reconnect_delay=self.reconnect_delay,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.draining = False

    # -- life cycle ----------------------------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._event_loop is None:
            raise RuntimeError("the hub is not started: await hub.start() (or use 'async with')")
        return self._event_loop

    async def start(self) -> None:
        """Start the reader and heartbeat tasks (idempotent; `subscribe` calls it too)."""
        if self._event_loop is not None:
            return
        if self._closing:
            raise RuntimeError("this hub was closed; make a new one")
        self._event_loop = asyncio.get_running_loop()
        self.listener.start()
        self._tasks = [asyncio.create_task(self._tick(), name="sidestream-hub-heartbeat")]

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def begin_drain(self, final: bytes | Callable[[], bytes] = b"") -> None:
        """Close every open stream after what is queued, with `final` last; refuse new ones.

        `final` may be a function called once per stream (to give each its own jittered
        `retry:`). Subscribers still open `cutoff_grace` seconds later are aborted.
        """
        self.draining = True
        for sub in list(self._subscribers):
            sub.close(final() if callable(final) else final, reason="shutdown")
            self._schedule_abort(sub)

    async def drain(self, final: bytes | Callable[[], bytes], timeout: float) -> int:
        """[`begin_drain`][sidestream.hub.Hub.begin_drain], then wait until every stream has
        finished or `timeout` seconds passed.

        Returns:
            How many streams were still open at the timeout (0 when all finished).
        """
        self.begin_drain(final)
        loop = self._event_loop or asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._subscribers and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return len(self._subscribers)

    async def aclose(self) -> None:
        """Stop the tasks and close the pub/sub connection. Open subscribers end at once."""
        self._closing = True
        for sub in list(self._subscribers):
            sub.close()
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.listener.aclose()

    # -- subscribers ---------------------------------------------------------------------------

    @property
    def reconnects(self) -> int:
        """Times the pub/sub connection was lost and opened again (the listener counts)."""
        return self.listener.reconnects

    @property
    def delivered(self) -> int:
        """Events handed to writers (one per event per subscriber)."""
        return self.counters.delivered

    @property
    def open_streams(self) -> int:
        """Subscribers that have not finished."""
        return len(self._subscribers)

    def stats(self) -> HubStats:
        """The counters, as one consistent snapshot."""
        return HubStats(
            open_streams=len(self._subscribers),
            channels=sum(1 for ch in self._channels.values() if ch.primed),
            delivered=self.counters.delivered,
            cutoffs=self.cutoffs,
            reconnects=self.listener.reconnects,
            replayed=self.replayed,
            connected=self.listener.connected,
            poison_messages=self.poison_messages,
            invalid_entries=self.bus.invalid_entries,
            reader_restarts=self.listener.restarts,
            reader_alive=self.listener.alive,
        )

    async def subscribe(
        self, channels: Iterable[str], *, cursor: str | None = None, frames: bool = False
    ) -> Subscriber:
        """Register a subscriber for `channels`, resuming after `cursor` if given.

        Live events are queued for it from the moment it is registered; events after `cursor`
        that it missed are then read from the Streams into its
        [`preamble`][sidestream.hub.Subscriber], and live events the replay already covered are
        dropped by id.

        Args:
            channels: Channel names (validated; duplicates ignored).
            cursor: The client's `Last-Event-ID` (see
                [`parse_stream_cursor`][sidestream.hub.parse_stream_cursor]), or `None` to start
                from now.
            frames: For a WebSocket: replayed events go to
                [`replay`][sidestream.hub.Subscriber] as text frames (read the rest with
                [`next_frames`][sidestream.hub.Subscriber.next_frames]), not to `preamble`.

        Raises:
            InvalidChannel: a bad channel name.
            InvalidCursor: a malformed cursor.
            Unavailable: the hub is draining, or Redis did not confirm the subscription in
                `ready_timeout` seconds.
        """
        names = tuple(dict.fromkeys(validate_channel(name) for name in channels))
        if not names:
            raise InvalidArgument("subscribe to at least one channel")
        positions = parse_stream_cursor(cursor, names) if cursor else {}
        await self.start()
        if self.draining or self._closing:
            raise Unavailable("the service is shutting down: reconnect to another instance")
        sub = Subscriber(
            names,
            loop=self._loop(),
            counters=self.counters,
            queue_size=self.queue_size,
            on_overflow=self._cut_off,
            on_close=self._leave_channels,
        )
        acquired: list[_Channel] = []
        try:
            for name in names:
                acquired.append(await self._acquire(name))
        except BaseException:
            for ch in acquired:
                ch.joining -= 1
                self._maybe_unsubscribe(ch)
            raise
        # Registration and reading the start positions happen with no await in between, so
        # every event after these positions reaches this subscriber's queue.
        start: dict[str, str] = {}
        for ch in acquired:
            ch.joining -= 1
            ch.add(sub)
            start[ch.name] = ch.last_id
        self._subscribers.add(sub)
        try:
            self.counters.delivered += await catch_up(
                self.history, sub, start, positions, frames=frames
            )
        except (RedisError, OSError) as exc:
            self.finish(sub)
            raise Unavailable(f"Redis failed while replaying history ({exc}); try again") from exc
        except BaseException:
            self.finish(sub)
            raise
        return sub

    def finish(self, sub: Subscriber) -> None:
        """Forget a subscriber whose writer has ended (idempotent). Frees its channels."""
        if sub.finished:
            return
        sub.finished = True
        sub.closed = sub.closed or "finished"
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        self._leave_channels(sub)
        self._subscribers.discard(sub)
        sub.discard()

    def expire_at(self, sub: Subscriber, when: float, final: bytes = b"") -> None:
        """Close `sub` with `final` at loop time `when` (an authorizer's expiry)."""
        loop = self._loop()

        def expire() -> None:
            sub.timer = None
            sub.close(final, reason="expired")
            self._schedule_abort(sub)

        if sub.timer is not None:
            sub.timer.cancel()
        sub.timer = loop.call_at(when, expire)

    def _schedule_abort(self, sub: Subscriber) -> None:
        def abort_if_open() -> None:
            if not sub.finished and sub.abort is not None:
                log.info(
                    "aborting a stream that did not finish %.1fs after close", self.cutoff_grace
                )
                sub.abort()

        self._loop().call_later(self.cutoff_grace, abort_if_open)

    def _cut_off(self, sub: Subscriber) -> None:
        self.cutoffs += 1
        log.warning(
            "slow consumer on %s: more than %d events queued, cutting it off",
            ",".join(sub.channels),
            self.queue_size,
        )
        sub.close(close_event("slow-consumer"), drop_queue=True, reason="slow-consumer")
        self._schedule_abort(sub)

    def _leave_channels(self, sub: Subscriber) -> None:
        for name in sub.channels:
            ch = self._channels.get(name)
            if ch is not None and sub in ch.subs:
                ch.discard(sub)
                self._maybe_unsubscribe(ch)

    async def _acquire(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            live = self.bus.live_channel(name)
            ch = _Channel(name, live, self._loop().create_future())
            self._channels[name] = ch
            self._by_live[live] = ch
            ch.joining += 1
            self._spawn(self.listener.subscribe(live))
        else:
            ch.joining += 1
        if not ch.ready.done():
            try:
                await asyncio.wait_for(asyncio.shield(ch.ready), self.ready_timeout)
            except TimeoutError:
                ch.joining -= 1
                self._maybe_unsubscribe(ch)
                raise Unavailable(
                    f"Redis did not confirm the subscription to {name!r} within "
                    f"{self.ready_timeout:g}s; try again shortly"
                ) from None
        return ch

    def _maybe_unsubscribe(self, ch: _Channel) -> None:
        if ch.subs or ch.joining or self._channels.get(ch.name) is not ch:
            return
        del self._channels[ch.name]
        if self._by_live.get(ch.live) is ch:
            del self._by_live[ch.live]
        if not ch.ready.done():
            ch.ready.cancel()
        if not self._closing:
            self._spawn(self.listener.unsubscribe(ch.live))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- what the listener reports -------------------------------------------------------------

    async def _on_subscribed(self, live: str) -> None:
        ch = self._by_live.get(live)
        if ch is None or ch.ready.cancelled():
            return
        if not ch.primed:
            latest = await self.history.latest(ch.name)
            key = parse_cursor(latest)
            if key > ch.last_key:
                ch.last_key, ch.last_id = key, latest
            ch.primed = True
            if not ch.ready.done():
                ch.ready.set_result(None)
        elif ch.stale:
            ch.stale = False
            await self._replay(ch)

    def _on_lost(self) -> None:
        for ch in self._channels.values():
            ch.stale = ch.primed

    async def _replay(self, ch: _Channel) -> None:
        """After a reconnect: deliver what was published on `ch` while we were away."""
        try:
            events = await self.history.events_after(ch.name, ch.last_id)
        except HistoryGap as gap:
            item = Item(ch.name, reset_event(ch.name, gap), parse_cursor(gap.latest_id))
            self._dispatch(ch, item)
            return
        self.replayed += len(events)
        for event in events:
            self._deliver(ch, event)

    def _poison(self, live: bytes | str, why: str) -> None:
        self.poison_messages += 1
        log.warning("skipping a message on %r that sidestream did not publish: %s", live, why)

    def _on_message(self, live: bytes | str, payload: bytes | str) -> Awaitable[None] | None:
        """Deliver one live message, or skip it (logged and counted) if it is not the bus's.

        Returns a check against the Stream for a message whose id is too far ahead to take on
        trust: the listener awaits it before it reads on.
        """
        try:
            ch = self._by_live.get(live.decode() if isinstance(live, bytes) else live)
            if ch is None or not ch.primed:
                return None
            event = decode_live(payload)
            if event.id is None:  # publish_live: no id, no history, no dedupe
                self._dispatch(ch, Item(ch.name, event, None))
                return None
            key = parse_cursor(event.id)
            if key <= ch.last_key:
                return None  # already delivered (a replay and the live message overlapped)
            if self.listener.ahead_of_redis(key):
                return self._check_against_stream(ch, key)
            self._dispatch(ch, Item(ch.name, event, key))
        except (ValueError, TypeError) as exc:  # not the format, a bad id or type, not UTF-8
            self._poison(live, str(exc))
        return None

    async def _check_against_stream(self, ch: _Channel, key: Key) -> None:
        """A live id far ahead of Redis's clock is a hint, not a fact: deliver what the Stream
        holds after the last delivered id, and count the message as poison if its id is not
        among them. Without this, one such id would make every later event look already seen.
        """
        await self._replay(ch)
        if ch.last_key < key:
            self._poison(ch.live, f"id {key[0]}-{key[1]} is not in the stream")

    def _deliver(self, ch: _Channel, event: Event) -> None:
        if event.id is None:  # publish_live: no id, no history, no dedupe
            self._dispatch(ch, Item(ch.name, event, None))
            return
        key = parse_cursor(event.id)
        if key <= ch.last_key:
            return  # already delivered (a replay and the live message overlapped)
        self._dispatch(ch, Item(ch.name, event, key))

    def _dispatch(self, ch: _Channel, item: Item) -> None:
        if item.key is not None:
            ch.last_key, ch.last_id = item.key, item.id or ch.last_id
        for sub in ch.snapshot():
            sub.push(item)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            for sub in list(self._subscribers):
                if sub.closed is None:
                    if sub.gone is not None and sub.gone():
                        sub.close(drop_queue=True, reason="gone")
                        continue
                    sub.ping()
