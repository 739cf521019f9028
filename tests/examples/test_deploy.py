"""examples/deploy/: the production stack, run for real on loopback.

- deploy/nginx.conf runs in Debian's nginx (see tests/deploy_stack.py for what is replaced) in
  front of the stream service, the Flask API under gunicorn, or both;
- deploy/sidestream-events@.service (uvicorn) and deploy/sidestream-streams@.service
  (sidestream.streamserver): systemd checks each, and each one's ExecStart runs two instances
  for a rolling restart in which a client loses no event;
- deploy/one_stream.js and the HTTP/1.1 six-connection limit run in headless Chromium;
- deploy/compose.yaml and deploy/kubernetes.yaml are checked offline against the Compose
  Specification's and Kubernetes' schemas, and their probes and timeouts against the library's
  defaults (no container runs here).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import runpy
import secrets
import select
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
import redis
import uvicorn
import yaml
from deploy_stack import (
    DEPLOY,
    NGINX_CONF,
    STREAMS_UNIT,
    UNIT,
    UNIT_PYTHON,
    UNIT_UVICORN,
    Instance,
    buffering_on,
    connections_to,
    run_instances,
    run_proxy,
    unit_command,
)
from proxy_servers import EXAMPLES_DIR

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.longpoll import DEFAULT_TIMEOUT, MAX_TIMEOUT
from sidestream.service import create_app
from sidestream.sse import Event
from sidestream.testing import StreamReader, serve_asgi, serve_gunicorn, serve_wsgi, wait_until
from sidestream.tokens import StreamTokens

pytestmark = pytest.mark.slow

HEARTBEAT = 10.0  # seconds: long, so that an event that came at all came because it was sent
BOUND = 3.0  # seconds to wait for an event: well below the heartbeat
NOWHERE = "127.0.0.1:9"  # an upstream a test does not use (nothing listens there)
TOKEN_KEY = secrets.token_urlsafe(32)


def read_preamble(stream: StreamReader) -> None:
    """The `retry:` and `id:` lines the service sends first: the stream is open."""
    stream.read_until(lambda: b"\n\n" in stream.raw)


def open_stream(client: httpx.Client, url: str, **headers: str) -> Any:
    return client.stream("GET", url, headers=headers)


# ---------------------------------------------------------------------------------------------
# nginx in front of the service: events pass at once


@pytest.fixture
def service(backend_url: str, key_prefix: str) -> Iterator[tuple[str, Bus]]:
    """The stream service (uvicorn, in this process) and a bus to publish on the same Redis."""
    app = create_app(
        AsyncBus(connect_async(backend_url), prefix=key_prefix),
        authorize=allow_everyone,
        heartbeat=HEARTBEAT,
    )
    with serve_asgi(app) as base:
        yield base.removeprefix("http://"), Bus(connect(backend_url), prefix=key_prefix)


def test_nginx_passes_each_event_on_before_the_next_heartbeat(
    service: tuple[str, Bus],
) -> None:
    address, bus = service
    with run_proxy(NOWHERE, (address, address)) as proxy:
        redirect = httpx.get(f"{proxy.http}/events?channel=news")
        assert redirect.status_code == 301
        assert redirect.headers["location"].startswith("https://")

        with (
            proxy.client(BOUND) as client,
            open_stream(client, f"{proxy.https}/events?channel=news") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            stream = StreamReader(response)
            read_preamble(stream)
            event_id = bus.publish("news", "hello")
            stream.read_until(lambda: bool(stream.events))  # ReadTimeout after BOUND seconds
        wait_until(lambda: "/events" in proxy.streams_log.read_text())  # when the request ends
        log = proxy.streams_log.read_text()
    assert stream.events == [Event("hello", id=event_id)]
    assert b": ping" not in stream.raw  # no heartbeat came first: nothing was held back
    assert '"GET /events" 200' in log and "channel=" not in log  # paths only: tokens stay out


def test_with_buffering_on_nothing_arrives(key_prefix: str) -> None:
    # The control: the same config with buffering on, and the service's X-Accel-Buffering
    # header ignored, holds the whole response (even its headers) in nginx's buffer.
    app = create_app(
        AsyncBus(connect_async("memory://"), prefix=key_prefix),
        authorize=allow_everyone,
        heartbeat=HEARTBEAT,
    )
    bus = Bus(connect("memory://"), prefix=key_prefix)

    with (
        serve_asgi(app) as service,
        run_proxy(NOWHERE, (service[7:], service[7:]), edit=buffering_on) as proxy,
        proxy.client(BOUND) as client,
    ):
        threading.Timer(0.5, bus.publish, ("news", "hello")).start()
        with pytest.raises(httpx.ReadTimeout), open_stream(client, "/events?channel=news"):
            pass


# ---------------------------------------------------------------------------------------------
# The whole site: gunicorn (the API) and the service behind one nginx, on real Redis


@pytest.fixture
def api(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[str]:
    """examples/long_polling/blocking.py under gunicorn with long_polling/gunicorn.conf.py."""
    (tmp_path / "under_test.py").write_text(
        "from blocking import create_app\n"
        "from sidestream.bus import Bus, connect\n"
        f"app = create_app(Bus(connect({redis_url!r}), prefix={key_prefix!r}))\n"
    )
    chapter = EXAMPLES_DIR / "long_polling"
    with serve_gunicorn(
        "under_test:app",
        "-c",
        str(chapter / "gunicorn.conf.py"),
        cwd=tmp_path,
        env={
            "PYTHONPATH": f"{chapter}:{tmp_path}",
            "REDIS_URL": redis_url,  # blocking.py's own module-level app connects too
            "WEB_CONCURRENCY": "1",
            "THREADS": "4",
        },
        ready_path="/health",
    ) as base:
        yield base.removeprefix("http://")


@pytest.mark.redis
def test_the_api_and_the_service_share_one_origin(
    api: str, redis_url: str, key_prefix: str
) -> None:
    app = create_app(
        AsyncBus(connect_async(redis_url), prefix=key_prefix),
        authorize=allow_everyone,
        heartbeat=HEARTBEAT,
    )
    with (
        serve_asgi(app) as service,
        run_proxy(api, (service.removeprefix("http://"),) * 2) as proxy,
        proxy.client(25) as client,
        open_stream(client, "/events?channel=notifications") as response,
    ):
        stream = StreamReader(response)
        read_preamble(stream)
        cursor = client.get("/notifications/poll").json()["last_id"]
        poll: dict[str, Any] = {}
        waiter = threading.Thread(
            target=lambda: poll.update(
                client.get(f"/notifications/poll?last_id={cursor}&timeout=20").json()
            )
        )
        waiter.start()
        posted = client.post("/notifications", json={"data": "hello"})  # the API publishes
        assert posted.status_code == 201
        stream.read_until(lambda: bool(stream.events))
        waiter.join(timeout=25)
    event_id = posted.json()["id"]
    assert stream.events == [Event("hello", id=event_id)]  # through nginx from the service
    assert poll["events"] == [{"id": event_id, "event": None, "data": "hello"}]  # the long poll


# ---------------------------------------------------------------------------------------------
# The systemd unit, and a rolling restart with no lost event


UNITS = [
    pytest.param(UNIT, id="uvicorn"),
    pytest.param(STREAMS_UNIT, id="streamserver"),
]


@pytest.mark.parametrize("unit_file", UNITS)
def test_systemd_accepts_the_unit(tmp_path: Path, unit_file: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # An instance name as systemctl would give it, and binaries that exist on this machine.
    unit = tmp_path / unit_file.name.replace("@.", "@8001.")
    uvicorn = Path(sys.executable).parent / "uvicorn"
    text = unit_file.read_text().replace(UNIT_UVICORN, str(uvicorn))
    unit.write_text(text.replace(UNIT_PYTHON, sys.executable))
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (checked.returncode, checked.stderr) == (0, "")


@pytest.fixture
def channel(redis_url: str) -> Iterator[str]:
    """A fresh channel under the service's default prefix (the unit runs the default app)."""
    name = f"deploy-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(Bus(client).stream_key(name))
    client.close()


