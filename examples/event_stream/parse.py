"""Reading a stream: bytes arrive in chunks cut anywhere; the parser hands back whole
events."""

# --8<-- [start:imports]
from collections.abc import Iterable, Iterator

from sidestream.sse import Event, EventStreamParser

# --8<-- [end:imports]


# --8<-- [start:read_events]
def read_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Events from any byte iterator, e.g. httpx's `response.iter_bytes()`."""
    parser = EventStreamParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    # --8<-- [end:read_events]


# --8<-- [start:chunks]
chunks = [
    b"id: 7\r\nevent: price\r\ndata: caf",  # CRLF line ends
    b"\xc3",  # the first byte of "é"...
    b"\xa9 2.50\xe2\x82\xac\r",  # ...its second byte; a CR...
    b"\n\r\n",  # ...its LF; a blank line: dispatch
    b": heartbeat\n\ndata: next\n\n",  # a comment; an event
]
# --8<-- [end:chunks]

if __name__ == "__main__":
    parser = EventStreamParser()
    for chunk in chunks:
        print(chunk)
        for event in parser.feed(chunk):
            print("  ->", event)
