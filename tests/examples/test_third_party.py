"""Third-party hubs: the Flask examples publishing to real Pushpin and real Nchan (nginx).

Pushpin (Debian's `pushpin`) and nginx with Nchan (`libnginx-mod-nchan`) run as this test's own
processes with configurations generated in a temporary directory; the tests read what a browser's
EventSource reads, through them, and Chromium subscribes with examples/third_party/subscribe.js.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
from loopback import load_example
from proxy_servers import (
    EXAMPLES_DIR,
    Pushpin,
    free_port,
    nchan_module,
    run_nginx,
    run_pushpin,
)

from sidestream.testing import StreamReader, serve_wsgi

pytestmark = pytest.mark.slow
SSE = {"Accept": "text/event-stream"}  # what EventSource sends (Nchan picks its subscriber by it)


class LateApp:
    """A WSGI app served before the real one is imported (which needs the hub's address)."""

    app: Callable[..., Any]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.app(environ, start_response)


@contextmanager
def open_stream(url: str, **headers: str) -> Iterator[StreamReader]:
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", url, headers=SSE | headers) as response,
    ):
        yield StreamReader(response)


# ---------------------------------------------------------------------------------------------
# Pushpin (GRIP)


@dataclass
class PushpinSetup:
    hub: Pushpin
    api: str  # the Flask API itself, not through Pushpin
    example: ModuleType


@pytest.fixture
def pushpin(monkeypatch: pytest.MonkeyPatch) -> Iterator[PushpinSetup]:
    """examples/third_party/pushpin_app.py on loopback, with a real Pushpin in front of it."""
    late = LateApp()
    sig_key = secrets.token_urlsafe(32)
    with serve_wsgi(late) as api, run_pushpin(api.removeprefix("http://"), sig_key) as hub:
        monkeypatch.setenv("PUSHPIN_CONTROL_URL", hub.control_url)
        monkeypatch.setenv("PUSHPIN_SIG_KEY", sig_key)
        example = load_example("third_party/pushpin_app.py")
        late.app = example.app
        try:
            yield PushpinSetup(hub, api, example)
        finally:
            example.pushpin.close()


def post(base: str, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, timeout=5)


def test_pushpin_holds_the_stream_and_relays_what_the_api_publishes(pushpin: PushpinSetup) -> None:
    with open_stream(f"{pushpin.hub.url}/events/news") as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert not any(name.lower().startswith("grip-") for name in stream.response.headers)
        stream.read_until(lambda: b": stream open\n\n" in stream.raw)  # the API's first bytes

        # The API answered that request and forgot it; Pushpin holds the connection.
        ids = [
            post(pushpin.api, "/messages/news", {"text": t}).json()["id"]
            for t in ("first", "two\nlines")
        ]

        events = stream.wait_events(2)
    assert [(e.event, e.id, json.loads(e.data)) for e in events] == [
        ("message", ids[0], {"text": "first"}),
        ("message", ids[1], {"text": "two\nlines"}),
    ]
    assert "receivers=1" in pushpin.hub.log.read_text()  # Pushpin's own account of the publish


def test_pushpin_delivers_each_channel_only_to_its_subscribers(pushpin: PushpinSetup) -> None:
    with (
        open_stream(f"{pushpin.hub.url}/events/news") as news,
        open_stream(f"{pushpin.hub.url}/events/sports") as sports,
    ):
        for stream in (news, sports):
            stream.read_until(lambda s=stream: b": stream open" in s.raw)
        post(pushpin.api, "/messages/news", {"text": "for news"}).raise_for_status()
        post(pushpin.api, "/messages/sports", {"text": "for sports"}).raise_for_status()
        assert [json.loads(e.data)["text"] for e in news.wait_events(1)] == ["for news"]
        assert [json.loads(e.data)["text"] for e in sports.wait_events(1)] == ["for sports"]