def holder(instances: list[Instance]) -> Instance:
    """The instance nginx sends the (only) open stream to."""
    holding = [i for i in instances if connections_to(i.port) == 1]
    assert len(holding) == 1, [connections_to(i.port) for i in instances]
    return holding[0]


@pytest.mark.redis
@pytest.mark.parametrize("unit_file", UNITS)
def test_a_rolling_restart_loses_no_event(redis_url: str, channel: str, unit_file: Path) -> None:
    env = {"REDIS_URL": redis_url, "SIDESTREAM_TOKEN_KEY": TOKEN_KEY}
    token = StreamTokens(TOKEN_KEY).issue("tester", subscribe=[channel], lifetime=300)
    published: list[str] = []
    publishing = threading.Event()

    def publish_continuously() -> None:
        bus = Bus(connect(redis_url))
        n = 0
        while publishing.is_set():
            published.append(bus.publish(channel, str(n)))
            n += 1
            time.sleep(0.02)

    publisher = threading.Thread(target=publish_continuously)
    received: list[Event] = []
    closes: list[str] = []
    served_by: list[Instance] = []
    last_id, drained = "", None
    with (
        run_instances(2, env, unit_file) as instances,
        run_proxy(NOWHERE, (instances[0].address, instances[1].address)) as proxy,
        proxy.client(10) as client,
    ):
        url = f"{proxy.https}/events?channel={channel}&token={token}"
        while len(served_by) < 3:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            with open_stream(client, url, **headers) as response:
                assert response.status_code == 200, response.read()
                stream = StreamReader(response)
                read_preamble(stream)
                served_by.append(holder(instances))
                if not publisher.is_alive() and not published:
                    publishing.set()
                    publisher.start()
                for event in stream.follow():
                    if event.event == "close":
                        closes.append(json.loads(event.data)["reason"])
                        continue
                    received.append(event)
                    if drained is None and len(received) >= 10:
                        drained = served_by[0]
                        drained.terminate()  # `systemctl stop` with KillMode=mixed
                    if len(served_by) == 2 and publishing.is_set() and len(received) >= 40:
                        publishing.clear()
                        publisher.join()
                    if not publishing.is_set() and received[-1].id == published[-1]:
                        break
                else:  # the server ended the stream: reconnect as EventSource does
                    last_id = stream.parser.last_event_id
                    assert stream.parser.retry is not None
                    time.sleep(stream.parser.retry / 1000)
                    continue
                break
        assert drained is not None
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert drained.process.wait(timeout=20) in (0, -signal.SIGTERM)
        drained_log = drained.output()
    assert [event.id for event in received] == published  # every id exactly once, in order
    assert [event.data for event in received] == [str(n) for n in range(len(published))]
    assert closes == ["shutdown"]  # the drained instance said why, with a retry: hint
    assert len(served_by) == 2 and served_by[1] is not served_by[0]  # resumed on the other one
    assert "graceful shutdown exceeded" not in drained_log  # drained, not cut off


