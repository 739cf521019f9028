"""examples/mercure/: the Flask API publishing to a Mercure 1.0 hub, and subscriber.js in Chromium.

No maintained Mercure hub can be installed here (the reference hub is a Go binary from GitHub
releases; Debian ships only Symfony's PHP publisher), so the hub is the double of
tests/mercure_hub.py speaking draft-08 (Mercure 1.0), served over real loopback sockets by
uvicorn; and then sidestream's own hub (sidestream.mercure_hub), for the last test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
from loopback import EXAMPLES, load_example
from mercure_hub import HUB_PATH, MercureHub

from sidestream.bus import AsyncBus, connect_async
from sidestream.mercure import Publisher, publisher_token
from sidestream.mercure_hub import MercureSettings, install
from sidestream.service import create_app
from sidestream.testing import free_port, serve_asgi, serve_wsgi
from sidestream.tokens import AccessTokenClaims, StreamTokens, authorizer

PUBLISHER_KEY = "mercure-publisher-key-32-bytes-long!"
SUBSCRIBER_KEY = "mercure-subscriber-key-32-bytes-long"
SITE = "https://example.com"
TOPIC = f"{SITE}/books/1"
COOKIE = "__Secure-mercure_access_token"


def draft_08(key: str, hub_url: str) -> StreamTokens:
    claims = AccessTokenClaims(client_id=SITE)
    return StreamTokens(key, audience=hub_url, issuer=SITE, claims_format=claims)


@pytest.fixture
def hub() -> Iterator[tuple[MercureHub, str]]:
    double = MercureHub(
        publisher_key=PUBLISHER_KEY,
        subscriber_key=SUBSCRIBER_KEY,
        protocol="draft-08",
        issuer=SITE,  # the example issues its own tokens: iss is its URL
    )
    with serve_asgi(double.asgi, interface="asgi3") as base:
        double.hub_url = base + HUB_PATH  # the resource identifier tokens must name in aud
        yield double, base + HUB_PATH


@pytest.fixture
def example(hub: tuple[MercureHub, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("MERCURE_HUB_URL", hub[1])
    monkeypatch.setenv("MERCURE_PUBLISHER_JWT_KEY", PUBLISHER_KEY)
    monkeypatch.setenv("MERCURE_SUBSCRIBER_JWT_KEY", SUBSCRIBER_KEY)
    module = load_example("mercure/app.py")
    yield module
    module.publisher.close()


def test_publish_route_sends_a_private_update(
    example: ModuleType, hub: tuple[MercureHub, str]
) -> None:
    double, _ = hub
    response = example.app.test_client().post("/books/1", json={"title": "Dune Messiah"})
    assert response.status_code == 202
    (update,) = double.history
    assert response.get_json() == {"id": update.id}
    assert update.topics == [TOPIC]
    assert update.private is True
    assert json.loads(update.data) == {"title": "Dune Messiah", "last_update": None}
    token = double.requests[0].headers["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = jwt.decode(token, PUBLISHER_KEY, algorithms=["HS256"], audience=hub[1])
    assert (claims["iss"], claims["client_id"], claims["sub"]) == (SITE, SITE, SITE)
    assert claims["authorization_details"] == [
        {
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["publish"],
            "topics": [{"match": TOPIC, "match_type": "exact"}],
        }
    ]


def test_show_book_advertises_the_hub_and_sets_the_cookie(
    example: ModuleType, hub: tuple[MercureHub, str]
) -> None:
    client = example.app.test_client()
    client.post("/books/1", json={"title": "Dune"})
    last = example.books[1]["last_update"]
    response = client.get("/books/1")
    assert response.headers.getlist("Link") == [
        f'<{hub[1]}>; rel="mercure"; last-event-id="{last}"',
        f'<{TOPIC}>; rel="self"',
    ]
    cookie = response.headers["Set-Cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", f"Path={HUB_PATH}", "Max-Age=300"):
        assert attribute in cookie.split("; ")
    assert cookie.startswith(f"{COOKIE}=")
    token = cookie.split(";")[0].removeprefix(f"{COOKIE}=")
    claims = draft_08(SUBSCRIBER_KEY, hub[1]).verify(token)
    assert claims.subscribe == (TOPIC,)
    assert [detail.actions for detail in claims.details] == [("subscribe",)]


def test_the_page_loads_subscriber_js(example: ModuleType) -> None:
    client = example.app.test_client()
    assert '<script src="/subscriber.js">' in client.get("/").get_data(as_text=True)
    script = client.get("/subscriber.js")
    assert script.get_data() == (EXAMPLES / "mercure/subscriber.js").read_bytes()
    assert script.mimetype == "text/javascript"
    script.close()


def test_bad_requests_get_json_errors(example: ModuleType) -> None:
    client = example.app.test_client()
    missing = client.post("/books/9", json={"title": "x"})
    assert (missing.status_code, missing.get_json()) == (404, {"error": "no such book"})
    assert client.get("/books/9").status_code == 404
    no_title = client.post("/books/1", data="title=x")
    assert no_title.status_code == 400
    assert no_title.get_json() == {"error": 'send JSON like {"title": "Dune"}'}


def test_hub_failure_is_a_502_naming_it(example: ModuleType, hub: tuple[MercureHub, str]) -> None:
    double, _ = hub
    double.fail_next = [503, 503, 503]
    response = example.app.test_client().post("/books/1", json={"title": "Dune"})
    assert response.status_code == 502
    assert response.get_json()["error"].startswith("the update was not published: hub failed (503")
    assert len(double.requests) == 3 and double.history == []


async def received(page: Any, count: int) -> list[str]:
    await page.wait_for_function(
        f"document.querySelectorAll('#updates li').length >= {count}", timeout=10_000
    )
    return await page.eval_on_selector_all("#updates li", "items => items.map(i => i.textContent)")


async def open_with_an_update_in_the_gap(browser: Any, site: str, hub_url: str) -> Any:
    """Alice's page, subscribed; an update is published after /books/1 rendered but before
    EventSource connects (the hub must replay it from the last-event-id of discovery)."""
    alice = await (await browser.new_context()).new_page()

    async def publish_in_the_gap(route: Any) -> None:
        await asyncio.to_thread(httpx.post, f"{site}/books/1", json={"title": "In the gap"})
        await route.continue_()

    await alice.route(f"{hub_url}?*", publish_in_the_gap, times=1)
    await alice.goto(f"{site}/")
    await alice.wait_for_function("window.subscription && window.subscription.readyState === 1")
    return alice


async def subscribe_without_the_cookie(browser: Any, site: str, hub_url: str) -> Any:
    """Mallory's page: same origin, same topic, its own EventSource, and no cookie."""
    mallory = await (await browser.new_context()).new_page()
    await mallory.goto(f"{site}/not-a-page")
    await mallory.set_content('<ul id="updates"></ul>')
    await mallory.evaluate(
        """([hub, topic]) => {
            const url = new URL(hub); url.searchParams.append("match", topic);
            const source = new EventSource(url, { withCredentials: true });
            source.onmessage = (e) => {
              const li = document.createElement("li"); li.textContent = e.data;
              document.getElementById("updates").append(li);
            };
            window.subscription = source;
        }""",
        [hub_url, TOPIC],
    )
    await mallory.wait_for_function("window.subscription.readyState === 1")
    return mallory


