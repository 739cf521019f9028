"""The Falcon SSE service over real sockets: uvicorn started by examples/falcon_sse/run.sh, real
Redis, events published by the Flask example (examples/redis_pattern/publish_endpoint.py), read
by an HTTP client, by headless Chromium running examples/falcon_sse/client.js, and through nginx
with examples/falcon_sse/nginx.conf.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis
from loopback import EXAMPLES, load_example, serving
from proxy_servers import free_port, run_nginx

from sidestream.bus import Bus, connect
from sidestream.testing import (
    read_events,
    serve_wsgi,
    stop_process,
    wait_for_http,
    wait_until,
    wait_until_async,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SECRET = "e2e-secret"
BIN = Path(sys.executable).parent


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    client_name: str


@dataclass
class Api:
    url: str
    bus: Bus

    def publish(self, channel: str, text: str) -> str:
        """POST to the Flask example, as the app would; returns the event id."""
        response = httpx.post(
            f"{self.url}/channels/{channel}/events", json={"type": None, "data": {"text": text}}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


@pytest.fixture
def api(redis_url: str) -> Iterator[Api]:
    bus = Bus(connect(redis_url))
    app = load_example("redis_pattern/publish_endpoint.py").create_app(bus)
    with serve_wsgi(app) as url:
        yield Api(url, bus)
    bus.redis.close()


@pytest.fixture
def service_module(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # Imported here only for its token helpers; its module-level app reads REDIS_URL.
    monkeypatch.setenv("REDIS_URL", redis_url)
    os.environ.setdefault("STREAM_SECRET", SECRET)
    return load_example("falcon_sse/service.py")


@contextmanager
def run_service(redis_url: str, *, origin: str = "http://127.0.0.1:1") -> Iterator[Service]:
    """examples/falcon_sse/run.sh with one worker on a free loopback port."""
    port = free_port()
    name = f"sidestream-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PORT": str(port),
        "WORKERS": "1",
        "REDIS_URL": f"{redis_url}?client_name={name}",
        "STREAM_SECRET": SECRET,
        "API_ORIGIN": origin,
        "HEARTBEAT": "0.5",
    }
    process = subprocess.Popen(["sh", str(EXAMPLES / "falcon_sse/run.sh")], env=env)
    try:
        wait_for_http(
            f"http://127.0.0.1:{port}/healthz", process, 20, ready=lambda r: r.status_code == 200
        )
        yield Service(f"http://127.0.0.1:{port}", process, name)
    finally:
        stop_process(process, timeout=15)


def token_url(service: Service, module: ModuleType, user: str, ttl: int = 300) -> str:
    token = module.sign(user, int(time.time()) + ttl)
    return f"{service.url}/events?channel=user:{user}&token={token}"


def new_user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def in_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """Start `function` in a thread now; call the result to wait for its return value."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(function()), daemon=True)
    thread.start()

    def join() -> Any:
        thread.join(timeout=30)
        assert box, "the reader thread did not finish"
        return box[0]

    return join


def numsub(client: redis.Redis, bus: Bus, channel: str) -> int:
    return int(client.pubsub_numsub(bus.live_channel(channel))[0][1])


def test_http_client_gets_what_the_flask_api_published_and_resumes_exactly(
    redis_url: str, api: Api, service_module: ModuleType
) -> None:
    user = new_user()
    with run_service(redis_url) as service:
        url = token_url(service, service_module, user)
        streams = numsub_counter(api, f"user:{user}")
        reading = in_thread(lambda: read_events(url, count=3, timeout=10))
        wait_until(lambda: open_streams(service) == 1)  # registered: it gets all that follows
        ids = [api.publish(f"user:{user}", f"n{n}") for n in range(3)]
        first = reading()
        assert first.status == 200
        assert first.headers["content-type"] == "text/event-stream"
        assert [(json.loads(e.data)["text"], e.id) for e in first.events] == [
            ("n0", ids[0]),
            ("n1", ids[1]),
            ("n2", ids[2]),
        ]
        # The client has gone: the service notices at a heartbeat and unsubscribes.
        wait_until(lambda: streams() == 0)
        missed = [api.publish(f"user:{user}", f"m{n}") for n in range(2)]
        again = read_events(url, count=2, timeout=10, headers={"Last-Event-ID": ids[2]})
        assert [(json.loads(e.data)["text"], e.id) for e in again.events] == [
            ("m0", missed[0]),
            ("m1", missed[1]),
        ]
        refused = read_events(url.replace("token=", "token=x"), count=1)
        assert refused.status == 401
        assert refused.events == []


def numsub_counter(api: Api, channel: str) -> Callable[[], int]:
    return lambda: numsub(api.bus.redis, api.bus, channel)