# ---------------------------------------------------------------------------------------------
# Browsers: six connections per origin over HTTP/1.1, one stream per tab, HTTP/2


@pytest.fixture
def site(key_prefix: str) -> Iterator[tuple[str, str, Bus]]:
    """A page (the API stand-in) and the service on fakeredis; `host:port` of each and a bus."""
    page = flask.Flask("page")
    page.get("/")(lambda: "<!doctype html><title>sidestream</title><ul id=events></ul>")
    app = create_app(
        AsyncBus(connect_async("memory://"), prefix=key_prefix),
        authorize=allow_everyone,
        heartbeat=HEARTBEAT,
    )
    with serve_wsgi(page) as page_base, serve_asgi(app) as service_base:
        yield (
            page_base.removeprefix("http://"),
            service_base.removeprefix("http://"),
            Bus(connect("memory://"), prefix=key_prefix),
        )


OPEN_ONE = """(channel) => {
  window.got = [];
  window.source = new EventSource(`/events?channel=${channel}`);
  window.source.onmessage = (event) => window.got.push(event.data);
}"""


async def open_tabs(browser: Any, origin: str, count: int) -> tuple[Any, list[Any]]:
    context = await browser.new_context(ignore_https_errors=True)
    tabs = []
    for _ in range(count):
        tab = await context.new_page()
        await tab.goto(f"{origin}/")
        tabs.append(tab)
    return context, tabs


async def ready_state(tab: Any) -> int:
    return int(await tab.evaluate("window.source.readyState"))