async def check_private_then_public(
    example: ModuleType, site: str, hub_url: str, alice: Any, mallory: Any, gap_id: str
) -> None:
    """A private update through the site, then a public one straight to the hub: Alice (with
    the cookie) gets the gap's update and both, in order; Mallory only the public one."""
    httpx.post(f"{site}/books/1", json={"title": "Dune Messiah"}).raise_for_status()
    private_id = example.books[1]["last_update"]
    token = publisher_token(draft_08(PUBLISHER_KEY, hub_url))
    with Publisher(hub_url, token, protocol="draft-08") as publisher:
        public_id = publisher.publish(TOPIC, json.dumps({"title": "public notice"}))
    assert await received(alice, 3) == [
        f"In the gap ({gap_id})",
        f"Dune Messiah ({private_id})",
        f"public notice ({public_id})",
    ]
    assert await received(mallory, 1) == [json.dumps({"title": "public notice"})]


@pytest.mark.browser
async def test_subscriber_js_receives_private_updates_only_with_the_cookie(
    browser: Any, example: ModuleType, hub: tuple[MercureHub, str]
) -> None:
    double, hub_url = hub
    with serve_wsgi(example.app) as site:
        double.cors_origins = (site,)
        httpx.post(f"{site}/books/1", json={"title": "Before the page"}).raise_for_status()
        before_page = example.books[1]["last_update"]

        # Alice loads the page: subscriber.js fetches /books/1 (Link headers + HttpOnly cookie).
        # An update lands after /books/1 rendered but before EventSource connects: the
        # last-event-id from discovery, sent as last_event_id, makes the hub replay it.
        alice = await open_with_an_update_in_the_gap(browser, site, hub_url)
        assert COOKIE not in await alice.evaluate("document.cookie")  # HttpOnly
        gap_id = example.books[1]["last_update"]
        assert f"last_event_id={before_page}".replace(":", "%3A") in double.subscribe_urls[0]
        assert double.subscribe_urls[0].startswith("match=https%3A%2F%2Fexample.com%2Fbooks%2F1")

        # Mallory is on the same origin and subscribes to the same topic, without the cookie.
        mallory = await subscribe_without_the_cookie(browser, site, hub_url)
        await check_private_then_public(example, site, hub_url, alice, mallory, gap_id)


