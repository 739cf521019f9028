"""examples/client/stream.js, the one browser client, in Chromium against the stream service.

A Flask API (the page, stream.js, a token endpoint, a state endpoint) and the service under
uvicorn run on two loopback origins, as in production; both count the requests they get, so
every test checks what the client did on the server side: how many requests, and when.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask, request, send_file
from loopback import EXAMPLES, serving

from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.service import StreamApp, create_app
from sidestream.testing import serve_asgi, serve_wsgi, wait_until_async
from sidestream.tokens import StreamTokens, authorizer

pytestmark = pytest.mark.browser

KEY = "browser-client-test-key-of-32-bytes!"
OTHER_KEY = "not-the-services-key-but-32-bytes!!"
RETRY = 2000  # ms, no jitter: the `retry:` every stream of these services sends

PAGE = """<!doctype html><p id="status"></p><ul id="events"></ul>
<script type="module">
import { fromApi, openStream } from "/stream.js";
const query = new URLSearchParams(location.search);
window.resets = [];
window.stream = openStream({
  getUrl: fromApi("/stream-token?" + query),
  onEvent: (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    document.getElementById("events").append(item);
  },
  onReset: async (gap) => {
    window.resets.push(gap);
    await fetch("/state"); // what an app does: fetch its state again
  },
  onError: (error) => {
    document.getElementById("status").textContent = `${error.status} ${error.message}`;
  },
  remember: query.get("remember") ?? "",
  base: 500,
});
</script>"""


class Counted:
    """The service app, counting the requests it gets (time, path, query)."""

    def __init__(self, app: StreamApp) -> None:
        self.app = app
        self.url = ""
        self.requests: list[tuple[float, str, str]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        # path -> (content type, body): pages served on the service's own origin
        self.pages: dict[str, Callable[[], tuple[str, bytes]]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        if scope["type"] == "http":
            query = scope["query_string"].decode()
            self.requests.append((time.monotonic(), scope["path"], query))
            if page := self.pages.get(scope["path"]):
                content_type, body = page()
                headers = [(b"content-type", content_type.encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def begin_drain(self) -> None:
        self.app.begin_drain()

    def drain_now(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.app.begin_drain)

    @property
    def streams(self) -> list[tuple[float, str, str]]:
        return [r for r in self.requests if r[1] == "/events"]

    @property
    def open_streams(self) -> int:
        return self.app.hub.open_streams


@dataclass
class Api:
    """What the test's Flask API does; the test changes it as it goes."""

    service: str = ""
    granted: list[str] = field(default_factory=list)
    logged_in: bool = True
    lifetime: int = 120
    delay: float = 0  # seconds the token endpoint takes
    requests: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)  # path and query string
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> int:
        return self.requests.count(path)


def make_api(api: Api, tokens: StreamTokens) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def count() -> None:
        with api.lock:
            api.requests.append(request.path)
            api.queries.append(request.full_path)

    @app.get("/")
    def page() -> str:
        return PAGE

    @app.get("/stream.js")
    def stream_js() -> Any:
        return send_file(EXAMPLES / "client/stream.js")

    @app.get("/stream-token")
    def stream_token() -> Any:
        if not api.logged_in or "logged-out" in request.args:
            return {"error": "log in first"}, 401
        time.sleep(api.delay)
        channels = request.args.getlist("channel")
        signer = StreamTokens(OTHER_KEY) if "other-key" in request.args else tokens
        token = signer.issue("alice", subscribe=api.granted, lifetime=api.lifetime)
        query = urlencode({"channel": channels, "token": token}, doseq=True)
        return {"url": f"{api.service}/events?{query}"}, 200, {"Cache-Control": "no-store"}

    @app.get("/state")
    def state() -> Any:
        return {"state": "fresh"}

    return app


@dataclass
class Setup:
    api: Api
    origin: str
    prefix: str
    stack: ExitStack

    def service(
        self,
        *,
        retry_after: int = 5,
        pages: dict[str, Callable[[], tuple[str, bytes]]] | None = None,
    ) -> Counted:
        """Start a stream service (several share the embedded Redis and the prefix)."""
        app = create_app(
            AsyncBus(connect_async("memory://"), prefix=self.prefix),
            authorize=authorizer(StreamTokens(KEY)),
            cors_origins=[self.origin],
            retry=RETRY,
            retry_jitter=0,
            retry_after=retry_after,
            drain_on_signal=False,
        )
        counted = Counted(app)
        counted.pages = pages or {}
        counted.url = self.stack.enter_context(serve_asgi(counted))
        return counted

    def bus(self) -> Bus:
        return Bus(connect("memory://"), prefix=self.prefix)


@pytest.fixture
def setup() -> Iterator[Setup]:
    with ExitStack() as stack:
        api = Api()
        origin = stack.enter_context(serve_wsgi(make_api(api, StreamTokens(KEY))))
        yield Setup(api, origin, f"browser-client-{uuid.uuid4().hex[:8]}:", stack)


async def texts(page: Any) -> list[str]:
    return await page.eval_on_selector_all("#events li", "items => items.map(i => i.textContent)")