async def test_http1_the_seventh_tab_waits_for_a_connection(
    browser: Any, site: tuple[str, str, Bus]
) -> None:
    page, service, bus = site
    with run_proxy(page, (service, service), http2=False) as proxy:
        context, tabs = await open_tabs(browser, proxy.https, 7)
        assert (
            await tabs[0].evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
            == "http/1.1"
        )
        for number, tab in enumerate(tabs[:6]):
            await tab.evaluate(OPEN_ONE, f"tab{number}")
            await tab.wait_for_function("window.source.readyState === EventSource.OPEN")
        # The seventh tab asks for a page, then opens its stream.
        await tabs[6].evaluate("() => { fetch('/').then(() => { window.fetched = true; }); }")
        await tabs[6].evaluate(OPEN_ONE, "tab6")
        for number in range(7):
            bus.publish(f"tab{number}", f"for tab {number}")
        for tab in tabs[:6]:
            await tab.wait_for_function("window.got.length === 1")
        await asyncio.sleep(1)
        assert await ready_state(tabs[6]) == 0  # CONNECTING: queued behind the six streams
        assert await tabs[6].evaluate("window.got") == []
        assert await tabs[6].evaluate("window.fetched === undefined")  # so is an ordinary request

        await tabs[0].close()  # one tab closes: its connection serves the seventh tab
        await tabs[6].wait_for_function("window.fetched === true")
        await tabs[6].wait_for_function("window.source.readyState === EventSource.OPEN")
        bus.publish("tab6", "now")
        await tabs[6].wait_for_function("window.got.length === 1")
        assert await tabs[6].evaluate("window.got") == ["now"]
        await context.close()


async def test_http1_one_stream_carries_every_channel_of_a_page(
    browser: Any, site: tuple[str, str, Bus]
) -> None:
    page, service, bus = site
    channels = [f"ch{number}" for number in range(8)]
    with run_proxy(page, (service, service), http2=False) as proxy:
        context, (tab,) = await open_tabs(browser, proxy.https, 1)
        await tab.add_script_tag(content=(DEPLOY / "one_stream.js").read_text())
        await tab.evaluate(
            """(channels) => {
              window.got = [];
              const handlers = {};
              for (const name of channels) handlers[name] = (data) => window.got.push(data);
              window.source = openOneStream(channels, handlers);
              window.source.addEventListener(
                channels.at(-1), (event) => { window.lastId = event.lastEventId; });
            }""",
            channels,
        )
        await tab.wait_for_function("window.source.readyState === EventSource.OPEN")
        for name in channels:  # each channel's events under their own type
            bus.publish(name, json.dumps({"from": name}), event=name)
        await tab.wait_for_function(f"window.got.length === {len(channels)}")
        assert await tab.evaluate("window.got") == [{"from": name} for name in channels]
        # The last id holds a position in every channel: a reconnect resumes them all.
        last_id = await tab.evaluate("window.lastId")
        assert [pair.split("=")[0] for pair in last_id.split(",")] == channels
        await context.close()


async def test_http2_every_tab_streams_over_one_connection(
    browser: Any, site: tuple[str, str, Bus]
) -> None:
    page, service, bus = site
    with run_proxy(page, (service, service)) as proxy:
        context, tabs = await open_tabs(browser, proxy.https, 10)
        assert (
            await tabs[0].evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
            == "h2"
        )
        for number, tab in enumerate(tabs):
            await tab.evaluate(OPEN_ONE, f"tab{number}")
        for tab in tabs:
            await tab.wait_for_function("window.source.readyState === EventSource.OPEN")
        for number in range(len(tabs)):
            bus.publish(f"tab{number}", f"for tab {number}")
        for number, tab in enumerate(tabs):
            await tab.wait_for_function("window.got.length === 1")
            assert await tab.evaluate("window.got") == [f"for tab {number}"]
        await context.close()


# ---------------------------------------------------------------------------------------------
# nginx in front of /ws: the upgrade passes, and the service's pings keep an idle socket open

UVICORN_PING = inspect.signature(uvicorn.Config).parameters["ws_ping_interval"].default


def location(config: str, name: str) -> str:
    """The body of one `location` block of the config."""
    found = re.search(rf"\n    location {re.escape(name)} \{{\n(.*?)\n    \}}", config, re.S)
    assert found is not None, f"no location {name} in the config"
    return found.group(1)


def seconds(block: str, directive: str) -> float:
    """The value of `directive 60s;` in a block of the config (the same in each server)."""
    found = re.findall(rf"^\s*{directive} (\d+)s;", block, re.M)
    assert len(set(found)) == 1, (directive, found)
    return float(found[0])


