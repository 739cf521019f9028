"""examples/auth/: the API issues the token, the service enforces it, client.js runs in Chromium.

Every bad token gets its own test against the example service over real HTTP: a 401 or 403 with
a JSON reason, and never a `text/event-stream`.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
from loopback import EXAMPLES, load_example

from sidestream.testing import read_events, serve_asgi, serve_wsgi
from sidestream.tokens import StreamTokens

KEY = "auth-handoff-example-key-32-bytes!!"
OTHER_KEY = "some-other-service-key-of-32-bytes!"


@dataclass
class Deployment:
    api: ModuleType
    api_url: str
    stream_url: str  # .../events


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"  # real Redis is shared between tests and runs


@pytest.fixture
def deploy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Deployment]]:
    """Start the example API (WSGI) and the example service (uvicorn) on loopback ports."""
    with ExitStack() as stack:

        def start(redis_url: str = "memory://", lifetime: int = 120) -> Deployment:
            monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
            monkeypatch.setenv("REDIS_URL", redis_url)
            monkeypatch.setenv("STREAM_TOKEN_LIFETIME", str(lifetime))
            api = load_example("auth/api.py")
            api_url = stack.enter_context(serve_wsgi(api.app))
            monkeypatch.setenv("API_ORIGIN", api_url)
            service = load_example("auth/service.py")
            stream_url = stack.enter_context(serve_asgi(service.app)) + "/events"
            monkeypatch.setattr(api, "STREAM_URL", stream_url)  # known once the port is
            return Deployment(api, api_url, stream_url)

        yield start


@pytest.fixture
def deployment(deploy: Callable[..., Deployment]) -> Deployment:
    return deploy()


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "alice",
        "aud": "sidestream",
        "iat": now,
        "exp": now + 60,
        "mercure": {"subscribe": ["user:alice"], "publish": []},
    }
    return {**base, **overrides}


def good() -> str:
    return StreamTokens(KEY).issue("alice", subscribe=["user:alice"])


def tampered() -> str:
    header, _, signature = good().split(".")
    return f"{header}.{b64(claims(mercure={'subscribe': ['*'], 'publish': []}))}.{signature}"


NO_TOKEN = (
    "no stream token: send it in an 'Authorization: Bearer' header or the 'token' query "
    "parameter or the 'sidestream_token' cookie"
)
PAST = int(time.time()) - 3600

# (case, token, channel, status, reason): one test each.
BAD_TOKENS = [
    ("missing", None, "user:alice", 401, NO_TOKEN),
    ("malformed", "not.a.jwt", "user:alice", 401, "token is malformed: Invalid header padding"),
    (
        "wrong-signature",
        StreamTokens(OTHER_KEY).issue("alice", subscribe=["user:alice"]),
        "user:alice",
        401,
        "token signature does not verify",
    ),
    (
        "expired",
        jwt.encode(claims(iat=PAST, exp=PAST + 60), KEY, algorithm="HS256"),
        "user:alice",
        401,
        "token has expired: fetch a new one",
    ),
    (
        "wrong-audience",
        StreamTokens(KEY, audience="https://hub.example.com").issue(
            "alice", subscribe=["user:alice"]
        ),
        "user:alice",
        401,
        "token audience is not 'sidestream'",
    ),
    (
        "alg-none",
        f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}.",
        "user:alice",
        401,
        "token algorithm 'none' is not accepted; expected HS256",
    ),
    ("tampered-claims", tampered(), "user:bob", 401, "token signature does not verify"),
    ("channel-not-granted", good(), "user:bob", 403, "alice may not read user:bob"),
]


@pytest.mark.parametrize(
    ("token", "channel", "status", "reason"),
    [case[1:] for case in BAD_TOKENS],
    ids=[case[0] for case in BAD_TOKENS],
)
def test_bad_token_is_refused_with_a_json_reason_and_no_stream(
    deployment: Deployment, token: str | None, channel: str, status: int, reason: str
) -> None:
    params = {"channel": channel} | ({"token": token} if token else {})
    response = httpx.get(deployment.stream_url, params=params, timeout=5)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "title": "unauthorized" if status == 401 else "forbidden",
        "description": reason,
    }
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("where", ["query", "bearer", "cookie"])
def test_a_good_token_opens_the_stream_from_every_place(deployment: Deployment, where: str) -> None:
    user = unique("alice")
    token = deployment.api.tokens.issue(user, subscribe=[f"user:{user}"])
    params = {"channel": f"user:{user}"} | ({"token": token} if where == "query" else {})
    url = str(httpx.URL(deployment.stream_url, params=params))
    headers = {
        "query": {},
        "bearer": {"Authorization": f"Bearer {token}"},
        "cookie": {"Cookie": f"sidestream_token={token}"},
    }[where]
    first = deployment.api.bus.publish(f"user:{user}", json.dumps({"text": "one"}))
    capture = read_events(url, count=1, headers={**headers, "Last-Event-ID": "0-0"}, timeout=5)
    assert capture.status == 200
    assert [(e.data, e.id) for e in capture.events] == [('{"text": "one"}', first)]


@pytest.mark.parametrize("redis", ["fakeredis", pytest.param("real", marks=pytest.mark.redis)])
def test_api_token_reads_own_channel_and_the_stream_closes_at_expiry(
    deploy: Callable[..., Deployment], request: pytest.FixtureRequest, redis: str
) -> None:
    url = request.getfixturevalue("redis_url") if redis == "real" else "memory://"
    deployment = deploy(url, lifetime=2)
    user = unique("alice")
    with httpx.Client(base_url=deployment.api_url, timeout=5) as browser_like:
        assert browser_like.get("/stream-token").status_code == 401  # not logged in
        assert browser_like.post("/login", json={"user": "Alice!"}).status_code == 400
        browser_like.post("/login", json={"user": user}).raise_for_status()
        issued = browser_like.get("/stream-token")
        assert issued.headers["cache-control"] == "no-store"
        stream = issued.json()["url"]
        assert issued.json()["expires_in"] == 2
        sent = browser_like.post(f"/notify/{user}", json={"text": "hello"}).json()["id"]
    started = time.monotonic()
    capture = read_events(stream + "&last_event_id=0-0", count=3, timeout=8)
    assert capture.status == 200
    assert [(e.event, e.data) for e in capture.events] == [
        (None, '{"text": "hello"}'),
        ("close", '{"reason": "expired"}'),
    ]
    assert capture.events[0].id == sent
    assert capture.ended
    assert time.monotonic() - started < 6  # the token's 2 s (+ 1 s rounding), not the read timeout
    # Reconnecting with the same, now expired, token is refused before any stream opens.
    again = httpx.get(stream, timeout=5)
    assert again.status_code == 401
    assert again.json()["description"] in {
        "token has expired: fetch a new one",
        "the grant has already expired",
    }


async def texts(page: Any) -> list[str]:
    return await page.eval_on_selector_all("#events li", "items => items.map(i => i.textContent)")


@pytest.mark.browser
async def test_each_user_receives_their_private_channel_and_not_the_others(
    browser: Any, deploy: Callable[..., Deployment]
) -> None:
    deployment = deploy(lifetime=3)  # short, so the refresh-and-resume path runs too
    alice, bob = unique("alice"), unique("bob")
    pages, token_requests = {}, {alice: 0, bob: 0}
    for user in (alice, bob):
        context = await browser.new_context()
        await context.request.post(f"{deployment.api_url}/login", data={"user": user})
        page = await context.new_page()
        page.on(
            "request",
            lambda r, user=user: token_requests.__setitem__(
                user, token_requests[user] + ("/stream-token" in r.url)
            ),
        )
        async with page.expect_response(lambda r: r.url.startswith(deployment.stream_url)):
            await page.goto(f"{deployment.api_url}/")
        pages[user] = page

    def notify(user: str, text: str) -> None:
        # The API lets a user publish to their own channel only: log in as that user.
        with httpx.Client(base_url=deployment.api_url, timeout=5) as api:
            api.post("/login", json={"user": user}).raise_for_status()
            api.post(f"/notify/{user}", json={"text": text}).raise_for_status()

    notify(alice, "for alice 1")
    notify(bob, "for bob 1")
    await pages[alice].wait_for_function("document.querySelectorAll('#events li').length >= 1")
    await pages[bob].wait_for_function("document.querySelectorAll('#events li').length >= 1")
    # Let the 3 s tokens expire: the service closes both streams; client.js fetches fresh tokens
    # and resumes after the last id, so what is published meanwhile is not lost.
    await pages[alice].wait_for_timeout(3500)
    notify(alice, "for alice 2")
    notify(bob, "for bob 2")
    for user in (alice, bob):
        name = user.split("-")[0]
        await pages[user].wait_for_function(
            "document.querySelectorAll('#events li').length >= 2", timeout=15_000
        )
        await pages[user].wait_for_timeout(300)  # room for a wrong or duplicate event to arrive
        assert await texts(pages[user]) == [f"for {name} 1", f"for {name} 2"]
        assert token_requests[user] >= 2  # the first token, and at least one refresh

    # Alice's own token cannot be turned into a stream of Bob's channel.
    refused = await pages[alice].evaluate(
        """async (bobChannel) => {
            const { url } = await (await fetch("/stream-token")).json();
            const forged = new URL(url);
            forged.searchParams.set("channel", bobChannel);
            const response = await fetch(forged);
            return [response.status, response.headers.get("content-type"), await response.json()];
        }""",
        f"user:{bob}",
    )
    assert refused == [
        403,
        "application/json",
        {"title": "forbidden", "description": f"{alice} may not read user:{bob}"},
    ]


@pytest.mark.browser
async def test_a_logged_out_page_asks_once_and_says_why(
    browser: Any, deployment: Deployment
) -> None:
    page = await browser.new_page()  # no session: the API refuses the token with 401
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url.removeprefix(deployment.api_url)))
    await page.goto(f"{deployment.api_url}/")
    await page.wait_for_function("document.getElementById('status').textContent")
    await page.wait_for_timeout(5000)  # a client that looped would have asked again by now
    assert await page.text_content("#status") == "Live updates stopped: log in first"
    assert [url for url in asked if "/stream-token" in url or "/events" in url] == ["/stream-token"]


def test_notify_refuses_a_name_that_is_not_a_user(deployment: Deployment) -> None:
    client = deployment.api.app.test_client()
    client.post("/login", json={"user": "alice"})
    response = client.post("/notify/Bob!", json={"text": "x"})
    assert (response.status_code, response.get_json()) == (404, {"error": "no such user: 'Bob!'"})


def test_notify_is_authorized_like_a_read(deployment: Deployment) -> None:
    client = deployment.api.app.test_client()
    anonymous = client.post("/notify/bob", json={"text": "x"})
    assert (anonymous.status_code, anonymous.get_json()) == (401, {"error": "log in first"})
    client.post("/login", json={"user": "alice"})
    other = client.post("/notify/bob", json={"text": "x"})
    assert (other.status_code, other.get_json()) == (403, {"error": "alice may not notify bob"})
    not_json = client.post("/notify/alice", data="{", content_type="application/json")
    assert (not_json.status_code, not_json.get_json()) == (400, {"error": "the body must be JSON"})


def test_the_page_loads_client_js_which_imports_the_one_client(deployment: Deployment) -> None:
    client = deployment.api.app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert '<script type="module" src="/client.js">' in page
    assert '<p id="status">' in page  # where client.js says why the stream stopped
    for path, source in (("/client.js", "auth/client.js"), ("/stream.js", "client/stream.js")):
        script = client.get(path)
        assert script.mimetype in {"text/javascript", "application/javascript"}  # a module
        assert script.get_data() == (EXAMPLES / source).read_bytes()
        script.close()
    assert 'from "./stream.js"' in (EXAMPLES / "auth/client.js").read_text()