def test_pushpin_sends_the_keep_alive_the_api_asked_for(
    pushpin: PushpinSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pushpin.example, "KEEP_ALIVE_SECONDS", 1)
    with open_stream(f"{pushpin.hub.url}/events/quiet") as stream:
        stream.read_until(lambda: b": keep-alive\n\n" in stream.raw)
        assert stream.raw.startswith(b": stream open\n\n")
        assert stream.events == []


def test_a_stream_request_that_bypasses_pushpin_is_refused(pushpin: PushpinSetup) -> None:
    direct = httpx.get(f"{pushpin.api}/events/news", headers=SSE, timeout=5)
    assert direct.status_code == 400
    assert "through Pushpin" in direct.json()["error"]
    assert "grip-hold" not in direct.headers

    forged = jwt.encode({"iss": "pushpin", "exp": 2**31}, "not-the-key-" * 3, algorithm="HS256")
    with_forged = httpx.get(f"{pushpin.api}/events/news", headers={"Grip-Sig": forged}, timeout=5)
    assert with_forged.status_code == 400

    genuine = jwt.encode({"iss": "pushpin", "exp": 2**31}, pushpin.hub.sig_key, algorithm="HS256")
    held = httpx.get(f"{pushpin.api}/events/news", headers={"Grip-Sig": genuine}, timeout=5)
    assert (held.status_code, held.headers["grip-hold"], held.headers["grip-channel"]) == (
        200,
        "stream",
        "news",
    )


def test_pushpin_bad_input_gets_json_400s(pushpin: PushpinSetup) -> None:
    through = httpx.get(f"{pushpin.hub.url}/events/no spaces", headers=SSE, timeout=5)
    assert through.status_code == 400  # no Grip-Hold: Pushpin relays the API's answer as it is
    assert "channel" in through.json()["error"]

    assert post(pushpin.api, "/messages/news", {"txt": "typo"}).json() == {
        "error": 'send JSON like {"text": "hello"}'
    }
    assert post(pushpin.api, "/messages/news", {"txt": "typo"}).status_code == 400
    assert post(pushpin.api, "/messages/%20bad", {"text": "x"}).status_code == 400


def test_publishing_while_pushpin_is_down_is_a_502(pushpin: PushpinSetup) -> None:
    pushpin.example.pushpin = httpx.Client(base_url="http://127.0.0.1:9", timeout=2)
    response = post(pushpin.api, "/messages/news", {"text": "lost"})
    assert response.status_code == 502
    assert response.json()["error"].startswith("Pushpin did not take the message")


# ---------------------------------------------------------------------------------------------
# Nchan (nginx module)

TOKEN_KEY = secrets.token_urlsafe(32)


@dataclass
class NchanSetup:
    url: str  # nginx: subscribers, and the API behind it
    api: str  # the Flask API itself
    example: ModuleType

    def token(self, user: str, channels: list[str], lifetime: float = 60) -> str:
        return str(self.example.tokens.issue(user, subscribe=channels, lifetime=lifetime))

    def publish(self, channel: str, text: str) -> httpx.Response:
        return post(self.api, f"/messages/{channel}", {"text": text})


@contextmanager
def nchan_servers(
    monkeypatch: pytest.MonkeyPatch, count: int = 1, server_settings: str = ""
) -> Iterator[tuple[list[str], NchanSetup]]:
    """`count` nginx servers, each including examples/third_party/nchan.conf verbatim, in front
    of nchan_app.py; the API publishes to the last one."""
    module = nchan_module()
    late = LateApp()
    ports = [free_port() for _ in range(count)]
    with serve_wsgi(late) as api, ExitStack() as servers:
        for port in ports:
            http = f"""
    upstream flask_api {{ server {api.removeprefix("http://")}; }}
    server {{
        listen 127.0.0.1:{port};
        {server_settings}
        include {EXAMPLES_DIR / "third_party" / "nchan.conf"};
    }}"""
            servers.enter_context(run_nginx(http, port, modules=(module,)))
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        monkeypatch.setenv("NCHAN_URL", urls[-1])
        monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", TOKEN_KEY)
        example = load_example("third_party/nchan_app.py")
        late.app = example.app
        try:
            yield urls, NchanSetup(urls[-1], api, example)
        finally:
            example.nchan.close()