# --- the same example against sidestream's own hub (sidestream.mercure_hub) -------------------


@pytest.mark.browser
async def test_the_example_against_sidestreams_own_hub(
    browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_port, site_port = free_port(), free_port()
    site = f"http://127.0.0.1:{site_port}"
    hub_url = f"http://127.0.0.1:{hub_port}{HUB_PATH}"
    app = create_app(
        AsyncBus(connect_async("memory://"), prefix=f"mercure-example-{uuid.uuid4().hex}:"),
        authorize=authorizer(draft_08(SUBSCRIBER_KEY, hub_url)),
        cors_origins=[site],  # subscriber.js runs on the site and sends the cookie
    )
    install(
        app,
        app.hub,
        MercureSettings(
            hub_url=hub_url,
            publisher_tokens=draft_08(PUBLISHER_KEY, hub_url),
            subscriber_tokens=draft_08(SUBSCRIBER_KEY, hub_url),
            anonymous=True,
        ),
    )
    monkeypatch.setenv("MERCURE_HUB_URL", hub_url)
    monkeypatch.setenv("MERCURE_PUBLISHER_JWT_KEY", PUBLISHER_KEY)
    monkeypatch.setenv("MERCURE_SUBSCRIBER_JWT_KEY", SUBSCRIBER_KEY)
    example = load_example("mercure/app.py")
    # The hub and the site must know each other's URL before either starts (the tokens name
    # the hub, the hub's CORS names the site): both ports are chosen beforehand.
    with serve_asgi(app, port=hub_port), serve_wsgi(example.app, port=site_port):
        httpx.post(f"{site}/books/1", json={"title": "Before the page"}).raise_for_status()
        alice = await open_with_an_update_in_the_gap(browser, site, hub_url)
        gap_id = example.books[1]["last_update"]  # the publisher's urn:uuid, found in history

        mallory = await subscribe_without_the_cookie(browser, site, hub_url)
        await check_private_then_public(example, site, hub_url, alice, mallory, gap_id)
        await alice.wait_for_timeout(300)
        assert len(await received(alice, 3)) == 3  # nothing twice
    example.publisher.close()