def test_scale_out_two_processes_each_client_gets_every_event_once(
    redis_url: str, api: Api, service_module: ModuleType
) -> None:
    user = new_user()
    channel = f"user:{user}"
    with run_service(redis_url) as one, run_service(redis_url) as two:
        urls = [token_url(s, service_module, user) for s in (one, two, one, two)]
        readers = [
            in_thread(lambda url=url: read_events(url, count=10, timeout=15)) for url in urls
        ]
        wait_until(lambda: numsub(api.bus.redis, api.bus, channel) == 2)  # one per process
        wait_until(lambda: all(open_streams(s) == 2 for s in (one, two)))
        ids = [api.publish(channel, str(n)) for n in range(10)]
        for capture in (reader() for reader in readers):
            assert [e.id for e in capture.events] == ids
            assert [json.loads(e.data)["text"] for e in capture.events] == [
                str(n) for n in range(10)
            ]


def open_streams(service: Service) -> int:
    lines = httpx.get(f"{service.url}/metrics").text.splitlines()
    return int(next(line for line in lines if line.startswith("sidestream_open_streams "))[24:])


class RawStream:
    """An event-stream client on a bare socket (500 of them cost little)."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.sock = socket.create_connection((parsed.host, parsed.port))
        target = parsed.raw_path.decode()
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parsed.host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head

    def close(self) -> None:
        self.sock.close()


def test_500_streams_hold_two_redis_connections(
    redis_url: str, api: Api, service_module: ModuleType
) -> None:
    users = [new_user() for _ in range(500)]
    with run_service(redis_url) as service, ExitStack() as streams:
        for user in users:
            streams.callback(RawStream(token_url(service, service_module, user)).close)
        clients = [
            line for line in api.bus.redis.client_list() if line.get("name") == service.client_name
        ]
        # One pub/sub connection for all 500 streams' channels, one for commands (the start
        # position of each new channel, history on resume).
        assert sorted(int(c["sub"]) > 0 for c in clients) == [False, True]
        assert len(clients) == 2
        pubsub = next(c for c in clients if int(c["sub"]) > 0)
        assert int(pubsub["sub"]) == 500
        metrics = httpx.get(f"{service.url}/metrics").text
        assert "sidestream_open_streams 500\n" in metrics
        assert "sidestream_subscribed_channels 500\n" in metrics


def test_sigterm_drains_streams_and_uvicorn_exits(
    redis_url: str, api: Api, service_module: ModuleType
) -> None:
    user = new_user()
    with run_service(redis_url) as service:
        reading = in_thread(
            lambda: read_events(token_url(service, service_module, user), count=10, timeout=15)
        )
        wait_until(lambda: open_streams(service) == 1)
        api.publish(f"user:{user}", "before")
        wait_until(
            lambda: (
                "sidestream_events_delivered_total 1\n" in httpx.get(f"{service.url}/metrics").text
            )
        )
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        capture = reading()
        # uvicorn shuts down cleanly, then re-raises the signal it caught: -SIGTERM, not 0.
        assert service.process.wait(timeout=10) in (0, -signal.SIGTERM)
        took = time.monotonic() - started
    assert [e.event for e in capture.events] == [None, "close"]
    assert json.loads(capture.events[1].data) == {"reason": "shutdown"}
    assert capture.retry is not None and 3000 <= capture.retry <= 5000
    assert capture.ended  # the server closed it, not the reader
    assert took < 5, f"uvicorn took {took:.1f}s to exit"


def test_nginx_with_the_example_location_passes_events_through(
    redis_url: str, api: Api, service_module: ModuleType
) -> None:
    user = new_user()
    port = free_port()
    with run_service(redis_url) as service:
        config = (EXAMPLES / "falcon_sse/nginx.conf").read_text()
        config = config.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        config = config.replace("127.0.0.1:8001", service.url.removeprefix("http://"))
        with run_nginx(config, port):
            url = token_url(service, service_module, user).replace(
                service.url, f"http://127.0.0.1:{port}"
            )
            reading = in_thread(lambda: read_events(url, count=1, timeout=10))
            wait_until(lambda: open_streams(service) == 1)
            sent = time.monotonic()
            event_id = api.publish(f"user:{user}", "through nginx")
            capture = reading()
            assert [e.id for e in capture.events] == [event_id]
            assert time.monotonic() - sent < 2  # not held back in a proxy buffer


PAGE = b"<!doctype html><title>stream</title><ul id=events></ul>"
SCRIPTS = {"/client.js": "falcon_sse/client.js", "/stream.js": "client/stream.js"}


class Page(BaseHTTPRequestHandler):
    """The page, and the scripts it imports: client.js, and the one client beside it."""

    def do_GET(self) -> None:
        script = SCRIPTS.get(self.path)
        body = (EXAMPLES / script).read_bytes() if script else PAGE
        self.send_response(200)
        self.send_header("Content-Type", "text/javascript" if script else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.browser
async def test_chromium_runs_client_js_and_resumes_each_channel_after_its_token_expires(
    redis_url: str, api: Api, service_module: ModuleType, browser: Any
) -> None:
    user = new_user()
    channels = [f"user:{user}", "announcements"]
    short = service_module.sign(user, int(time.time()) + 2)  # expires while the page is open
    fresh = service_module.sign(user, int(time.time()) + 300)
    with serving(Page) as origin, run_service(redis_url, origin=origin) as service:
        page = await browser.new_page()
        await page.goto(origin)
        await page.add_script_tag(
            type="module",
            content="""
            import { openServiceStream } from "/client.js";
            window.start = (serviceUrl, channels, tokens) => {
              window.received = [];
              window.asked = 0;
              // The second token comes slowly: events published meanwhile must be resumed.
              const getToken = async () => {
                window.asked += 1;
                const token = tokens.shift();
                if (!tokens.length) await new Promise((done) => setTimeout(done, 1500));
                return token;
              };
              const onEvent = (event) => window.received.push(JSON.parse(event.data).text);
              window.stream = openServiceStream(serviceUrl, channels, getToken, { onEvent });
            };""",
        )
        await wait_for_js(page, "window.start !== undefined")
        await page.evaluate(
            "(args) => window.start(...args)", [service.url, channels, [short, fresh]]
        )
        await wait_until_async(lambda: open_streams(service) == 1)
        first = api.publish(channels[0], "one")
        await wait_for_js(page, "window.received.length >= 1")
        # The 2 s token expires: the service closes the stream and the client asks for another.
        await wait_for_js(page, "window.asked === 2", 8000)
        # Published while the page waits for its new token. "announcements" has had no event
        # yet: its position comes from the cursor the stream started with.
        missed = [api.publish(channels[1], f"{user} news"), api.publish(channels[0], "two")]
        await wait_for_js(page, "window.received.length >= 3", 10_000)
        last = api.publish(channels[0], "three")
        await wait_for_js(page, "window.received.length >= 4")
        await page.wait_for_timeout(300)  # room for a duplicate to arrive
        received = await page.evaluate("window.received")
        stored = await page.evaluate(f"sessionStorage.getItem('stream:{','.join(channels)}')")
        await page.evaluate("window.stream.close()")
        await wait_until_async(lambda: open_streams(service) == 0)
    # Every event of each channel exactly once and in order (a replay comes channel by channel;
    # other tests may announce too on this shared Redis: only this test's news counts).
    assert [text for text in received if text.startswith(user)] == [f"{user} news"]
    assert [text for text in received if not text.endswith(" news")] == ["one", "two", "three"]
    positions = json.loads(stored)
    assert positions[channels[0]] == last
    assert id_key(positions[channels[1]]) >= id_key(missed[0])
    assert first < missed[0] < missed[1] < last


async def wait_for_js(page: Any, expression: str, timeout: float = 5000) -> None:
    await page.wait_for_function(expression, timeout=timeout)


def id_key(event_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def test_a_client_that_stops_reading_is_dropped_while_another_keeps_up(
    redis_url: str, key_prefix: str
) -> None:
    from sidestream.access import allow_everyone
    from sidestream.bus import AsyncBus, connect_async
    from sidestream.hub import Hub
    from sidestream.service import create_app
    from sidestream.testing import serve_asgi

    hub = Hub(
        AsyncBus(connect_async(redis_url), prefix=key_prefix),
        queue_size=4,
        cutoff_grace=0.3,
        heartbeat=0.5,
    )
    bus = Bus(connect(redis_url), prefix=key_prefix)
    app = create_app(hub=hub, authorize=allow_everyone, drain_on_signal=False)
    with serve_asgi(app) as url:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window, unread
        stalled.connect(("127.0.0.1", httpx.URL(url).port))
        stalled.sendall(b"GET /events?channel=big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(4096).startswith(b"HTTP/1.1 200")
        reading = in_thread(lambda: read_events(f"{url}/events?channel=big", count=120, timeout=20))
        wait_until(lambda: numsub(bus.redis, bus, "big") == 1 and hub.open_streams == 2)
        ids = [bus.publish("big", f"{n} " + "x" * 30_000) for n in range(120)]
        healthy = reading()
        assert [e.id for e in healthy.events] == ids  # never slowed down by the other one
        wait_until(lambda: hub.stats().cutoffs == 1 and hub.open_streams == 1)
        # Its connection was dropped: after what the kernel had buffered, the socket ends
        # (a FIN, or a reset), instead of waiting for a reader that never comes.
        stalled.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while stalled.recv(1 << 20):
                pass
        stalled.close()
        wait_until(lambda: hub.open_streams == 0)  # the healthy reader has left too
    for key in bus.redis.scan_iter(match=f"{key_prefix}*"):
        bus.redis.delete(key)
