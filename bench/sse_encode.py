"""What sidestream.sse.encode costs per event, beside Falcon's SSEvent and a bare f-string.

Writes bench/results/sse_encode.json. Run: .venv/bin/python bench/sse_encode.py
An event is encoded once and the same bytes go to every subscriber, so this is paid once per
event, not once per connection.
"""

from __future__ import annotations

import json
import os
import platform
import timeit
from importlib.metadata import version
from pathlib import Path

from falcon.asgi import SSEvent

from sidestream.sse import Event, encode

RESULTS = Path(__file__).parent / "results" / "sse_encode.json"
CASES = {
    "json_67B": Event(
        '{"order": 1234, "status": "shipped", "eta": "2025-01-01T10:00:00Z"}',
        event="order",
        id="1718000000000-0",
    ),
    "text_20_lines": Event("a line of text\n" * 20, id="1718000000000-1"),
    "json_4KiB": Event('{"blob": "' + "x" * 4080 + '"}', id="1718000000000-2"),
}


def per_call_ns(func: object, number: int = 10_000, repeat: int = 15) -> float:
    """Best of `repeat` runs, in nanoseconds per call (the least disturbed by other processes)."""
    return round(min(timeit.repeat(func, number=number, repeat=repeat)) / number * 1e9, 1)  # type: ignore[arg-type]


def main() -> None:
    results = {}
    for name, event in CASES.items():
        assert encode(event).count(b"\n\n") == 1  # one event, whatever the data
        results[name] = {
            "data_bytes": len(event.data.encode()),
            "sidestream_encode_ns": per_call_ns(lambda event=event: encode(event)),
            "falcon_ssevent_ns": per_call_ns(
                lambda event=event: SSEvent(
                    text=event.data, event=event.event, event_id=event.id
                ).serialize()
            ),
            "fstring_ns": per_call_ns(
                lambda event=event: f"id: {event.id}\ndata: {event.data}\n\n".encode()
            ),
        }
    report = {
        "what": "ns per event to build its bytes (best of 15 runs of 10000)",
        "note": "falcon_ssevent and fstring do not split multi-line data (they break framing)",
        "python": platform.python_version(),
        "falcon": version("falcon"),
        "machine": platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # a busy machine reads slower
        "cases": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
