r"""The event-stream wire format of Server-Sent Events: an encoder that cannot break framing, and
an incremental parser that follows the WHATWG rules a browser's `EventSource` follows.

A stream is UTF-8 text made of *events*. Each event is a block of `field: value` lines ended by a
blank line; a line starting with `:` is a comment. [`encode`][sidestream.sse.encode] turns an
[`Event`][sidestream.sse.Event] into that block, and
[`EventStreamParser`][sidestream.sse.EventStreamParser] turns bytes back into events, however they
were chunked on the way:

```python
from sidestream.sse import Event, EventStreamParser, comment, encode

wire = encode(Event("line one\nline two", event="note", id="7")) + comment("ping")
print(wire)
#> b'event: note\nid: 7\ndata: line one\ndata: line two\n\n: ping\n\n'

parser = EventStreamParser()
events = [event for byte in wire for event in parser.feed(bytes([byte]))]
print(events)
#> [Event(data='line one\nline two', event='note', id='7', retry=None)]
```
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["Event", "EventStreamParser", "comment", "encode"]


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event.

    Attributes:
        data: The payload. Any text: line breaks (CR, LF or CRLF) are carried as several `data:`
            lines and arrive as LF, which is what a browser reports.
        event: The event type, or `None` for the default type (a browser dispatches it as
            `"message"`). Must not contain CR, LF or NUL, and must not be empty.
        id: The event id. A browser remembers the last one it saw and sends it back in the
            `Last-Event-ID` header when it reconnects. Must not contain CR, LF or NUL. An event the
            parser returns carries the last id in force, like `MessageEvent.lastEventId`, with
            `None` for an empty one.
        retry: Reconnection delay in milliseconds that the client should use from now on; a
            non-negative int. An event the parser returns carries the `retry` sent in its own
            block (the delay in force is
            [`EventStreamParser.retry`][sidestream.sse.EventStreamParser]).
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


def _bad_field(name: str, value: object) -> Exception:
    """The error for an `event` or `id` that `encode` cannot write (built only when needed)."""
    if type(value) is not str:
        return TypeError(f"Event.{name} must be a str or None, not {type(value).__name__}")
    if not value:
        return ValueError(
            "Event.event is empty; a browser would report the type as 'message' anyway, "
            "so use event=None for the default type"
        )
    # The page "The event-stream format" explains why; the message says what to do.
    return ValueError(
        f"Event.{name} {value!r} contains CR, LF or NUL, which a field cannot carry; remove them"
    )


def _bad_retry(retry: object) -> Exception:
    if type(retry) is not int:
        return TypeError(
            f"Event.retry must be an int number of milliseconds, not {type(retry).__name__}"
        )
    return ValueError(f"Event.retry must be >= 0 milliseconds, got {retry}")


def encode(event: Event) -> bytes:
    r"""Encode one event as the UTF-8 bytes of an event-stream block.

    The data is split on every CR, LF and CRLF into one `data:` line each, so no payload can end
    the event early or smuggle in an `id:` or `event:` field. Empty data is sent as one `data:`
    line, which a browser still dispatches (as an event whose `data` is `""`).

    Args:
        event: The event to encode.

    Returns:
        The block, ending with the blank line that dispatches it.

    Raises:
        ValueError: `event.id` or `event.event` contains CR, LF or NUL, `event.event` is empty,
            `event.retry` is negative, or `event.data` is not encodable text (a lone surrogate).
        TypeError: a field has the wrong type (`retry` must be an int, and not a bool).

    ```python
    from sidestream.sse import Event, encode

    print(encode(Event("a\r\nb\rc")))
    #> b'data: a\ndata: b\ndata: c\n\n'
    print(encode(Event("", event="reset", retry=3000)))
    #> b'event: reset\nretry: 3000\ndata:\n\n'
    ```
    """
    # This runs once per published event, before the bytes go to every subscriber: the checks
    # are plain `in` scans, and the slower work (building an error) happens only on failure.
    data = event.data
    if type(data) is not str:
        raise TypeError(f"Event.data must be a str, not {type(data).__name__}")
    if "\r" in data:
        data = data.replace("\r\n", "\n").replace("\r", "\n")
    if "\n" in data:  # (a replace that finds nothing still costs a full scan and more)
        data = data.replace("\n", "\ndata: ")
    head = ""
    name = event.event
    if name is not None:
        if type(name) is not str or not name or "\n" in name or "\r" in name or "\0" in name:
            raise _bad_field("event", name)
        head = f"event: {name}\n"
    id_ = event.id
    if id_ is not None:
        if type(id_) is not str or "\n" in id_ or "\r" in id_ or "\0" in id_:
            raise _bad_field("id", id_)
        head = f"{head}id: {id_}\n" if id_ else f"{head}id:\n"
    retry = event.retry
    if retry is not None:
        if type(retry) is not int or retry < 0:
            raise _bad_retry(retry)
        head = f"{head}retry: {retry}\n"
    text = f"{head}data: {data}\n\n" if data else f"{head}data:\n\n"
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"Event cannot be encoded as UTF-8 ({exc.reason} at {exc.start}): "
            f"it holds a lone surrogate; decode your input with errors='replace' first"
        ) from None


def comment(text: str = "") -> bytes:
    r"""Encode a comment: ignored by every client, but it keeps the connection busy.

    Send one every few seconds as a heartbeat: proxies do not close a connection that carries
    bytes, and writing is how a server notices that a client has gone. Line breaks in `text`
    become several comment lines, so a comment cannot turn into fields.

    Args:
        text: What to say; empty by default.

    Returns:
        The comment lines and a blank line.

    ```python
    from sidestream.sse import comment

    print(comment("ping"))
    #> b': ping\n\n'
    print(comment("two\nlines"))
    #> b': two\n: lines\n\n'
    ```
    """
    if not text:
        return b":\n\n"
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return (": " + text.replace("\n", "\n: ") + "\n\n").encode()


_LINE_END = re.compile(r"\r\n|\r|\n")


def _milliseconds(value: str) -> int | None:
    """A `retry` value if it is only ASCII digits; like Chromium, None if it overflows 64 bits."""
    if value.isascii() and value.isdigit() and len(value.lstrip("0")) <= 20:
        delay = int(value)
        if delay < 2**64:
            return delay
    return None


class EventStreamParser:
    r"""Incremental event-stream parser: feed it bytes as they arrive, get the events they complete.

    It follows the WHATWG HTML standard's "interpret an event stream" rules, as `EventSource`
    does:

    - UTF-8 decoding: a character may be split across chunks, one leading BOM is dropped, invalid
      bytes become U+FFFD;
    - lines end with CR, LF or CRLF, even when the CR and the LF arrive in different chunks;
    - a line splits into field name and value at the first colon, and one space after the colon
      is removed; a line starting with a colon is a comment; unknown fields are ignored;
    - several `data` lines are joined by LF; a block without any `data` line is not dispatched
      (its `id` and `retry` still take effect), while a block with an empty `data:` line is;
    - an `id` containing NUL is ignored; a `retry` is accepted only as ASCII digits.

    Attributes:
        last_event_id: The last event id in force (`""` before any), which a reconnecting client
            sends as `Last-Event-ID`.
        retry: The reconnection time in milliseconds set by the last valid `retry` field, or
            `None` if the stream has not set one.

    ```python
    from sidestream.sse import EventStreamParser

    parser = EventStreamParser()
    print(parser.feed(b"id: 1\nretry: 5000\ndata: first\r"))
    #> []
    print(parser.feed(b"\n\r\ndata: sec"))
    #> [Event(data='first', event=None, id='1', retry=5000)]
    print(parser.feed(b"ond\n\n"))
    #> [Event(data='second', event=None, id='1', retry=None)]
    print(parser.retry, parser.last_event_id)
    #> 5000 1
    ```

    The CR that ended `first` and the LF of the next chunk were one line end, not two, so the
    blank line came only after; `second` carries the id in force, as a browser reports it.
    """

    __slots__ = (
        "_data",
        "_decoder",
        "_event_type",
        "_pending",
        "_retry_in_block",
        "_skip_lf",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        # utf-8-sig drops one leading BOM, also when it arrives split across chunks.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._pending: list[str] = []  # the start of a line whose end has not arrived yet
        self._skip_lf = False  # the last chunk ended with CR: an LF that follows belongs to it
        self._data: list[str] = []
        self._event_type = ""
        self._retry_in_block: int | None = None
        self.last_event_id: str = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next bytes of the stream.

        Args:
            chunk: Any number of bytes, cut anywhere (inside a line, a CRLF or a character).

        Returns:
            The events this chunk completed, in order; often none.
        """
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        events: list[Event] = []
        start = 0
        for match in _LINE_END.finditer(text):
            line = text[start : match.start()]
            if self._pending:
                self._pending.append(line)
                line = "".join(self._pending)
                self._pending.clear()
            self._line(line, events)
            start = match.end()
        if start < len(text):
            self._pending.append(text[start:])
        elif text[-1] == "\r":
            self._skip_lf = True
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        if not line:
            self._dispatch(events)
            return
        name, colon, value = line.partition(":")
        if not name and colon:
            return  # a comment
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and (delay := _milliseconds(value)) is not None:
            self.retry = self._retry_in_block = delay
        # Any other field name is ignored.

    def _dispatch(self, events: list[Event]) -> None:
        if self._data:
            events.append(
                Event(
                    "\n".join(self._data),
                    self._event_type or None,
                    self.last_event_id or None,
                    self._retry_in_block,
                )
            )
            self._data = []
        self._event_type = ""
        self._retry_in_block = None
