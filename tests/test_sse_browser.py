"""Real headless Chromium: its EventSource reports exactly what sidestream.sse sent.

The stream comes from examples/event_stream/serve.py and the page listens with
examples/event_stream/client.js, as a reader would run them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from loopback import load_example, serving

from sidestream.sse import Event, EventStreamParser

pytestmark = pytest.mark.browser

serve = load_example("event_stream/serve.py")
framing = load_example("event_stream/framing.py")


class Recording(serve.EventStream):  # type: ignore[name-defined,misc]
    """serve.py's handler, remembering the Last-Event-ID of each request and serving raw bytes."""

    last_event_ids: list[str | None]
    raw: tuple[bytes, ...] = ()

    def do_GET(self) -> None:
        if self.path == "/events":
            self.last_event_ids.append(self.headers.get("Last-Event-ID"))
        if self.path.startswith("/raw/"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(self.raw[int(self.path.removeprefix("/raw/"))])
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def handler() -> type[Recording]:
    # A fresh subclass per test, so class attributes set by one test never leak into another.
    return type("Handler", (Recording,), {"last_event_ids": []})


@pytest.fixture
def server(handler: type[Recording]) -> Iterator[str]:
    with serving(handler) as base:
        yield base


# Collects what client.js's `listen` reports until `until` arrives (the stream is then closed).
LISTEN = """async ([url, types, until]) => {
    const { listen } = await import("/client.js");
    return await new Promise((resolve) => {
        const received = [];
        const source = listen(url, types, (event) => {
            if (event.type !== until) { received.push(event); return; }
            source.close();
            resolve(received);
        });
    });
}"""


async def listen(browser: Any, base: str, url: str, types: list[str], until: str) -> list[dict]:
    page = await browser.new_page()
    try:
        await page.goto(f"{base}/client.js")  # any page of the origin; the test imports the module
        result: list[dict] = await asyncio.wait_for(
            page.evaluate(LISTEN, [url, sorted({*types, until}), until]), timeout=30
        )
        return result
    finally:
        await page.close()


def as_browser_reports(events: list[Event]) -> list[dict]:
    """The model: what EventSource should report for these events, from the spec alone."""
    reports, last_id = [], ""
    for event in events:
        if event.id is not None:
            last_id = event.id
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        reports.append({"type": event.event or "message", "data": data, "lastEventId": last_id})
    return reports


def short(reports: list[dict]) -> list[dict]:
    """Long data replaced by its length and hash, so a failure prints a readable diff."""

    def fix(data: str) -> str:
        if len(data) < 300:
            return data
        return (
            f"{data[:20]!r}… {len(data)} chars sha256={hashlib.sha256(data.encode()).hexdigest()}"
        )

    return [{**r, "data": fix(r["data"])} if "data" in r else r for r in reports]


HOSTILE = (
    Event("line feed\nin the middle", id="1"),
    Event("carriage return\rin the middle"),
    Event("crlf\r\nin the middle\r\n"),
    Event("\n\r\n\r"),  # nothing but line ends
    Event("nul \0 inside \0"),
    Event("\ufeffa leading BOM"),
    Event("data: looks like a field\nid: 666\nevent: admin\nretry: 1\n\ndata: forged", id="2"),
    Event(": looks like a comment\n:\n"),
    Event("  leading and trailing spaces  "),
    Event("x" * 1_000_000 + " end of a 1 MB line"),
    Event("non-ASCII é ß 中文 🌊 \u2028 \x85 \U0010fffd"),
    Event(""),
    Event("a custom type", event="custom"),
    Event("a type with spaces and ü", event="type with spaces ü"),
    Event("an id with spaces and 🌊", id=" é 🌊 7 "),
    Event("the id reset", id=""),
    Event("after the reset"),
    Event("last", id="end"),
)


async def test_chromium_reports_exactly_what_encode_sent(
    browser: Any, handler: type[Recording], server: str
) -> None:
    handler.history = HOSTILE
    handler.per_connection = len(HOSTILE)
    types = [e.event or "message" for e in HOSTILE] + ["admin"]  # "admin" must never arrive
    received = await listen(browser, server, "/events", types, until="closed")
    assert short(received) == short(as_browser_reports(list(HOSTILE)))
    # It reconnected once, sending the last id; serve.py had nothing more and answered 204.
    assert handler.last_event_ids == [None, "end"]


async def test_the_demo_page_resumes_with_last_event_id(
    browser: Any, handler: type[Recording], server: str
) -> None:
    page = await browser.new_page()
    try:
        await page.goto(f"{server}/")
        log = page.locator("#log")
        await log.filter(has_text='"closed"').wait_for(timeout=30_000)
        lines = [json.loads(line) for line in (await log.text_content() or "").splitlines()]
    finally:
        await page.close()
    assert lines == [
        *as_browser_reports(list(serve.EventStream.history)),
        {"type": "closed"},
    ]
    # Two events per connection, then a reconnect with the last id seen, until the 204.
    assert handler.last_event_ids == [None, "2", "4", "5"]


RAW = (
    b"\xef\xbb\xbfdata: a leading BOM is dropped\n\n",
    b"\xef\xbb\xbf\xef\xbb\xbfdata: a second BOM makes an unknown field\n\ndata: next\n\n",
    b"data: a\r\rdata: b\r\n\r\ndata: c\n\ndata: d\r",
    b"data:no space\ndata:  two spaces\ndata\ndata:\tTAB\ndata: a: b\n\n",
    b"id: 1\ndata: one\n\nid: 2\x00\ndata: an id with NUL is ignored\n\n",
    b"id: 5\nretry: 10\n\ndata: after an id-only block\n\nid\ndata: reset\n\n",
    b"event: x\n\ndata: the type was reset\n\nevent:\ndata: empty type\n\n",
    b"data: invalid \xff utf-8 \xed\xa0\x80 \xf0\x9f\x98 \xc3\n\n",
    b"Data: case\ndata : space\n: comment\nfoo: bar\n data: indented\ndata: ok\n\n",
    b"data\ndata\n\ndata:\n\n",
    b"retry: 1x\nretry: -1\nretry: \xd9\xa1\ndata: bad retries ignored\n\n",
    framing.by_hand,
    framing.by_falcon,
    framing.by_encode,
)
END = b"\n\nevent: end\ndata:\n\n"  # after the blank lines, a marker event the test waits for


def parser_reports(raw: bytes) -> list[dict]:
    return [
        {"type": e.event or "message", "data": e.data, "lastEventId": e.id or ""}
        for e in EventStreamParser().feed(raw)
    ]


async def test_chromium_and_the_parser_agree_on_raw_bytes(
    browser: Any, handler: type[Recording], server: str
) -> None:
    handler.raw = tuple(raw + END for raw in RAW)
    expected, received = [], []
    for n, raw in enumerate(handler.raw):
        *reports, end = parser_reports(raw)
        assert end["type"] == "end"
        types = [r["type"] for r in reports] + ["message", "x", "logout", "admin"]
        expected.append((n, reports))
        received.append((n, await listen(browser, server, f"/raw/{n}", types, until="end")))
    assert received == expected
    # Chromium too reads the naive framings of examples/event_stream/framing.py as two events,
    # the second a forged "logout"; encode's framing stays one message.
    forged = received[RAW.index(framing.by_hand)][1]
    assert [r["type"] for r in forged] == ["message", "logout"]
    assert received[RAW.index(framing.by_falcon)][1] == forged
    assert received[RAW.index(framing.by_encode)][1] == [
        {"type": "message", "data": framing.message, "lastEventId": ""}
    ]
