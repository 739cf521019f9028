"""Why the encoder is hand-written: one line break in the data, and naive framing
breaks."""

# --8<-- [start:imports]
from falcon.asgi import SSEvent

from sidestream.sse import Event, EventStreamParser, encode

# --8<-- [end:imports]

# --8<-- [start:three_ways]
# A chat message, typed by a user:
message = "see you at 5\n\nevent: logout\ndata: now"

by_hand = f"data: {message}\n\n".encode()
by_falcon = SSEvent(text=message).serialize()  # one "data: ", then the text
by_encode = encode(Event(message))  # one data: line per line of text
# --8<-- [end:three_ways]


def received(wire: bytes) -> list[tuple[str, str]]:
    """(type, data) of each event a browser dispatches for these bytes."""
    return [
        (event.event or "message", event.data)
        for event in EventStreamParser().feed(wire)
    ]


if __name__ == "__main__":
    for name, wire in [
        ("f-string", by_hand),
        ("Falcon", by_falcon),
        ("encode", by_encode),
    ]:
        print(f"{name:8} -> {received(wire)}")