def test_each_read_timeout_outlasts_what_keeps_the_connection_busy() -> None:
    config = NGINX_CONF.read_text()
    heartbeat = inspect.signature(create_app).parameters["heartbeat"].default
    assert "--ws-ping-interval" not in UNIT.read_text()  # the unit runs uvicorn's default
    assert seconds(location(config, "= /ws"), "proxy_read_timeout") > UVICORN_PING
    assert seconds(location(config, "/events"), "proxy_read_timeout") > heartbeat


@pytest.fixture
def public_service(key_prefix: str) -> Iterator[Any]:
    """Start the service (public channels, fakeredis) with given uvicorn options; a bus too."""

    @contextlib.contextmanager
    def start(**uvicorn_options: Any) -> Iterator[tuple[str, Bus]]:
        app = create_app(
            AsyncBus(connect_async("memory://"), prefix=key_prefix),
            authorize=allow_everyone,
            heartbeat=HEARTBEAT,
        )
        with serve_asgi(app, **uvicorn_options) as base:
            yield base.removeprefix("http://"), Bus(connect("memory://"), prefix=key_prefix)

    return start


@pytest.mark.parametrize("pings", [True, False], ids=["pings", "no-pings-control"])
async def test_a_websocket_through_nginx_stays_open_while_the_service_pings(
    public_service: Any, pings: bool
) -> None:
    # The config's ratio, on a shorter clock: nginx's /ws read timeout is 60 s against uvicorn's
    # 20 s ping; here 3 s against a 1 s ping. Idle for 2.5 read timeouts, then an event.
    ping = 1.0
    read_timeout = seconds(location(NGINX_CONF.read_text(), "= /ws"), "proxy_read_timeout")
    read_timeout *= ping / UVICORN_PING

    def shorter(config: str) -> str:
        ws = location(config, "= /ws")
        return config.replace(
            ws, re.sub(r"proxy_read_timeout \d+s;", f"proxy_read_timeout {read_timeout:g}s;", ws)
        )

    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    options = {"ws_ping_interval": ping, "ws_ping_timeout": ping} if pings else {}
    options.setdefault("ws_ping_interval", None)  # the control: the service never pings
    with (
        public_service(**options) as (address, bus),
        run_proxy(NOWHERE, (address, address), edit=shorter) as proxy,
    ):
        trust = ssl.create_default_context(cafile=str(proxy.cert))
        url = f"{proxy.https.replace('https', 'wss')}/ws?channel=news"
        # No pings from the client either: only the service's may keep the socket open.
        # A page of the same origin may open it: the service saw the Host the browser sent.
        origin: Any = proxy.https
        async with ws_connect(url, ssl=trust, ping_interval=None, proxy=None, origin=origin) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), BOUND))["type"] == "ready"
            await asyncio.sleep(2.5 * read_timeout)
            event_id = bus.publish("news", "hello")
            if pings:
                frame = json.loads(await asyncio.wait_for(ws.recv(), BOUND))
                assert (frame["type"], frame["id"], frame["data"]) == ("event", event_id, "hello")
            else:
                with pytest.raises(ConnectionClosed):  # nginx cut it after its read timeout
                    await asyncio.wait_for(ws.recv(), BOUND)
        wait_until(lambda: "/ws" in proxy.streams_log.read_text())
        log = proxy.streams_log.read_text()
    assert '"GET /ws" 101' in log and "channel=" not in log


# ---------------------------------------------------------------------------------------------
# Slow and silent clients: uvicorn waits for them forever, nginx's timeouts close them


class RawClient:
    """A TCP (or TLS) connection that sends nothing, or its request head one byte a second."""

    def __init__(self, address: str, trust: ssl.SSLContext | None, head: bytes = b"") -> None:
        host, port = address.split(":")
        sock = socket.create_connection((host, int(port)), timeout=BOUND)
        self.sock = trust.wrap_socket(sock, server_hostname=host) if trust else sock
        self.sock.setblocking(False)
        self.head = head
        self.opened = time.monotonic()
        self.closed_after: float | None = None

    def step(self) -> None:
        """Send the next byte of the head (if any); note when the server has closed."""
        if self.closed_after is not None:
            return
        try:
            if self.head:
                self.sock.send(self.head[:1])
                self.head = self.head[1:]
            ready, _, _ = select.select([self.sock], [], [], 0)
            if ready and self.sock.recv(4096) == b"":
                raise ConnectionResetError
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        except OSError:  # reset, broken pipe, or the TLS session ended
            self.closed_after = time.monotonic() - self.opened