@pytest.fixture
def nchan(monkeypatch: pytest.MonkeyPatch) -> Iterator[NchanSetup]:
    """examples/third_party/nchan.conf in a real nginx (with Nchan) in front of nchan_app.py."""
    with nchan_servers(monkeypatch) as (_, setup):
        yield setup


def test_nchan_streams_what_the_api_publishes(nchan: NchanSetup) -> None:
    token = nchan.token("ada", ["news"])
    assert nchan.publish("news", "before anyone listened").json() == {"subscribers": 0}
    with open_stream(f"{nchan.url}/events/news?token={token}") as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        stream.read_until(lambda: b": hi\n" in stream.raw)  # Nchan's first bytes: subscribed
        replies = [nchan.publish("news", text) for text in ("first", "two\nlines")]
        events = stream.wait_events(2)
    assert [r.status_code for r in replies] == [202, 202]
    assert [r.json() for r in replies] == [{"subscribers": 1}, {"subscribers": 1}]
    # `newest`: the message published before subscribing is not sent; Nchan ids are time:tag.
    assert [(e.event, json.loads(e.data)["text"]) for e in events] == [
        ("message", "first"),
        ("message", "two\nlines"),
    ]
    assert all(e.id and ":" in e.id for e in events)


def test_nchan_resumes_after_last_event_id_from_its_buffer(nchan: NchanSetup) -> None:
    token = nchan.token("ada", ["news"])
    with open_stream(f"{nchan.url}/events/news?token={token}") as stream:
        stream.read_until(lambda: b": hi\n" in stream.raw)
        nchan.publish("news", "seen")
        seen = stream.wait_events(1)[0]
    for text in ("missed 1", "missed 2"):  # published while the client was away
        nchan.publish("news", text).raise_for_status()
    with open_stream(
        f"{nchan.url}/events/news?token={token}", **{"Last-Event-ID": seen.id}
    ) as again:
        replayed = again.wait_events(2)
    assert [json.loads(e.data)["text"] for e in replayed] == ["missed 1", "missed 2"]


@pytest.mark.redis
def test_two_nginx_servers_share_channels_through_redis(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str
) -> None:
    """With Nchan's Redis mode, a browser on server A gets what the API published to server B."""
    import redis

    settings = (
        f'nchan_redis_url {redis_url}; nchan_use_redis on; nchan_redis_namespace "{key_prefix}";'
    )
    try:
        with nchan_servers(monkeypatch, count=2, server_settings=settings) as ([a, b], setup):
            token = setup.token("ada", ["news"])
            with open_stream(f"{a}/events/news?token={token}") as stream:
                stream.read_until(lambda: b": hi\n" in stream.raw)
                # Until A's subscription is counted in Redis, as B sees it (no fixed sleep).
                deadline = time.monotonic() + 5
                while channel_info(b, "news").get("subscribers") != 1:
                    assert time.monotonic() < deadline, "A's subscriber never showed on B"
                    time.sleep(0.02)
                assert setup.publish("news", "via B").json() == {"subscribers": 1}
                [event] = stream.wait_events(1)
            assert json.loads(event.data) == {"text": "via B"}
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{key_prefix}*"):
            client.delete(key)
        client.close()


def channel_info(server: str, channel: str) -> dict[str, Any]:
    """What Nchan's publisher location says about a channel (a GET there publishes nothing)."""
    info = httpx.get(f"{server}/internal/publish/{channel}", headers={"Accept": "application/json"})
    return dict(info.json()) if info.status_code == 200 else {}


def test_nchan_asks_the_api_who_may_subscribe(nchan: NchanSetup) -> None:
    url = f"{nchan.url}/events/news"
    cases = {
        "no token": (url, 401, "no stream token"),
        "bad token": (f"{url}?token=not-a-jwt", 401, "token is malformed"),
        "expired": (f"{url}?token={nchan.token('ada', ['news'], lifetime=-60)}", 401, "expired"),
        "other channel": (
            f"{url}?token={nchan.token('bob', ['sports'])}",
            403,
            "bob may not read news",
        ),
    }
    for case, (target, status, reason) in cases.items():
        refused = httpx.get(target, headers=SSE, timeout=5)
        assert (case, refused.status_code) == (case, status)
        assert reason in refused.json()["error"], case  # the API's JSON, relayed by Nchan


