"""examples/websocket/: the chat — api.py issues the token, service.py holds the sockets, client.js
runs in Chromium.

In-process tests (falcon.testing, Flask's test client) check each piece; the browser test runs
two service processes (real uvicorn) on real Redis, a browser on each, and the two talk.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from types import ModuleType
from typing import Any

import falcon.testing
import pytest
from loopback import EXAMPLES, load_example

from sidestream.testing import serve_uvicorn, serve_wsgi

KEY = "websocket-chat-example-key-32-bytes!"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    return load_example("websocket/api.py")


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    monkeypatch.setenv("REDIS_URL", "memory://")
    monkeypatch.setenv("API_ORIGIN", "http://api.example")
    return load_example("websocket/service.py")


def logged_in(api: ModuleType, user: str) -> Any:
    client = api.app.test_client()
    assert client.post("/login", json={"user": user}).status_code == 200
    return client


def test_the_api_issues_a_token_to_read_and_write_one_room(api: ModuleType) -> None:
    anonymous = api.app.test_client()
    assert anonymous.get("/chat-token?room=lobby").status_code == 401
    client = logged_in(api, "alice")
    assert client.get("/chat-token?room=Lobby!").status_code == 400
    response = client.get("/chat-token?room=lobby")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["url"] == "ws://127.0.0.1:8002/ws?channel=room%3Alobby"  # no token in the URL
    claims = api.tokens.verify(body["token"])
    assert (claims.subject, claims.subscribe, claims.publish) == (
        "alice",
        ("room:lobby",),
        ("room:lobby",),
    )


def test_the_page_loads_client_js(api: ModuleType) -> None:
    client = api.app.test_client()
    assert '<script src="/client.js">' in client.get("/").get_data(as_text=True)
    script = client.get("/client.js")
    assert script.get_data() == (EXAMPLES / "websocket/client.js").read_bytes()
    script.close()


async def test_the_service_stamps_the_sender_from_the_token(
    api: ModuleType, service: ModuleType
) -> None:
    grant = logged_in(api, "alice").get("/chat-token?room=lobby").get_json()
    offered = ["sidestream.v1", f"bearer.{grant['token']}"]
    headers = {"Origin": "http://api.example"}
    async with (
        falcon.testing.ASGIConductor(service.app) as conductor,
        conductor.simulate_ws(
            "/ws",
            query_string="channel=room:lobby",
            subprotocols=offered,
            headers=headers,
            spec_version="2.4",
        ) as ws,
    ):
        assert json.loads(await ws.receive_text())["type"] == "ready"
        # Whatever the client claims, the line is published as from the token's subject.
        await ws.send_json({"channel": "room:lobby", "data": "hi, I am bob", "ref": 1})
        frames = [json.loads(await ws.receive_text()) for _ in range(2)]
        event = next(frame for frame in frames if frame["type"] == "event")
        assert event["event"] == "message"
        assert json.loads(event["data"]) == {"from": "alice", "text": "hi, I am bob"}
        await ws.send_json({"channel": "room:lobby", "data": "x" * 4100})
        while not ws.closed:
            await asyncio.sleep(0.01)
        assert ws.close_code == 1009  # max_message_bytes=4096


async def test_a_page_from_another_origin_may_not_open_a_socket(
    api: ModuleType, service: ModuleType
) -> None:
    grant = logged_in(api, "alice").get("/chat-token?room=lobby").get_json()
    async with falcon.testing.ASGIConductor(service.app) as conductor:
        attempt = conductor.simulate_ws(
            "/ws",
            query_string=f"channel=room:lobby&token={grant['token']}",
            headers={"Origin": "https://evil.example"},
        )
        with pytest.raises(falcon.WebSocketDisconnected) as refused:
            async with attempt:
                pass
        assert refused.value.code == 3403


# -- two browsers, two service processes, one real Redis ---------------------------------------


@pytest.fixture
def deployment(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[str, ModuleType]]]:
    """Two API instances, each pointing its pages at its own service process (uvicorn)."""
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    monkeypatch.setenv("CHAT_TOKEN_LIFETIME", "4")  # short: expiry and resume run in the test
    with ExitStack() as stack:
        pairs = []
        for _ in range(2):
            api = load_example("websocket/api.py")
            api_url = stack.enter_context(serve_wsgi(api.app))
            service_url = stack.enter_context(
                serve_uvicorn(
                    "service:app",
                    "--ws-max-size",
                    "4096",
                    "--timeout-graceful-shutdown",
                    "1",
                    cwd=EXAMPLES / "websocket",
                    env={"REDIS_URL": redis_url, "API_ORIGIN": api_url},
                    ready_path="/healthz",
                )
            )
            api.CHAT_URL = service_url.replace("http://", "ws://") + "/ws"
            pairs.append((api_url, api))
        yield pairs


async def lines(page: Any) -> list[str]:
    return await page.eval_on_selector_all("#messages li", "items => items.map(i => i.textContent)")


@pytest.mark.browser
@pytest.mark.redis
@pytest.mark.slow
async def test_two_browsers_on_two_service_processes_chat_through_redis(
    browser: Any, deployment: list[tuple[str, ModuleType]]
) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"  # real Redis is shared between runs
    pages, token_requests = [], [0, 0]
    for n, (user, (api_url, _)) in enumerate(zip(["alice", "bob"], deployment, strict=True)):
        context = await browser.new_context()
        await context.request.post(f"{api_url}/login", data={"user": user})
        page = await context.new_page()
        page.on(
            "request",
            lambda r, n=n: token_requests.__setitem__(
                n, token_requests[n] + ("/chat-token" in r.url)
            ),
        )
        await page.goto(f"{api_url}/?room={room}")
        await page.wait_for_function(
            "document.getElementById('status').textContent === 'connected'"
        )
        pages.append(page)
    alice, bob = pages

    async def say(page: Any, text: str) -> None:
        await page.wait_for_function(
            "document.getElementById('status').textContent === 'connected'"
        )
        await page.fill("#text", text)
        await page.click("button")

    async def seen(page: Any, count: int) -> list[str]:
        await page.wait_for_function(
            f"document.querySelectorAll('#messages li').length >= {count}", timeout=15_000
        )
        return await lines(page)

    await say(alice, "hi bob")
    assert await seen(bob, 1) == ["alice: hi bob"]  # from the other process, through Redis
    await say(bob, "hi alice")
    assert await seen(alice, 2) == ["alice: hi bob", "bob: hi alice"]
    # The 4 s tokens expire: each service closes its socket with 4001, client.js fetches a new
    # token and resumes from its last id, so a line sent meanwhile is neither lost nor doubled.
    await alice.wait_for_timeout(4500)
    await say(bob, "still there?")
    await say(alice, "yes")
    for page in (alice, bob):
        assert await seen(page, 4) == [
            "alice: hi bob",
            "bob: hi alice",
            "bob: still there?",
            "alice: yes",
        ]
    await bob.wait_for_timeout(300)  # room for a duplicate to arrive
    assert len(await lines(bob)) == 4
    assert min(token_requests) >= 2  # the first token and at least one after expiry

    # What a page learns of a refused handshake (here: no token): the service answered 401 with
    # a JSON reason, but the browser shows neither: an error event, then close code 1006.
    refused = await alice.evaluate(
        """(url) => new Promise((resolve) => {
            const socket = new WebSocket(url);
            let errored = false;
            socket.onerror = () => (errored = true);
            socket.onclose = (event) => resolve([event.code, event.reason, errored]);
        })""",
        deployment[0][1].CHAT_URL + f"?channel=room:{room}",
    )
    assert refused == [1006, "", True]


@pytest.mark.browser
async def test_sockets_do_not_wait_for_the_six_http1_connections(
    browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six open event streams fill Chromium's HTTP/1.1 pool for the service's origin: a seventh
    waits, while WebSockets to the same origin open at once (they are not in the pool)."""
    from sidestream.testing import serve_asgi

    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    monkeypatch.setenv("REDIS_URL", "memory://")
    api = load_example("websocket/api.py")
    with ExitStack() as stack:
        api_url = stack.enter_context(serve_wsgi(api.app))
        monkeypatch.setenv("API_ORIGIN", api_url)
        service_url = stack.enter_context(serve_asgi(load_example("websocket/service.py").app))
        api.CHAT_URL = service_url.replace("http://", "ws://") + "/ws"
        context = await browser.new_context()
        await context.request.post(f"{api_url}/login", data={"user": "alice"})
        page = await context.new_page()
        await page.goto(f"{api_url}/?room=pool")
        opened = await page.evaluate(
            """async (events) => {
                const grant = await (await fetch("/chat-token?room=pool")).json();
                const opens = (target) =>
                    new Promise((resolve) => {
                        target.onopen = () => resolve(true);
                        setTimeout(() => resolve(false), 3000);
                    });
                const streams = [];
                for (let n = 0; n < 7; n++) {
                    streams.push(new EventSource(`${events}&token=${grant.token}`));
                }
                const sockets = [0, 1, 2].map(
                    () => new WebSocket(grant.url, ["sidestream.v1", `bearer.${grant.token}`])
                );
                const results = await Promise.all([...streams, ...sockets].map(opens));
                return [results.slice(0, 7).filter(Boolean).length, results.slice(7)];
            }""",
            f"{service_url}/events?channel=room:pool",
        )
        assert opened == [6, [True, True, True]]