def test_nginx_closes_slow_and_silent_clients_and_keeps_streams(public_service: Any) -> None:
    header_timeout = seconds(NGINX_CONF.read_text(), "client_header_timeout")
    head = b"GET /events?channel=news HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 100
    with (
        public_service() as (address, bus),
        run_proxy(NOWHERE, (address, address)) as proxy,
        proxy.client(BOUND) as client,
        open_stream(client, "/events?channel=news") as response,
    ):
        stream = StreamReader(response)
        read_preamble(stream)
        tls_port = proxy.https.removeprefix("https://")
        trust = ssl.create_default_context(cafile=str(proxy.cert))
        through_nginx = {
            "silent, no TLS handshake": RawClient(tls_port, None),
            "silent after the TLS handshake": RawClient(tls_port, trust),
            "head trickled over TLS": RawClient(tls_port, trust, head),
            "silent on port 80": RawClient(proxy.http.removeprefix("http://"), None),
        }
        straight_to_uvicorn = {
            "silent": RawClient(address, None),
            "head trickled": RawClient(address, None, head),
        }
        clients = [*through_nginx.values(), *straight_to_uvicorn.values()]
        deadline = time.monotonic() + header_timeout + 15  # generous: the CPU is shared
        while time.monotonic() < deadline and any(
            c.closed_after is None for c in through_nginx.values()
        ):
            for c in clients:
                c.step()
            time.sleep(1)
        for c in clients:
            c.step()
        event_id = bus.publish("news", "still here")
        stream.read_until(lambda: bool(stream.events))
        for c in clients:
            c.sock.close()
    closed = {name: c.closed_after for name, c in through_nginx.items()}
    assert all(after is not None and after < header_timeout + 15 for after in closed.values())
    assert {name: c.closed_after for name, c in straight_to_uvicorn.items()} == {
        "silent": None,
        "head trickled": None,
    }  # uvicorn alone still holds both
    assert stream.events == [Event("still here", id=event_id)]  # the stream outlived them all


# ---------------------------------------------------------------------------------------------
# Docker Compose and Kubernetes: checked against their schemas offline, and against the library

COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes.yaml"
KUBERNETES_VERSION = "1.30.0"  # the oldest the manifests promise to work on
GUNICORN = runpy.run_path(str(EXAMPLES_DIR / "long_polling" / "gunicorn.conf.py"))
GUNICORN_GRACEFUL = GUNICORN["graceful_timeout"]  # the API's: a long poll may finish


