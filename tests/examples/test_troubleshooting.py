"""docs/troubleshooting.md: each symptom reproduced, then gone with the fix the page gives.

- events in bursts: examples/deploy/nginx.conf with buffering on, then as written;
- a stream that reconnects every few seconds: the /events read timeout below the heartbeat;
- CORS on EventSource: headless Chromium on one origin, the service on another;
- an endless 401 loop: a page that reconnects with the token it had;
- events missing after a deploy: pub/sub alone against the stream the service resumes from;
- published events that never arrive: another prefix, or another Redis database
  (troubleshooting/shared_settings.py is the fix).

The seventh tab that never connects is reproduced by
tests/examples/test_deploy.py::test_http1_the_seventh_tab_waits_for_a_connection.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import pytest
from deploy_stack import buffering_on, run_proxy
from loopback import EXAMPLES
from test_browser_client import Counted

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.service import create_app
from sidestream.sse import Event
from sidestream.testing import StreamReader, serve_asgi, serve_wsgi, wait_until_async
from sidestream.tokens import StreamTokens, authorizer

pytestmark = pytest.mark.slow

HEARTBEAT = 10.0  # seconds: long, so that what arrives arrived because it was sent
BOUND = 3.0  # seconds to wait for an event: well below the heartbeat
NOWHERE = "127.0.0.1:9"  # the API upstream, which these tests do not use


def service_app(prefix: str, url: str = "memory://", **options: Any) -> Any:
    options.setdefault("authorize", allow_everyone)
    options.setdefault("heartbeat", HEARTBEAT)
    return create_app(AsyncBus(connect_async(url), prefix=prefix), **options)


def opened(stream: StreamReader) -> StreamReader:
    """Read the `retry:` and `id:` block the service sends first: the stream is open."""
    stream.read_until(lambda: b"\n\n" in stream.raw)
    return stream


# ---------------------------------------------------------------------------------------------
# Events arrive in bursts: a proxy that buffers


@pytest.mark.parametrize("buffered", [True, False], ids=["buffering-on", "as-written"])
def test_a_buffering_proxy_holds_events_back_and_lets_them_out_in_bursts(
    key_prefix: str, buffered: bool
) -> None:
    bus = Bus(connect("memory://"), prefix=key_prefix)
    published: list[str] = []
    arrivals: list[tuple[str, int]] = []  # each event, and how many were published by then

    def publish(data: str) -> None:
        published.append(data)  # counted first: the event may arrive before publish returns
        bus.publish("news", data)

    def seen(count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(arrivals) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(arrivals) >= count

    with (
        serve_asgi(service_app(key_prefix)) as service,
        run_proxy(
            NOWHERE, (service[7:], service[7:]), edit=buffering_on if buffered else None
        ) as proxy,
        proxy.client(30) as client,
    ):

        def read() -> None:
            with (
                contextlib.suppress(httpx.HTTPError, httpx.StreamError),  # ends at teardown
                client.stream("GET", "/events?channel=news") as response,
            ):
                for event in StreamReader(response).follow():
                    arrivals.append((event.data, len(published)))

        threading.Thread(target=read, daemon=True).start()
        time.sleep(0.5)  # the request is on its way through nginx
        publish("first")
        # Filler events of 1 KB, until the first has arrived (at most 200).
        while not seen(1, BOUND if len(published) == 1 else 0.02) and len(published) < 200:
            publish(f"filler {len(published):03d} " + "x" * 1000)
        if not buffered:
            for n in range(3):  # each waits for the one before it to arrive
                publish(f"after {n}")
                assert seen(len(published), BOUND)
        assert seen(len(published), BOUND) or buffered
    if buffered:
        data, published_by_then = arrivals[0]
        assert data == "first" and published_by_then > 1  # held back while more came ...
        assert [data for data, _ in arrivals] == published[: len(arrivals)]  # ... then a burst
        assert len(arrivals) > 1 and all(count == published_by_then for _, count in arrivals)
    else:
        assert arrivals == [("first", 1), ("after 0", 2), ("after 1", 3), ("after 2", 4)]


# ---------------------------------------------------------------------------------------------
# The stream reconnects every few seconds: an idle timeout shorter than the heartbeat

PROXY_READ = 2  # seconds: the shortened /events read timeout of this experiment


def read_timeout(seconds: int) -> Any:
    def edit(config: str) -> str:
        events = re.search(r"location /events \{.*?\}", config, re.S)
        assert events is not None
        block = events[0].replace("proxy_read_timeout 60s;", f"proxy_read_timeout {seconds}s;")
        return config.replace(events[0], block)

    return edit


@pytest.mark.parametrize("heartbeat", [HEARTBEAT, 0.5], ids=["heartbeat-too-long", "fixed"])
def test_an_idle_timeout_under_the_heartbeat_ends_every_quiet_stream(
    key_prefix: str, heartbeat: float
) -> None:
    bus = Bus(connect("memory://"), prefix=key_prefix)
    app = service_app(key_prefix, heartbeat=heartbeat)
    ended = False
    with (
        serve_asgi(app) as service,
        run_proxy(NOWHERE, (service[7:], service[7:]), edit=read_timeout(PROXY_READ)) as proxy,
        proxy.client(HEARTBEAT + 5) as client,
        client.stream("GET", "/events?channel=news") as response,
    ):
        stream = opened(StreamReader(response))
        quiet_until = time.monotonic() + 3 * PROXY_READ
        try:
            stream.read_until(lambda: time.monotonic() > quiet_until)  # heartbeats, if any
            event_id = bus.publish("news", "still open")
            stream.read_until(lambda: bool(stream.events))
        except (StopIteration, httpx.RemoteProtocolError):  # nginx ended the response
            ended = True
    if heartbeat > PROXY_READ:
        assert ended and stream.events == []  # EventSource would reconnect now, and again
    else:
        assert not ended and stream.events == [Event("still open", id=event_id)]


# ---------------------------------------------------------------------------------------------
# CORS error on EventSource: a page on another origin, and no cors_origins

OPEN = """(url) => new Promise((resolve) => {
  const source = new EventSource(url);
  source.onopen = () => resolve("open");
  source.onerror = () => resolve(source.readyState === EventSource.CLOSED ? "closed" : "retrying");
})"""


@pytest.fixture
def page_origin() -> Iterator[str]:
    page = flask.Flask("page")
    page.get("/")(lambda: "<!doctype html><title>the API's page</title>")
    with serve_wsgi(page) as origin:
        yield origin


@pytest.mark.browser
@pytest.mark.parametrize("listed", [False, True], ids=["no-cors_origins", "listed"])
async def test_eventsource_from_another_origin_needs_cors_origins(
    browser: Any, page_origin: str, key_prefix: str, listed: bool
) -> None:
    origins = [page_origin] if listed else []
    app = service_app(key_prefix, cors_origins=origins)
    with serve_asgi(app) as service:
        url = f"{service}/events?channel=news"
        headers = {"Origin": page_origin}
        with httpx.stream("GET", url, headers=headers, timeout=BOUND) as response:
            allowed = response.headers.get("access-control-allow-origin")
        context = await browser.new_context()
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        await page.goto(page_origin)
        state = await page.evaluate(OPEN, url)
        await context.close()
    if listed:
        assert (allowed, state) == (page_origin, "open")
    else:
        assert (allowed, state) == (None, "closed")  # no header: the browser gives up for good
        assert any("blocked by CORS policy" in text for text in console), console


# ---------------------------------------------------------------------------------------------
# An endless 401 loop: a page that reconnects with the token it already had

KEY = "troubleshooting-test-key-of-32-bytes"
NAIVE = """(url) => {
  window.got = [];
  const connect = () => {
    const source = new EventSource(url);  // the same URL, the same token, every time
    source.onmessage = (event) => window.got.push(event.data);
    source.onerror = () => { source.close(); setTimeout(connect, 300); };
  };
  connect();
}"""


@pytest.mark.browser
async def test_reconnecting_with_an_expired_token_is_refused_every_time(
    browser: Any, page_origin: str, key_prefix: str
) -> None:
    tokens = StreamTokens(KEY)
    app = service_app(key_prefix, authorize=authorizer(tokens), cors_origins=[page_origin])
    counted = Counted(app)
    with serve_asgi(counted) as service:
        token = tokens.issue("alice", subscribe=["news"], lifetime=2)
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(page_origin)
        await page.evaluate(NAIVE, f"{service}/events?channel=news&token={token}")
        # The stream closes at the token's expiry; every reconnect after it is a 401.
        await wait_until_async(lambda: len(counted.streams) >= 6, timeout=20)
        await context.close()
        refused = httpx.get(f"{service}/events?channel=news&token={token}", timeout=BOUND)
    assert refused.status_code == 401 and "expired" in refused.json()["description"]
    assert len(counted.streams) >= 6  # one stream, then a 401 about every 0.3 s, for good


# ---------------------------------------------------------------------------------------------
# Events missing after a deploy: pub/sub alone keeps nothing for a client that was away


@pytest.mark.parametrize("method", ["publish_live", "publish"], ids=["pubsub-only", "streams"])
def test_events_published_during_a_restart_are_missing_without_a_stream(
    key_prefix: str, method: str
) -> None:
    bus = Bus(connect("memory://"), prefix=key_prefix)
    send = getattr(bus, method)
    with (
        serve_asgi(service_app(key_prefix)) as before,
        httpx.stream("GET", f"{before}/events?channel=news", timeout=BOUND) as response,
    ):
        stream = opened(StreamReader(response))
        send("news", "1")
        stream.read_until(lambda: bool(stream.events))
    last_id = stream.parser.last_event_id  # the deploy: the service stops, the client waits
    send("news", "2")  # published while no service was running
    with (
        serve_asgi(service_app(key_prefix)) as after,
        httpx.stream(
            "GET",
            f"{after}/events?channel=news",
            headers={"Last-Event-ID": last_id},
            timeout=BOUND,
        ) as response,
    ):
        stream = opened(StreamReader(response))
        send("news", "3")
        stream.read_until(lambda: any(event.data == "3" for event in stream.events))
    got = [event.data for event in stream.events if event.event is None]
    assert got == (["3"] if method == "publish_live" else ["2", "3"])


# ---------------------------------------------------------------------------------------------
# Published events never arrive: the API and the service on another prefix or database


def timeout_if(expected: bool) -> Any:
    """Nothing arrives (the read times out) when `expected`; else the read must succeed."""
    return pytest.raises(httpx.ReadTimeout) if expected else contextlib.nullcontext()


def db_url(redis_url: str, db: int) -> str:
    return re.sub(r"(/\d+)?$", f"/{db}", redis_url.split("?")[0], count=1)


@pytest.mark.redis
@pytest.mark.parametrize("mismatch", ["prefix", "database", "none"])
def test_the_api_and_the_service_must_share_the_redis_database_and_prefix(
    redis_url: str, mismatch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"troubleshooting-{uuid.uuid4().hex[:8]}:"
    monkeypatch.setenv("REDIS_URL", db_url(redis_url, 0))
    monkeypatch.setenv("SIDESTREAM_PREFIX", prefix)
    monkeypatch.syspath_prepend(str(EXAMPLES / "troubleshooting"))
    settings = importlib.import_module("shared_settings")  # examples/troubleshooting/
    settings = importlib.reload(settings)
    api = settings.api_bus()
    if mismatch == "prefix":
        api = Bus(api.redis, prefix="myapp:" + prefix)
    elif mismatch == "database":
        api = Bus(connect(db_url(redis_url, 1)), prefix=prefix)
    app = create_app(settings.service_bus(), authorize=allow_everyone, heartbeat=HEARTBEAT)
    live: list[str] = []
    replayed: list[str] = []
    try:
        with serve_asgi(app) as service:
            url = f"{service}/events?channel=news"
            with httpx.stream("GET", url, timeout=BOUND) as response:
                stream = opened(StreamReader(response))
                first = api.publish("news", "live")
                # The service's subscription, as `redis-cli PUBSUB CHANNELS` shows it.
                channels = {c.decode() for c in api.redis.pubsub_channels(f"*{prefix}*")}
                with (
                    pytest.raises(httpx.ReadTimeout)
                    if mismatch == "prefix"
                    else contextlib.nullcontext()
                ):
                    stream.read_until(lambda: bool(stream.events))
                live = [event.data for event in stream.events]
            api.publish("news", "while away")
            headers = {"Last-Event-ID": first}
            with httpx.stream("GET", url, headers=headers, timeout=BOUND) as response:
                stream = opened(StreamReader(response))
                with (
                    pytest.raises(httpx.ReadTimeout)
                    if mismatch != "none"
                    else contextlib.nullcontext()
                ):
                    stream.read_until(lambda: any(e.event is None for e in stream.events))
                replayed = [event.data for event in stream.events if event.event is None]
    finally:
        for bus in (api, settings.api_bus(), Bus(connect(db_url(redis_url, 1)), prefix=prefix)):
            bus.redis.delete(bus.stream_key("news"))
    assert channels == {f"{prefix}live:{{news}}"}  # what the service listens on
    expected = {
        "prefix": ([], []),  # another channel name: nothing, ever
        "database": (["live"], []),  # pub/sub ignores the database, the stream does not
        "none": (["live"], ["while away"]),
    }
    assert (live, replayed) == expected[mismatch]
