"""examples/event_stream/: the page "The event-stream format", run as the reader would run it.

client.js runs in real Chromium in tests/test_sse_browser.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopback import EXAMPLES, load_example, serving

from sidestream.sse import Event, EventStreamParser
from sidestream.testing import free_port

CHAPTER = EXAMPLES / "event_stream"


def run(script: str, **env: str) -> bytes:
    """stdout of `python examples/<script>`, run from its folder as the page tells readers to."""
    result = subprocess.run(
        [sys.executable, Path(script).name],
        cwd=EXAMPLES / Path(script).parent,
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_encode_output_is_what_the_page_shows() -> None:
    assert (
        run("event_stream/encode.py") == (EXAMPLES / "event_stream/encode.output.txt").read_bytes()
    )


def test_encode_wire_parses_back_into_the_same_events() -> None:
    example = load_example("event_stream/encode.py")
    hello, note, joined, empty = example.events
    # What a browser reports: the same events, each with the last id in force (42 for the last).
    assert empty == Event("")
    assert EventStreamParser().feed(example.wire) == [hello, note, joined, Event("", id="42")]
    assert example.wire.endswith(b": still here\n\n")


def test_parse_output_is_what_the_page_shows() -> None:
    assert run("event_stream/parse.py") == (EXAMPLES / "event_stream/parse.output.txt").read_bytes()


def test_read_events_completes_events_across_chunk_boundaries() -> None:
    example = load_example("event_stream/parse.py")
    assert list(example.read_events(example.chunks)) == [
        Event("café 2.50€", event="price", id="7"),
        Event("next", id="7"),
    ]
    assert list(example.read_events([])) == []


def test_framing_output_is_what_the_page_shows() -> None:
    assert (
        run("event_stream/framing.py")
        == (EXAMPLES / "event_stream/framing.output.txt").read_bytes()
    )


def test_naive_framing_lets_data_forge_an_event_and_encode_does_not() -> None:
    example = load_example("event_stream/framing.py")
    forged = [("message", "see you at 5"), ("logout", "now")]
    assert example.received(example.by_hand) == forged
    assert example.received(example.by_falcon) == forged
    assert example.received(example.by_encode) == [("message", example.message)]


# --- serve.py ---------------------------------------------------------------------------------


@pytest.fixture
def event_server() -> Iterator[str]:
    serve = load_example("event_stream/serve.py")

    class Quiet(serve.EventStream):  # type: ignore[name-defined,misc]
        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Quiet) as base:
        yield base


def stream(base: str, last_event_id: str | None = None) -> tuple[httpx.Response, list[Event]]:
    read_events = load_example("event_stream/parse.py").read_events
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    with httpx.stream("GET", f"{base}/events", headers=headers, timeout=10) as response:
        return response, list(read_events(response.iter_bytes()))


def test_serve_sends_an_event_stream_with_the_headers_that_matter(event_server: str) -> None:
    response, _ = stream(event_server)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"


def test_serve_resumes_after_the_last_event_id(event_server: str) -> None:
    assert stream(event_server)[1] == [
        Event("update 1", id="1", retry=500),
        Event("update 2", id="2"),
    ]
    assert stream(event_server, "2")[1] == [
        Event("update 3", id="3", retry=500),
        Event("update 4", id="4"),
    ]
    assert stream(event_server, "4")[1] == [Event("update 5", id="5", retry=500)]


def test_serve_answers_204_when_there_is_nothing_more(event_server: str) -> None:
    response, events = stream(event_server, "5")
    assert (response.status_code, events) == (204, [])


def test_serve_starts_over_for_an_unknown_id(event_server: str) -> None:
    assert [e.id for e in stream(event_server, "trimmed long ago")[1]] == ["1", "2"]


def test_serve_serves_the_page_and_the_client(event_server: str) -> None:
    page = httpx.get(f"{event_server}/", timeout=10)
    client = httpx.get(f"{event_server}/client.js", timeout=10)
    assert page.headers["content-type"] == "text/html"
    assert 'import { listen } from "/client.js"' in page.text
    assert client.headers["content-type"] == "text/javascript"  # module scripts require it
    assert client.content == (CHAPTER / "client.js").read_bytes()
    assert httpx.get(f"{event_server}/nope", timeout=10).status_code == 404


def test_serve_runs_as_a_script() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "serve.py"],
        cwd=CHAPTER,
        env={**os.environ, "PORT": str(port)},
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, events = stream(f"http://127.0.0.1:{port}")
                break
            except httpx.ConnectError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve.py did not start"
                time.sleep(0.1)
        assert [e.data for e in events] == ["update 1", "update 2"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