def compose_errors(document: Any) -> list[str]:
    """What the Compose Specification's JSON schema (as check-jsonschema ships it) rejects."""
    import jsonschema
    from check_jsonschema import builtin_schemas

    schema = json.loads(
        resources.files(builtin_schemas).joinpath("vendor/compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(document)]


def kubernetes_errors(documents: list[Any]) -> list[str]:
    """What the Kubernetes OpenAPI schemas (as kubernetes-validate ships them) reject."""
    import kubernetes_validate

    errors = []
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{document['kind']}: {error.message}")
    return errors


def test_the_compose_file_matches_the_compose_specification() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    assert compose_errors(document) == []
    # The schema is strict enough to catch a typo: the check can fail.
    document["services"]["redis"]["helthcheck"] = document["services"]["redis"]["healthcheck"]
    assert compose_errors(document) != []


def test_the_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    documents = list(yaml.safe_load_all(KUBERNETES.read_text()))
    assert [d["kind"] for d in documents] == [
        "Deployment", "Service", "Deployment", "Service", "Ingress", "Ingress", "NetworkPolicy",
    ]  # fmt: skip
    assert kubernetes_errors(documents) == []
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    assert kubernetes_errors(documents) != []


def option(argv: list[str], name: str) -> str:
    """The value after `name` in a command line."""
    assert argv.count(name) == 1, (name, argv)
    return argv[argv.index(name) + 1]


def test_the_probes_and_timeouts_match_the_library_defaults() -> None:
    defaults = inspect.signature(create_app).parameters
    drain_timeout = defaults["drain_timeout"].default
    heartbeat = defaults["heartbeat"].default
    unit = unit_command(8001)[2:]  # after `python -m`: uvicorn's arguments as the unit runs it
    graceful = float(option(unit, "--timeout-graceful-shutdown"))
    stop_after = float(re.findall(r"^TimeoutStopSec=(\d+)$", UNIT.read_text(), re.M)[0])
    assert drain_timeout < graceful < stop_after  # streams drain before uvicorn cuts them

    # Compose: each instance runs the unit's command; stopped no sooner than the unit is.
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for port in (8001, 8002):
        events = services[f"events-{port}"]
        assert shlex.split(events["command"]) == ["uvicorn", *unit_command(port)[3:]]
        assert float(events["stop_grace_period"].removesuffix("s")) == stop_after
        assert f"http://127.0.0.1:{port}/healthz" in events["healthcheck"]["test"][-1]
    assert float(services["api"]["stop_grace_period"].removesuffix("s")) > GUNICORN_GRACEFUL

    # Kubernetes: the same uvicorn options; the grace period covers preStop and the drain.
    events, _, api, _, streams, api_ingress, _ = yaml.safe_load_all(KUBERNETES.read_text())
    pod = events["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = container["command"]
    assert float(option(argv, "--timeout-graceful-shutdown")) == graceful
    assert option(argv, "--workers") == option(unit, "--workers")
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful
    ready = container["readinessProbe"]
    assert ready["httpGet"]["path"] == "/healthz" and "livenessProbe" not in container
    assert container["ports"] == [{"name": ready["httpGet"]["port"], "containerPort": 8001}]
    assert option(argv, "--port") == "8001"
    # A draining pod (503) leaves the Service before its drain is over.
    assert ready["periodSeconds"] * ready["failureThreshold"] < drain_timeout
    api_pod = api["spec"]["template"]["spec"]
    assert api_pod["terminationGracePeriodSeconds"] > GUNICORN_GRACEFUL

    # The ingress: no buffering, and read timeouts above what keeps each connection busy.
    notes = streams["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[f"{prefix}proxy-buffering"] == "off"
    assert float(notes[f"{prefix}proxy-read-timeout"]) > max(heartbeat, UVICORN_PING)
    api_read = float(api_ingress["metadata"]["annotations"][f"{prefix}proxy-read-timeout"])
    assert api_read > MAX_TIMEOUT


# ---------------------------------------------------------------------------------------------
# Load balancers and platforms: documented limits against the library's defaults

PLATFORMS = Path(__file__).resolve().parents[2] / "bench" / "results" / "platforms.json"


def test_the_platform_table_uses_the_library_defaults() -> None:
    sys.path.insert(0, str(PLATFORMS.parents[1]))
    import tables  # bench/tables.py, the site's bench-table hook

    data = json.loads(PLATFORMS.read_text())
    assert data["service"] == {
        "heartbeat_s": inspect.signature(create_app).parameters["heartbeat"].default,
        "ws_ping_interval_s": UVICORN_PING,
        "long_poll_default_s": DEFAULT_TIMEOUT,
        "long_poll_max_s": MAX_TIMEOUT,
    }
    rows = {row["name"]: row for row in data["platforms"]}
    assert len(rows) == 5 and all(
        row["sources"] and all(url.startswith("https://") for url in row["sources"])
        for row in rows.values()
    )
    table = tables.render("platforms")
    lines = {name: next(ln for ln in table.splitlines() if ln.startswith(f"| {name} |"))
             for name in rows}  # fmt: skip
    for name, row in rows.items():
        assert all(url in lines[name] for url in row["sources"])  # cited on the page
        limit = tables.long_poll_limit(row)
        if limit is not None and limit <= MAX_TIMEOUT:  # the page says what to change
            assert limit > DEFAULT_TIMEOUT
            assert f"ask for `timeout={DEFAULT_TIMEOUT:g}` or less" in lines[name]
        else:
            assert f"up to {MAX_TIMEOUT:g} s fits" in lines[name]
    strictest = min(filter(None, map(tables.long_poll_limit, rows.values())))
    assert strictest > MAX_TIMEOUT or "does not fit" in table
