"""What a subscriber or a channel missed, read from the channel's Redis Stream.

The hub reads history in two moments: when a client joins with a cursor
([`catch_up`][sidestream.replay.catch_up]: the events after it, then the live ones without a gap or
a duplicate), and when its pub/sub session comes back after a loss (what was published meanwhile).
[`History`][sidestream.replay.History] bounds how many such reads are in flight at once, and a
cursor the Stream cannot serve (trimmed, or ahead of it) becomes a `reset` event, never silence.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Final

from sidestream.bus import AsyncBus
from sidestream.cursor import format_cursor, parse_cursor
from sidestream.errors import CursorAhead, HistoryGap
from sidestream.sse import Event, encode
from sidestream.subscriber import Subscriber, event_frame

__all__ = ["History", "catch_up", "reset_event"]

_HISTORY_PAGE: Final = 1000
Key = tuple[int, int]


def reset_event(channel: str, gap: HistoryGap) -> Event:
    """The `reset` event for a channel whose history the client cannot have: it carries the
    latest id, and the reason (`history-gap` or `cursor-ahead`)."""
    data = json.dumps({"channel": channel, "latest_id": gap.latest_id, "reason": gap.reason})
    return Event(data, event="reset", id=gap.latest_id)


def _reset(name: str, gap: HistoryGap, names: Sequence[str], current: dict[str, str]) -> bytes:
    data = json.dumps({"channel": name, "latest_id": gap.latest_id, "reason": gap.reason})
    return encode(Event(data, event="reset", id=format_cursor(names, current)))


class History:
    """Reads of a bus's Streams, at most `commands` at a time (beside the pub/sub connection,
    the process then holds at most this many pooled connections, whatever the number of
    streams)."""

    def __init__(self, bus: AsyncBus, commands: int) -> None:
        self.bus = bus
        self._slots = asyncio.Semaphore(commands)

    async def latest(self, name: str) -> str:
        """The channel's newest id (`0-0` when it has none)."""
        async with self._slots:
            return await self.bus.latest_id(name)

    async def events_after(self, name: str, after: str) -> list[Event]:
        """Every retained event after `after`, page by page (the Stream's MAXLEN bounds it).

        Raises:
            HistoryGap: events after `after` were trimmed (or `CursorAhead`: it is newer than
                the Stream).
        """
        events: list[Event] = []
        while True:
            async with self._slots:
                page = await self.bus.history(name, after_id=after, limit=_HISTORY_PAGE)
            events.extend(page)
            if len(page) < _HISTORY_PAGE:
                return events
            assert page[-1].id is not None
            after = page[-1].id


async def catch_up(
    history: History,
    sub: Subscriber,
    start: dict[str, str],
    positions: dict[str, str],
    *,
    frames: bool,
) -> int:
    """Read what a joining subscriber missed and tell it where it starts
    ([`Subscriber.begin`][sidestream.subscriber.Subscriber.begin]).

    Args:
        history: Where to read.
        sub: The subscriber, already registered for live events.
        start: Per channel, the last id the hub had delivered when `sub` was registered.
        positions: Per channel, the client's cursor (channels without one start now).
        frames: A WebSocket: the replay as text frames.

    Returns:
        How many events (and `reset`s) the replay holds, for the delivery counter.
    """
    names = sub.channels
    current = {name: positions.get(name, start[name]) for name in names}
    multi = len(names) > 1
    head = f"id: {format_cursor(names, current)}\n\n".encode()
    replayed: list[bytes] = []
    replayed_frames: list[str] = []
    skip: dict[str, Key] = {}
    for name, after in positions.items():
        after_key = parse_cursor(after)
        try:
            if after_key == parse_cursor(start[name]):
                skip[name] = after_key  # nothing to replay; live events up to it are old
                continue
            if after_key > parse_cursor(start[name]):
                # Ahead of what this process delivered: the Stream says whether the client
                # saw a newer event (another process was quicker) or the cursor is foreign.
                latest = await history.latest(name)
                if after_key > parse_cursor(latest):
                    raise CursorAhead(name, after, None, latest)
            events = await history.events_after(name, after)
        except HistoryGap as gap:
            current[name] = gap.latest_id
            skip[name] = parse_cursor(gap.latest_id)
            if frames:
                replayed_frames.append(event_frame(name, reset_event(name, gap)))
            else:
                replayed.append(_reset(name, gap, names, current))
            continue
        for event in events:
            assert event.id is not None
            current[name] = event.id
            if frames:
                replayed_frames.append(event_frame(name, event))
                continue
            if multi:
                event = Event(event.data, event.event, format_cursor(names, current))
            replayed.append(encode(event))
        skip[name] = parse_cursor(current[name])
    if frames:
        # Where each channel starts: a WebSocket's "ready" frame.
        sub.begin(skip=skip or None, positions=current, replay=tuple(replayed_frames))
        return len(replayed_frames)
    sub.begin(
        skip=skip or None,
        positions=current if multi else None,
        cursor="" if multi else current[names[0]],
        preamble=head + b"".join(replayed),
    )
    return len(replayed)
