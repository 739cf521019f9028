"""What goes over the wire: each event is a block of `field: value` lines and a blank
line."""

# --8<-- [start:imports]
import sys

from sidestream.sse import Event, comment, encode

# --8<-- [end:imports]

# --8<-- [start:events]
events = [
    Event("hello"),  # no type: the browser dispatches a "message"
    Event("first line\nsecond line", event="note", id="41"),
    Event('{"user": "ada"}', event="joined", id="42", retry=5000),
    Event(""),  # empty data is still an event
]
wire = b"".join(encode(event) for event in events) + comment("still here")
# --8<-- [end:events]

if __name__ == "__main__":
    sys.stdout.buffer.write(wire)  # the bytes exactly as they go to the browser