async def wait_for(page: Any, count: int) -> None:
    expression = f"document.querySelectorAll('#events li').length >= {count}"
    await page.wait_for_function(expression, timeout=20_000)


async def open_streaming(browser: Any, url: str, service: Counted) -> Any:
    """A new page at `url` (the client page), once its one stream is open on `service`."""
    page = await browser.new_page()
    await page.goto(url)
    await wait_until_async(lambda: service.open_streams == 1, timeout=20)
    return page


async def test_a_refusal_stops_the_client_with_the_reason_shown(setup: Setup, browser: Any) -> None:
    service = setup.service()
    setup.api.service, setup.api.granted = service.url, ["news", "keyed", "out"]
    cases = {  # page query -> what the page shows when it stops
        "channel=news&channel=secret": "403 alice may not read secret",
        "channel=keyed&other-key=1": "401 token signature does not verify",
        "channel=out&logged-out=1": "401 log in first",
    }
    pages = {}
    for query in cases:
        pages[query] = await browser.new_page()
        await pages[query].goto(f"{setup.origin}/?{query}")
    for page in pages.values():
        await page.wait_for_function("document.getElementById('status').textContent")
    # Ten seconds: a client that retried, even with backoff, would have come back by now.
    await page.wait_for_timeout(10_000)
    assert {query: await page.text_content("#status") for query, page in pages.items()} == cases

    def requests(channel: str) -> tuple[int, int]:
        tokens = [q for q in setup.api.queries if q.startswith(f"/stream-token?channel={channel}")]
        streams = [q for _, _, q in service.streams if f"channel={channel}" in q]
        return len(tokens), len(streams)

    # 403: one token, the refused EventSource and the fetch that reads why.
    assert requests("news") == (1, 2)
    # 401 from the service: once more with a fresh token, then stop.
    assert requests("keyed") == (2, 4)
    # 401 from the API: no stream request at all.
    assert requests("out") == (1, 0)


async def test_a_draining_service_is_left_after_its_retry_and_nothing_is_lost(
    setup: Setup, browser: Any
) -> None:
    first, second = setup.service(), setup.service()
    setup.api.service, setup.api.granted = first.url, ["news"]
    bus = setup.bus()
    page = await open_streaming(browser, f"{setup.origin}/?channel=news", first)
    bus.publish("news", "one")
    await wait_for(page, 1)

    # A rolling restart: new tokens point at the second instance, the first one drains.
    setup.api.service = second.url
    drained = time.monotonic()
    first.drain_now()
    await wait_until_async(lambda: first.open_streams == 0, timeout=20)
    bus.publish("news", "two")  # while the client is away
    await wait_until_async(lambda: second.open_streams == 1, timeout=30)
    bus.publish("news", "three")
    await wait_for(page, 3)
    await page.wait_for_timeout(500)  # room for a duplicate to arrive
    assert await texts(page) == ["one", "two", "three"]

    after = [when for when, _, _ in first.streams if when > drained]
    # The browser's own retry, after the `retry:` the drain sent (never sooner), then one
    # fetch to learn why it was refused (503); then a fresh token for the second instance.
    assert len(after) == 2
    assert after[0] - drained >= RETRY / 1000
    assert len(second.streams) == 1
    assert "last_event_id=" in second.streams[0][2]


async def test_a_history_gap_calls_on_reset_and_the_page_refetches(
    setup: Setup, browser: Any
) -> None:
    service = setup.service()
    setup.api.service, setup.api.granted = service.url, ["news"]
    bus = setup.bus()
    page = await open_streaming(browser, f"{setup.origin}/?channel=news&remember=news", service)
    bus.publish("news", "one")
    await wait_for(page, 1)
    await page.evaluate("window.stream.close()")
    await wait_until_async(lambda: service.open_streams == 0, timeout=20)

    # While the page is away, more is published than the channel keeps.
    latest = [bus.publish("news", text) for text in ("two", "three", "four")][-1]
    bus.redis.xtrim(bus.stream_key("news"), maxlen=1, approximate=False)
    assert setup.api.count("/state") == 0
    await page.reload()  # resumes from sessionStorage, after "one"
    await page.wait_for_function("window.resets.length === 1", timeout=20_000)
    await wait_until_async(lambda: setup.api.count("/state") == 1, timeout=20)
    assert await page.evaluate("window.resets") == [
        {"channel": "news", "latest_id": latest, "reason": "history-gap"}
    ]
    bus.publish("news", "five")
    await wait_for(page, 1)
    assert await texts(page) == ["five"]  # the reloaded page: nothing replayed but after the gap
    stored = await page.evaluate("JSON.parse(sessionStorage.getItem('news'))")
    assert stored == {"news": await page.evaluate("window.stream.positions.news")}


