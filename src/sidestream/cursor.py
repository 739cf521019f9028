"""Where a client is: channel names, stream ids and multi-channel cursors, in one place.

Every position the library hands out or reads back is parsed and formatted here, so the bus (which
reads Redis Streams), the hub (which resumes streams) and the routes (which read `Last-Event-ID`)
agree on one grammar:

- a **channel name**: a letter or digit, then up to 127 of letters, digits and `._:/-`;
- a **stream id**: `<ms>-<seq>` as Redis Streams write it (`1700000000000-0`), or `<ms>` alone,
  each part at most 2**64 - 1; `"0"` is the start of history;
- a **stream cursor**: the id itself for a stream of one channel, and `channel=id` pairs joined by
  commas for a stream of several (`orders=1700000000000-0,user:7=1700000000002-0`), since each
  channel has its own Stream and ids.

```python
from sidestream.cursor import format_cursor, parse_cursor, parse_stream_cursor

print(parse_cursor("1700000000000-3"))
#> (1700000000000, 3)
positions = parse_stream_cursor("a=1-0,b=2-0", ["a", "b"])
print(positions, format_cursor(["b", "a"], positions))
#> {'a': '1-0', 'b': '2-0'} b=2-0,a=1-0
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from sidestream.errors import InvalidChannel, InvalidCursor

__all__ = [
    "CHANNEL_PATTERN",
    "MAX_CURSOR_LENGTH",
    "U64_MAX",
    "format_cursor",
    "format_id",
    "parse_cursor",
    "parse_stream_cursor",
    "validate_channel",
]

CHANNEL_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
"""What a channel name may be: a letter or digit, then up to 127 of letters, digits and `._:/-`."""

U64_MAX: Final = 2**64 - 1
"""The largest part of a stream id."""

MAX_CURSOR_LENGTH: Final = 8192
"""The longest stream cursor accepted (16 channels of 128 characters and ids fit easily)."""

_STREAM_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")


def validate_channel(name: str) -> str:
    """Return `name` if it is a valid channel name, else raise.

    Raises:
        InvalidChannel: `name` does not match `[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}`.
    """
    if not isinstance(name, str) or not CHANNEL_PATTERN.fullmatch(name):
        raise InvalidChannel(
            f"channel name {name!r} is not valid: use 1 to 128 characters, letters, digits and "
            "'._:/-', starting with a letter or digit (for example 'orders' or 'user:42')"
        )
    return name


def parse_cursor(cursor: str) -> tuple[int, int]:
    """Parse a cursor (an event id the bus returned, or `"0"` for the start) into `(ms, seq)`.

    Raises:
        InvalidCursor: `cursor` is not `<ms>-<seq>` or `<ms>` in decimal digits.
    """
    match = _STREAM_ID.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None or int(match[1]) > U64_MAX or int(match[2] or 0) > U64_MAX:
        raise InvalidCursor(
            f"cursor {cursor!r} is not an event id: pass the id of the last event you received "
            "(like '1700000000000-0'), '0' for the start of history, or latest_id() for 'now'"
        )
    return int(match[1]), int(match[2] or 0)


def format_id(ms_seq: tuple[int, int]) -> str:
    """A stream id as Redis writes it: `(1700000000000, 0)` is `"1700000000000-0"`."""
    return f"{ms_seq[0]}-{ms_seq[1]}"


def parse_stream_cursor(text: str, channels: Sequence[str]) -> dict[str, str]:
    """Parse a stream cursor into `{channel: last id}` for the given channels.

    A stream of one channel uses that channel's event id as is (`1700000000000-0`). A stream of
    several channels uses `channel=id` pairs joined by commas
    (`orders=1700000000000-0,user:7=1700000000002-0`), since each channel has its own Stream and
    ids. Pairs naming channels that are not requested are ignored; a requested channel missing
    from the cursor starts from now.

    Raises:
        InvalidCursor: the text is neither form, or an id is malformed.
    """
    if len(text) > MAX_CURSOR_LENGTH:
        raise InvalidCursor(f"cursor is longer than {MAX_CURSOR_LENGTH} characters")
    wanted = set(channels)
    if "=" not in text:
        if len(channels) != 1:
            raise InvalidCursor(
                f"cursor {text!r} is a single id, but the stream has {len(channels)} channels: "
                "send the 'channel=id,channel=id' cursor that the stream's own ids carry"
            )
        parse_cursor(text)
        return {channels[0]: text}
    positions: dict[str, str] = {}
    for pair in text.split(","):
        name, _, event_id = pair.partition("=")
        _validate_cursor_channel(name, text)
        parse_cursor(event_id)
        if name in wanted:
            positions[name] = event_id
    return positions


def _validate_cursor_channel(name: str, text: str) -> None:
    try:
        validate_channel(name)
    except ValueError:
        raise InvalidCursor(
            f"cursor {text!r} is not 'channel=id' pairs joined by commas "
            f"({name!r} is not a channel name)"
        ) from None


def format_cursor(channels: Sequence[str], positions: Mapping[str, str]) -> str:
    """The stream cursor for these positions: the plain id for one channel, pairs for several."""
    if len(channels) == 1:
        return positions[channels[0]]
    return ",".join(f"{name}={positions[name]}" for name in channels)