def test_only_the_api_host_may_publish_to_nchan(nchan: NchanSetup) -> None:
    """`allow 127.0.0.1; deny all;`: another address (127.0.0.2, also loopback) is refused."""
    elsewhere = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=5)
    with elsewhere:
        forged = elsewhere.post(f"{nchan.url}/internal/publish/news", content=b"{}")
        assert forged.status_code == 403
        token = nchan.token("ada", ["news"])
        with elsewhere.stream("GET", f"{nchan.url}/events/news?token={token}", headers=SSE) as ok:
            assert ok.status_code == 200  # subscribing is open to everyone with a token


def test_nchan_bad_input_and_hub_down(nchan: NchanSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    bad_body = post(nchan.api, "/messages/news", {"txt": "typo"})
    assert (bad_body.status_code, bad_body.json()) == (
        400,
        {"error": 'send JSON like {"text": "hello"}'},
    )
    assert post(nchan.api, "/messages/%20bad", {"text": "x"}).status_code == 400
    assert httpx.get(f"{nchan.url}/events/bad%20name", headers=SSE).status_code == 404
    monkeypatch.setattr(nchan.example, "nchan", httpx.Client(base_url="http://127.0.0.1:9"))
    down = nchan.publish("news", "lost")
    assert down.status_code == 502
    assert down.json()["error"].startswith("Nchan did not take the message")


# ---------------------------------------------------------------------------------------------
# The browser: examples/third_party/subscribe.js in Chromium, through each hub


async def received_in_chromium(
    browser: Any, origin: str, stream_path: str, publish: Callable[[str], object]
) -> list[dict[str, str]]:
    """Open a page on the hub's origin, subscribe.js on `stream_path`, publish two messages."""
    script = (EXAMPLES_DIR / "third_party" / "subscribe.js").read_text()
    page = await (await browser.new_context()).new_page()
    # The page itself comes from here; the stream is the hub's real answer, on the same origin.
    html = f"<!doctype html><script>{script}</script>"
    await page.route(
        f"{origin}/page", lambda route: route.fulfill(body=html, content_type="text/html")
    )
    await page.goto(f"{origin}/page")
    await page.evaluate(
        """path => {
            window.received = [];
            window.source = subscribe(path, (msg, id) => window.received.push({...msg, id}));
        }""",
        stream_path,
    )
    await page.wait_for_function("window.source.readyState === EventSource.OPEN")
    for text in ("one", "two"):
        await asyncio.to_thread(publish, text)
    await page.wait_for_function("window.received.length === 2")
    received: list[dict[str, str]] = await page.evaluate("window.received")
    await page.close()
    return received


@pytest.mark.browser
async def test_chromium_subscribes_through_pushpin(browser: Any, pushpin: PushpinSetup) -> None:
    ids: list[str] = []

    def publish(text: str) -> None:
        ids.append(post(pushpin.api, "/messages/news", {"text": text}).json()["id"])

    received = await received_in_chromium(browser, pushpin.hub.url, "/events/news", publish)
    assert received == [{"text": "one", "id": ids[0]}, {"text": "two", "id": ids[1]}]


@pytest.mark.browser
async def test_chromium_subscribes_through_nchan(browser: Any, nchan: NchanSetup) -> None:
    def publish(text: str) -> None:
        assert nchan.publish("news", text).json() == {"subscribers": 1}

    path = f"/events/news?token={nchan.token('ada', ['news'])}"
    received = await received_in_chromium(browser, nchan.url, path, publish)
    assert [message["text"] for message in received] == ["one", "two"]
    assert all(":" in message["id"] for message in received)  # Nchan's time:tag ids
