"""One client's side of the hub: a bounded queue of shared, encoded events, and the renderers.

A [`Subscriber`][sidestream.hub.Subscriber] is made by
[`Hub.subscribe`][sidestream.hub.Hub.subscribe]. The hub appends each event, encoded once
([`Item`][sidestream.subscriber.Item]), to the queue of every subscriber of its channel; the
stream's writer takes them with [`next_chunk`][sidestream.hub.Subscriber.next_chunk] (SSE) or
[`next_frames`][sidestream.hub.Subscriber.next_frames] (WebSocket). A subscriber talks to the hub
only through what it was given: the callbacks for a full queue and for closing, and the shared
[`Counters`][sidestream.subscriber.Counters].
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from sidestream.cursor import format_cursor
from sidestream.sse import Event, comment, encode

__all__ = ["HEARTBEAT", "Counters", "Item", "Subscriber", "close_event", "event_frame"]

HEARTBEAT: bytes = comment("ping")
"""The heartbeat comment sent to an idle stream (`: ping` and a blank line)."""

Key = tuple[int, int]


class Counters:
    """Counters the hub and its subscribers share (what `/metrics` reports from them).

    Attributes:
        delivered: Events handed to writers (one per event per subscriber).
    """

    __slots__ = ("delivered",)

    def __init__(self) -> None:
        self.delivered = 0


def close_event(reason: str, retry: int | None = None) -> bytes:
    """The last event of a stream the server ends: `event: close` with `{"reason": ...}`.

    Reasons used here: `slow-consumer`, `expired`, `shutdown`. A `retry` (milliseconds) tells
    the client how long to wait before it reconnects. It carries no id, so the client's
    `Last-Event-ID` stays the last event it really received.
    """
    return encode(Event(json.dumps({"reason": reason}), event="close", retry=retry))


def event_frame(channel: str, event: Event) -> str:
    """An event as one WebSocket text frame: `{"type": "event", "channel", "id", "event", "data"}`.

    `id` is the event's stream id (`null` for a live-only event), `event` its type (`null` for
    the default). The hub computes it once per event per channel and shares the `str`.
    """
    return json.dumps(
        {
            "type": "event",
            "channel": channel,
            "id": event.id,
            "event": event.event,
            "data": event.data,
        },
        ensure_ascii=False,
    )


class Item:
    """One event of one channel, encoded once and shared by every subscriber's queue (made by the
    hub, read by subscribers)."""

    __slots__ = ("_body", "_frame", "channel", "event", "id", "key", "wire")

    def __init__(self, channel: str, event: Event, key: Key | None) -> None:
        self.channel = channel
        self.event = event
        self.id = event.id
        self.key = key
        self.wire = encode(event)  # with its own id: what a one-channel stream sends
        self._body: bytes | None = None
        self._frame: str | None = None

    @property
    def frame(self) -> str:
        """The event as a WebSocket text frame, made for the first socket that needs it."""
        if self._frame is None:
            self._frame = event_frame(self.channel, self.event)
        return self._frame

    @property
    def body(self) -> bytes:
        """The event without its id (a multi-channel stream writes its own cursor as id)."""
        if self._body is None:
            self._body = encode(Event(self.event.data, self.event.event))
        return self._body


class Subscriber:
    """One client's view of the hub: a bounded queue of encoded events and a way to wait on it.

    Made by [`Hub.subscribe`][sidestream.hub.Hub.subscribe]. The writer loop calls
    [`next_chunk`][sidestream.hub.Subscriber.next_chunk] until it returns `b""`, writes each
    chunk to the client, and calls [`Hub.finish`][sidestream.hub.Hub.finish] at the end.

    Attributes:
        channels: The channels this subscriber reads, in the order asked.
        preamble: The bytes to send first: the `id:` of the client's position (so a client that
            reconnects before any event arrives still resumes from here) and replayed events.
        replay: For a subscriber made with `frames=True` (a WebSocket): the replayed events as
            text frames, to send before those of
            [`next_frames`][sidestream.hub.Subscriber.next_frames].
        closed: `None` while open; then why it was closed: `"slow-consumer"`, `"expired"`,
            `"shutdown"`, `"gone"` (the client left), `"closed"` or `"finished"`.
        abort: Called if the subscriber was closed but its writer has not finished
            `cutoff_grace` seconds later (a client that stopped reading): the service sets it to
            something that drops the connection.
        gone: If set, asked at every heartbeat whether the client has left; the subscriber is
            then closed. (A server may not tell a writer that its client left: sending to a
            closed connection can succeed silently.)
    """

    __slots__ = (
        "_counters",
        "_cursor",
        "_direct",
        "_final",
        "_loop",
        "_on_close",
        "_on_overflow",
        "_ping",
        "_plain",
        "_positions",
        "_queue",
        "_queue_size",
        "_ready",
        "_skip",
        "_waiter",
        "abort",
        "channels",
        "closed",
        "finished",
        "gone",
        "preamble",
        "replay",
        "timer",
    )

    def __init__(
        self,
        channels: tuple[str, ...],
        *,
        loop: asyncio.AbstractEventLoop,
        counters: Counters,
        queue_size: int,
        on_overflow: Callable[[Subscriber], None],
        on_close: Callable[[Subscriber], None],
    ) -> None:
        self._loop = loop
        self._counters = counters
        self._queue_size = queue_size
        self._on_overflow = on_overflow
        self._on_close = on_close
        self.channels = channels
        self._queue: list[Item] = []
        self._waiter: asyncio.Future[None] | None = None
        self._ready: Callable[[], None] | None = None  # a writer that is called, not awaited
        self._ping = False
        self._final = b""
        self._skip: dict[str, Key] | None = None  # catching up: drop live items up to these ids
        self._positions: dict[str, str] | None = None  # several channels: the cursor we write
        self._cursor = ""
        self._direct: Callable[[bytes], bool] | None = None
        self._plain = False  # one channel and no catch-up filter: items go out as they are
        self.closed: str | None = None
        self.finished = False
        self.preamble = b""
        self.replay: tuple[str, ...] = ()
        self.abort: Callable[[], None] | None = None
        self.gone: Callable[[], bool] | None = None
        self.timer: asyncio.TimerHandle | None = None

    @property
    def cursor(self) -> str:
        """The client's position as of the last chunk handed out (what its `Last-Event-ID` is)."""
        if self._positions is not None:
            return format_cursor(self.channels, self._positions)
        return self._cursor

    @property
    def start(self) -> dict[str, str]:
        """A `frames=True` subscriber's position in each channel when it joined (after the
        replay): what a WebSocket client resumes from if no event arrives before it reconnects."""
        return dict(self._positions or {})

    def write_directly(self, write: Callable[[bytes], bool] | None) -> None:
        """Let the hub hand events straight to the connection while the writer is parked.

        `write(chunk)` must either write the chunk to the client at once and return True, or
        do nothing and return False (the socket is not writable: the event is queued and the
        writer woken as usual). Only set it once the stream's first chunk is on the wire.
        """
        self._direct = write

    def listen(self, ready: Callable[[], None]) -> None:
        """Call `ready()` whenever there is something to [`take`][sidestream.hub.Subscriber.take]
        (an event, a heartbeat, the end), instead of waking a task.

        For a server that holds the stream as a connection rather than a task
        ([`sidestream.streamserver`][]): `ready` runs synchronously inside the hub's fan-out,
        so it must only take and write, never wait. With
        [`write_directly`][sidestream.hub.Subscriber.write_directly] too, a plain stream's
        events skip the queue while the connection is writable.
        """
        self._ready = ready
        ready()  # what was queued while the stream was being opened

    def begin(
        self,
        *,
        skip: dict[str, Key] | None,
        positions: dict[str, str] | None = None,
        cursor: str = "",
        preamble: bytes = b"",
        replay: tuple[str, ...] = (),
    ) -> None:
        """Where the subscriber starts, once the hub has read its catch-up.

        Args:
            skip: Per channel, the last id the replay covered: live events up to it are
                dropped (`None`: nothing to drop).
            positions: Several channels (or a WebSocket): each channel's position.
            cursor: One channel: the position.
            preamble: The bytes to send first (the `id:` and the replayed events).
            replay: A WebSocket's replayed events, as text frames.
        """
        self._skip = skip
        self._positions = positions
        self._cursor = cursor
        self._plain = skip is None and positions is None
        self.preamble = preamble
        self.replay = replay

    def ping(self) -> None:
        """Send a heartbeat at the next chance (the hub's timer calls it)."""
        self._ping = True
        self._wake()

    def discard(self) -> None:
        """Drop what is queued and wake the writer (the hub forgets this subscriber)."""
        self._queue = []
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._ready is not None:
            self._ready()

    def push(self, item: Item) -> None:
        # The hot path of the fan-out. A writer parked on an empty queue, with a direct path to
        # a writable socket, gets the shared bytes at once, with no task wake-up at all.
        direct = self._direct
        if direct is not None and self._plain and (self._waiter or self._ready) is not None:
            if direct(item.wire):
                if item.id is not None:
                    self._cursor = item.id
                self._counters.delivered += 1
                return
            if self.closed is not None:
                return  # the writer found the client gone and closed this subscriber
        # Otherwise: one append, one length check, one wake-up.
        queue = self._queue
        queue.append(item)
        if len(queue) > self._queue_size:
            self._on_overflow(self)
            return
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._ready is not None:
            self._ready()

    def close(
        self, final: bytes = b"", *, drop_queue: bool = False, reason: str = "closed"
    ) -> None:
        """End the stream: after what is queued (unless `drop_queue`), send `final`, then stop.

        `reason` becomes [`closed`][sidestream.hub.Subscriber] (a WebSocket maps it to its close
        code).
        """
        if self.closed is not None:
            return
        self.closed = reason
        self._direct = None
        if drop_queue:
            self._queue = []
        self._final = final
        self._on_close(self)
        self._wake()

    async def next_chunk(self) -> bytes:
        """The next bytes to write to the client; `b""` when the stream is over.

        Waits until there is something: queued events (several are joined into one chunk), a
        heartbeat, or the end. It never waits on Redis.
        """
        while (chunk := self.take()) is None:
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return chunk

    def take(self) -> bytes | None:
        """What [`next_chunk`][sidestream.hub.Subscriber.next_chunk] would return now, without
        waiting: the next bytes, `b""` when the stream is over, or `None` for nothing yet."""
        while True:
            queue = self._queue
            if queue:
                self._queue = []
                self._ping = False
                if self._skip is None and self._positions is None:
                    self._counters.delivered += len(queue)
                    if len(queue) == 1:
                        self._cursor = queue[0].id or self._cursor
                        return queue[0].wire
                    for item in reversed(queue):
                        if item.id is not None:
                            self._cursor = item.id
                            break
                    return b"".join([item.wire for item in queue])
                chunk = self._render(queue)
                if chunk:
                    return chunk
                continue
            if self._ping:
                self._ping = False
                return HEARTBEAT
            if self.closed is not None:
                final, self._final = self._final, b""
                return final
            return None

    async def next_frames(self) -> list[str]:
        """The WebSocket counterpart of [`next_chunk`][sidestream.hub.Subscriber.next_chunk]:
        the next events as text frames ([`event_frame`][sidestream.hub.event_frame]), each
        made once per event and shared by every socket; `[]` when the socket must close
        ([`closed`][sidestream.hub.Subscriber] says why).

        Heartbeats are not returned: the server's WebSocket pings keep an idle socket alive.
        """
        while True:
            queue = self._queue
            if queue:
                self._queue = []
                skip = self._skip
                if skip is None:
                    self._counters.delivered += len(queue)
                    return [item.frame for item in queue]
                frames: list[str] = []
                for item in queue:
                    until = skip.get(item.channel) if item.key is not None else None
                    if until is not None:
                        assert item.key is not None
                        if item.key <= until:
                            continue  # already sent by the replay
                        del skip[item.channel]
                    frames.append(item.frame)
                if not skip:
                    self._skip = None
                self._counters.delivered += len(frames)
                if frames:
                    return frames
                continue
            self._ping = False
            if self.closed is not None:
                return []
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _render(self, queue: list[Item]) -> bytes:
        """The slow path: a subscriber still catching up, or one with several channels."""
        out: list[bytes] = []
        skip = self._skip
        positions = self._positions
        for item in queue:
            if skip is not None and item.key is not None:
                until = skip.get(item.channel)
                if until is not None:
                    if item.key <= until:
                        continue  # already sent by the replay
                    del skip[item.channel]
                    if not skip:
                        skip = self._skip = None
                        self._plain = positions is None
            if positions is None:
                if item.id is not None:
                    self._cursor = item.id
                out.append(item.wire)
            elif item.id is None:  # a live-only event: nothing to resume from
                out.append(item.body)
            else:
                positions[item.channel] = item.id
                cursor = format_cursor(self.channels, positions)
                out.append(b"id: " + cursor.encode() + b"\n" + item.body)
        self._counters.delivered += len(out)
        return b"".join(out)