async def test_each_channel_resumes_after_a_new_token_even_before_its_first_event(
    setup: Setup, browser: Any
) -> None:
    service = setup.service()
    setup.api.service = service.url
    setup.api.granted, setup.api.lifetime = ["a", "b"], 3
    bus = setup.bus()
    page = await open_streaming(browser, f"{setup.origin}/?channel=a&channel=b", service)
    setup.api.lifetime, setup.api.delay = 120, 2  # the next token comes slowly
    # The token expires before either channel had an event: the positions come from the
    # cursor the stream started with, which the `close` event reports.
    await wait_until_async(lambda: len(service.streams) == 1 and service.open_streams == 0, 20)
    missed = [bus.publish("b", "b1"), bus.publish("a", "a1")]  # between two streams
    await wait_until_async(lambda: service.open_streams == 1, timeout=20)
    last = bus.publish("a", "a2")
    await wait_for(page, 3)
    await page.wait_for_timeout(500)  # room for a duplicate to arrive
    received = await texts(page)
    # Each channel in order, once; a replay comes channel by channel, not interleaved.
    assert sorted(received) == ["a1", "a2", "b1"]
    assert [text for text in received if text.startswith("a")] == ["a1", "a2"]
    assert setup.api.count("/stream-token") == 2  # the expired token was replaced once
    positions = await page.evaluate("window.stream.positions")
    assert positions == {"a": last, "b": missed[0]}


async def test_on_one_origin_a_503_is_retried_no_sooner_than_its_retry_after(
    setup: Setup, browser: Any
) -> None:
    # The page, stream.js and the token endpoint on the service's origin, as behind one
    # nginx: the page can read the 503's Retry-After.
    def token() -> tuple[str, bytes]:
        issued = StreamTokens(KEY).issue("alice", subscribe=["news"])
        return "application/json", json.dumps(
            {"url": f"/events?channel=news&token={issued}"}
        ).encode()

    script = (EXAMPLES / "client/stream.js").read_bytes()
    pages = {
        "/": lambda: ("text/html", PAGE.encode()),
        "/stream.js": lambda: ("text/javascript", script),
        "/stream-token": token,
    }
    service = setup.service(retry_after=3, pages=pages)
    page = await open_streaming(browser, f"{service.url}/?channel=news", service)
    drained = time.monotonic()
    service.drain_now()
    await wait_until_async(
        lambda: (
            [path for when, path, _ in service.requests if when > drained][:3]
            == ["/events", "/events", "/stream-token"]
        ),
        timeout=30,
    )
    await page.evaluate("window.stream.close()")
    retried, probed, asked = [when for when, _, _ in service.requests if when > drained][:3]
    assert retried - drained >= RETRY / 1000  # the browser's retry, after the drain's retry:
    assert asked - probed >= 3  # the probe read the 503's Retry-After: 3 s at least


async def test_close_leaves_no_open_request_and_no_timer(setup: Setup, browser: Any) -> None:
    service = setup.service()
    setup.api.service, setup.api.granted = service.url, ["news"]
    page = await open_streaming(browser, f"{setup.origin}/?channel=news", service)
    await page.evaluate("window.stream.close()")
    await wait_until_async(lambda: service.open_streams == 0, timeout=20)

    # Closed while waiting to reconnect: the service refuses (503), the client backs off.
    other = await open_streaming(browser, f"{setup.origin}/?channel=news", service)
    service.drain_now()
    await wait_until_async(lambda: len(service.streams) >= 4, timeout=20)  # retried, probed
    await other.evaluate("window.stream.close()")
    await other.wait_for_timeout(1000)  # a request already on its way arrives
    seen, tokens = len(service.streams), setup.api.count("/stream-token")
    await other.wait_for_timeout(3 * RETRY)  # longer than the waits it had reached
    assert (len(service.streams), setup.api.count("/stream-token")) == (seen, tokens)
    assert service.open_streams == 0
    assert await other.text_content("#status") == ""  # closing is not an error


def scripted(reason: str, connections: list[float]) -> type[BaseHTTPRequestHandler]:
    """An event stream that closes at once with `reason` (and asks for a long `retry:`)."""
    body = f'retry: 60000\nid: 1-0\n\nevent: close\ndata: {{"reason": "{reason}"}}\n\n'

    class Scripted(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            connections.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    return Scripted


async def test_a_slow_consumer_waits_longer_after_each_cut_off(setup: Setup, browser: Any) -> None:
    connections: list[float] = []
    with serving(scripted("slow-consumer", connections)) as url:
        setup.api.service, setup.api.granted = url, ["news"]
        page = await browser.new_page()
        await page.add_init_script("Math.random = () => 0.999;")  # the longest wait each time
        await page.goto(f"{setup.origin}/?channel=news")
        await wait_until_async(lambda: len(connections) >= 4, timeout=40)
        await page.evaluate("window.stream.close()")
    gaps = [later - earlier for earlier, later in itertools.pairwise(connections)]
    # The page's base is 500 ms, doubled per cut-off: 1, 2, then 4 s (longer on a loaded
    # machine, never shorter), not the minute of the stream's `retry:`.
    for gap, least in zip(gaps, (1.0, 2.0, 4.0), strict=False):
        assert gap >= least * 0.999 - 0.01
    assert setup.api.count("/stream-token") == len(connections)  # a fresh token each time
