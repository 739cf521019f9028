"""The stream service as a Mercure hub (sidestream.mercure_hub), held to draft-08.

Each test names the section of draft-dunglas-mercure-08 it comes from: s3 Subscription,
s4 Matcher Types, s5 Publication, s6_1 Presenting the Access Token, s6_2 Error Responses,
s6_3 Token Validation, s6_5 Publishers, s6_6 Subscribers, s7 Reconnection, s9_2 Protected
Resource Metadata, s13 Security Considerations. Most run in process on the embedded Redis;
the last ones start examples/mercure_hub/hub.py with uvicorn, twice, on a private redis-server,
and subscribe from Chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from mercure_cases import BAD_SUBSCRIPTION_QUERIES, DETAIL_TYPE, access_claims, matchers

from sidestream.bus import AsyncBus, connect_async
from sidestream.errors import MercureForbidden, MercureUnauthorized
from sidestream.mercure import Publisher
from sidestream.mercure_hub import MercureRoute, MercureSettings, install
from sidestream.service import create_app
from sidestream.testing import (
    StreamReader,
    free_port,
    read_events,
    serve_asgi,
    stop_process,
    wait_for_http,
    wait_until,
)
from sidestream.tokens import AccessTokenClaims, StreamTokens, authorizer

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "https://hub.example.com/.well-known/mercure"
SITE = "https://example.com"
PUBLISHER_KEY = "hub-publisher-key-of-32-bytes-long!!"
SUBSCRIBER_KEY = "hub-subscriber-key-of-32-bytes-long!"
DETAIL = DETAIL_TYPE
FORM = {"content-type": "application/x-www-form-urlencoded"}


def tokens(key: str, hub_url: str) -> StreamTokens:
    return StreamTokens(
        key, audience=hub_url, issuer=SITE, claims_format=AccessTokenClaims(client_id=SITE)
    )


def grant(key: str, hub_url: str, action: str, *written: str, **claims: Any) -> str:
    """A token granting `action` on matchers written `value` or `value urlpattern`."""
    payload = access_claims(
        issuer=SITE,
        audience=hub_url,
        subject="urn:uuid:subscriber",
        token_id=str(uuid.uuid4()),
        lifetime=120,
        details=[{"type": DETAIL, "actions": [action], "topics": matchers(*written)}],
        **claims,
    )
    return jwt.encode(payload, key, algorithm="HS256", headers={"typ": "at+jwt"})


class Hub:
    """A served hub: where it listens, and helpers to publish and subscribe."""

    def __init__(self, url: str, route: MercureRoute) -> None:
        self.url = url
        self.route = route

    def publisher(self, *matchers: str, **claims: Any) -> str:
        return grant(PUBLISHER_KEY, AUDIENCE, "publish", *(matchers or ("*",)), **claims)

    def subscriber(self, *matchers: str, **claims: Any) -> str:
        return grant(SUBSCRIBER_KEY, AUDIENCE, "subscribe", *matchers, **claims)

    def post(self, body: str, bearer: str | None = "default", **headers: str) -> httpx.Response:
        sent = dict(FORM, **headers)
        if bearer == "default":
            bearer = self.publisher()
        if bearer is not None:
            sent["authorization"] = f"Bearer {bearer}"
        return httpx.post(self.url, content=body.encode(), headers=sent, timeout=10)

    def publish(self, body: str) -> str:
        response = self.post(body)
        assert response.status_code == 200, response.text
        return response.text

    def read(self, query: str, count: int, timeout: float = 3, **headers: str) -> Any:
        return read_events(f"{self.url}?{query}", count=count, timeout=timeout, headers=headers)


@pytest.fixture
def hub() -> Iterator[Hub]:
    # The hub's URL (its resource identifier) is the public one, as behind a load balancer;
    # the test reaches it on a loopback port.
    prefix = f"mercure-hub-test-{uuid.uuid4().hex}:"
    app = create_app(
        AsyncBus(connect_async("memory://"), prefix=prefix),
        authorize=authorizer(tokens(SUBSCRIBER_KEY, AUDIENCE)),
        heartbeat=1.0,
    )
    settings = MercureSettings(
        hub_url=AUDIENCE,
        publisher_tokens=tokens(PUBLISHER_KEY, AUDIENCE),
        subscriber_tokens=tokens(SUBSCRIBER_KEY, AUDIENCE),
        anonymous=True,
    )
    route = install(app, app.hub, settings)
    with serve_asgi(app) as base:
        yield Hub(base + "/.well-known/mercure", route)


def q(value: str) -> str:
    return quote(value, safe="")


# --- section 5: publication -----------------------------------------------------------------


def test_s5_publish_answers_200_text_plain_with_the_id_and_dispatches(hub: Hub) -> None:
    with httpx.stream("GET", f"{hub.url}?match=*", timeout=10) as response:
        stream = StreamReader(response)
        stream.read_until(lambda: b"\n\n" in stream.raw)
        answer = hub.post("topic=t&data=first&type=note&retry=2500")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        generated = answer.text
        assert generated.startswith("#")  # s5: a fragment is a valid hub-generated id
        supplied = hub.publish("topic=t&data=second&id=urn%3Auuid%3A7")
        events = stream.wait_events(2)
    assert [(e.id, e.data, e.event, e.retry) for e in events] == [
        (generated, "first", "note", 2500),
        ("urn:uuid:7", "second", None, None),
    ]
    assert supplied == "urn:uuid:7"


def test_s13_2_data_lines_cannot_inject_fields(hub: Hub) -> None:
    hub.publish("topic=t&data=" + q("a\nevent: forged\nid: forged\r\nb"))
    (event,) = hub.read("match=t&last_event_id=earliest", 1).events
    assert (event.data, event.event) == ("a\nevent: forged\nid: forged\nb", None)
    assert event.id != "forged"


@pytest.mark.parametrize(
    "body",
    [
        "data=no-topic",
        "topic=*",
        "topic=a&topic=*",
        "topic=%2F.well-known%2Fmercure",
        "topic=" + q("/.well-known/mercure/subscriptions/exact/a/b"),
        "topic=" + q("https://any.example/.well-known/%6Dercure/x"),
        "topic=" + q("/.well-known/mercure/../mercure/x"),
        "topic=a%00b",
        "topic=" + q("a\u200bb"),
        "topic=t&id=%23frag",
        "topic=t&id=earliest",
        "topic=t&id=a%0Ab",
        "topic=t&type=mercure",
        "topic=t&type=a%0Db",
        "topic=t&retry=soon",
        "topic=t&retry=" + q("\u00b2"),
        "topic=%FF",
    ],
)
def test_s5_malformed_publishes_are_400(hub: Hub, body: str) -> None:
    response = hub.post(body)
    assert response.status_code == 400, response.text
    assert hub.route.published == 0


def test_s5_form_encoding_limits_and_private_by_presence(hub: Hub) -> None:
    assert hub.post('{"topic": "t"}', **{"content-type": "application/json"}).status_code == 400
    assert hub.post("topic=t&data=" + "x" * 70_000).status_code == 413
    assert hub.post("&".join(["topic=t"] * 33)).status_code == 413
    hub.publish("topic=t&private=&data=hidden&unknown_field=ignored")
    assert hub.read("match=t&last_event_id=earliest", 1, timeout=1).events == []  # anonymous
    seen = hub.read(
        "match=t&last_event_id=earliest",
        1,
        authorization=f"Bearer {hub.subscriber('t')}",
    )
    assert [e.data for e in seen.events] == ["hidden"]


# --- section 6: authorization ------------------------------------------------------------------


def test_s6_2_no_token_is_401_with_a_challenge_without_error(hub: Hub) -> None:
    response = hub.post("topic=t", bearer=None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "error=" not in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example"},
        {"aud": "https://other.example/.well-known/mercure"},
        {"exp": int(time.time()) - 60},
        {"authorization_details": [{"type": DETAIL, "actions": ["publish"], "topics": []}]},
    ],
    ids=["iss", "aud", "exp", "malformed-detail"],
)
def test_s6_3_invalid_tokens_are_401_invalid_token(hub: Hub, claims: dict[str, Any]) -> None:
    response = hub.post("topic=t", bearer=hub.publisher(**claims))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    typ = jwt.encode({"iss": SITE}, PUBLISHER_KEY, algorithm="HS256")  # typ JWT
    assert hub.post("topic=t", bearer=typ).status_code == 401


def test_s6_5_every_topic_needs_a_publish_grant(hub: Hub) -> None:
    books = hub.publisher("https://example.com/books/:id urlpattern")
    assert hub.post("topic=" + q("https://example.com/books/1"), bearer=books).status_code == 200
    both = "topic=" + q("https://example.com/books/2") + "&topic=" + q("https://example.com/u/1")
    refused = hub.post(both, bearer=books)
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    assert hub.route.published == 1


def test_s6_1_header_wins_cookie_alone_serves_and_needs_an_origin(hub: Hub) -> None:
    cookie = f"__Secure-mercure_access_token={hub.publisher()}"
    bad = hub.publisher(iss="https://evil.example")
    assert hub.post("topic=t", bearer=bad, cookie=cookie).status_code == 401
    assert hub.post("topic=t", bearer=None, cookie=cookie).status_code == 403  # no Origin
    origin = "https://hub.example.com"  # the hub's own origin
    assert hub.post("topic=t", bearer=None, cookie=cookie, origin=origin).status_code == 200
    other = hub.post("topic=t", bearer=None, cookie=cookie, origin="https://evil.example")
    assert other.status_code == 403
    assert hub.post("topic=t", bearer=None, authorization="Basic eDp5").status_code == 400
    query = httpx.post(
        f"{hub.url}?access_token={hub.publisher()}", content=b"topic=t", headers=FORM
    )
    assert query.status_code == 401


# --- sections 3, 4 and 6.6: subscription ------------------------------------------------------


@pytest.mark.parametrize("query", BAD_SUBSCRIPTION_QUERIES)
def test_s3_bad_matcher_parameters_are_400(hub: Hub, query: str) -> None:
    assert httpx.get(f"{hub.url}?{query}").status_code == 400


def test_s3_s4_matchers_route_updates(hub: Hub) -> None:
    for path in ("foo", "bar/1", "bar/1/x", "baz"):
        hub.publish("topic=" + q(f"https://example.com/{path}") + f"&data={q(path)}")
    query = (
        "match="
        + q("https://example.com/foo")
        + "&match_urlpattern="
        + q("https://example.com/bar/:id")
        + "&last_event_id=earliest"
    )
    capture = hub.read(query, 3, timeout=2)
    assert [e.data for e in capture.events] == ["foo", "bar/1"]
    assert capture.headers["mercure-last-event-id"] == "earliest"
    assert len(hub.read("match_exact=*&last_event_id=earliest", 4).events) == 4


def test_s6_6_private_updates_only_to_a_matching_grant(hub: Hub) -> None:
    hub.publish("topic=" + q("https://example.com/books/1") + "&data=public")
    hub.publish(
        "topic="
        + q("https://example.com/books/1")
        + "&topic="
        + q("https://example.com/users/42/books/1")
        + "&private=on&data=private"
    )
    query = "match_urlpattern=" + q("https://example.com/books/:id") + "&last_event_id=earliest"

    def seen(bearer: str | None) -> list[str]:
        headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        return [e.data for e in hub.read(query, 2, timeout=1.5, **headers).events]

    assert seen(None) == ["public"]
    assert seen(hub.subscriber("https://example.com/books/2")) == ["public"]
    assert seen(hub.subscriber("https://example.com/users/42/* urlpattern")) == [
        "public",
        "private",
    ]
    bad = httpx.get(f"{hub.url}?match=t", headers={"authorization": "Bearer not.a.token"})
    assert (bad.status_code, bad.headers["www-authenticate"]) == (
        401,
        'Bearer error="invalid_token"',
    )


def test_s6_6_anonymous_subscribers_refused_unless_allowed(hub: Hub) -> None:
    hub.route.settings = replace(hub.route.settings, anonymous=False)
    refused = httpx.get(f"{hub.url}?match=t")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="mercure"'


def test_s3_limits_on_matchers_and_connections(hub: Hub) -> None:
    # s3: "Requests exceeding any such limit MUST be rejected with a 400"; too many
    # connections "MAY [be rejected] with a 429".
    hub.route.settings = replace(hub.route.settings, max_matchers=2, max_streams=1)
    assert httpx.get(f"{hub.url}?match=a&match=b&match=c").status_code == 400
    with httpx.stream("GET", f"{hub.url}?match=a", timeout=10) as response:
        stream = StreamReader(response)
        stream.read_until(lambda: b"\n\n" in stream.raw)
        second = httpx.get(f"{hub.url}?match=a")
    assert (second.status_code, second.headers["retry-after"]) == (429, "5")


def test_the_route_is_opt_in_on_create_app() -> None:
    def app(**options: Any) -> Any:
        bus = AsyncBus(connect_async("memory://"), prefix=f"mercure-opt-{uuid.uuid4().hex}:")
        return create_app(bus, authorize=authorizer(tokens(SUBSCRIBER_KEY, AUDIENCE)), **options)

    settings = MercureSettings(hub_url=AUDIENCE, publisher_tokens=tokens(PUBLISHER_KEY, AUDIENCE))
    with serve_asgi(app()) as plain, serve_asgi(app(mercure=settings)) as with_hub:
        assert httpx.get(f"{plain}/.well-known/mercure?match=t").status_code == 404
        refused = httpx.get(f"{with_hub}/.well-known/mercure?match=t")  # anonymous is off
        assert (refused.status_code, refused.headers["www-authenticate"]) == (
            401,
            'Bearer realm="mercure"',
        )


def test_s3_cors_for_credentialed_subscribers() -> None:
    # s3: with credentials, Access-Control-Allow-Origin is an allowlisted origin, never `*`
    # and never reflected, with Access-Control-Allow-Credentials: true.
    app = create_app(
        AsyncBus(connect_async("memory://"), prefix=f"mercure-cors-{uuid.uuid4().hex}:"),
        authorize=authorizer(tokens(SUBSCRIBER_KEY, AUDIENCE)),
        cors_origins=["https://app.example.com"],
    )
    install(
        app,
        app.hub,
        MercureSettings(
            hub_url=AUDIENCE, publisher_tokens=tokens(PUBLISHER_KEY, AUDIENCE), anonymous=True
        ),
    )
    with serve_asgi(app) as base:
        url = f"{base}/.well-known/mercure?match=t"
        allowed = read_events(
            url, count=1, timeout=1, headers={"origin": "https://app.example.com"}
        )
        other = read_events(url, count=1, timeout=1, headers={"origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "mercure-last-event-id" in allowed.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


def test_s6_6_the_stream_closes_at_the_token_exp(hub: Hub) -> None:
    bearer = hub.subscriber("t", exp=int(time.time()) + 2)
    with httpx.stream(
        "GET", f"{hub.url}?match=t", headers={"authorization": f"Bearer {bearer}"}, timeout=10
    ) as response:
        assert list(StreamReader(response).follow()) == []  # it ends by itself


def test_a_client_that_leaves_frees_its_stream(hub: Hub) -> None:
    for _ in range(3):
        with httpx.stream("GET", f"{hub.url}?match=t", timeout=10) as response:
            stream = StreamReader(response)
            stream.read_until(lambda reader=stream: b"\n\n" in reader.raw)
            assert hub.route.hub.open_streams >= 1
    wait_until(lambda: hub.route.hub.open_streams == 0, timeout=10)


def test_s3_heartbeats_keep_an_idle_stream_alive(hub: Hub) -> None:
    with httpx.stream("GET", f"{hub.url}?match=t", timeout=10) as response:
        stream = StreamReader(response)
        stream.read_until(lambda: stream.raw.count(b":") >= 2)
    assert stream.events == []


# --- section 7: reconnection --------------------------------------------------------------------


def test_s7_last_event_id_resolution(hub: Hub) -> None:
    first = hub.publish("topic=t&data=1&id=urn%3Aa")
    hub.publish("topic=t&data=2&private=on")
    third = hub.publish("topic=t&data=3")
    hub.publish("topic=t&data=4&id=urn%3Aa")  # a reused id
    by_query = hub.read("match=t&last_event_id=urn%3Aa", 3, timeout=1.5)
    # The earliest update bearing the id; the private one is re-authorized and withheld.
    assert [e.data for e in by_query.events] == ["3", "4"]
    assert by_query.headers["mercure-last-event-id"] == first
    by_header = hub.read("match=t&last_event_id=urn%3Aa", 2, **{"last-event-id": third})
    assert [e.data for e in by_header.events] == ["4"]  # the header wins
    assert by_header.headers["mercure-last-event-id"] == third
    unknown = hub.read("match=t&last_event_id=urn%3Agone", 3, timeout=1.5)
    assert unknown.headers["mercure-last-event-id"] == "earliest"
    assert [e.data for e in unknown.events] == ["1", "3", "4"]
    live = hub.read("match=t", 1, timeout=1)
    assert "mercure-last-event-id" not in live.headers
    assert live.events == []


def test_s7_earliest_on_an_empty_hub(hub: Hub) -> None:
    capture = hub.read("match=t&last_event_id=earliest", 1, timeout=1)
    assert (capture.status, capture.events) == (200, [])
    assert capture.headers["mercure-last-event-id"] == "earliest"


# --- draft-07 (hubs 0.x) clients, where configured ---------------------------------------------


def test_draft_07_clients_are_refused_unless_configured(hub: Hub) -> None:
    assert httpx.get(f"{hub.url}?topic=t").status_code == 400
    old = StreamTokens(PUBLISHER_KEY, audience=AUDIENCE).issue(None, publish=["*"])
    assert hub.post("topic=t", bearer=old).status_code == 401


def test_draft_07_clients_where_configured(hub: Hub) -> None:
    publishers = StreamTokens(PUBLISHER_KEY, audience=AUDIENCE)  # the `mercure` claim
    readers = StreamTokens(SUBSCRIBER_KEY, audience=AUDIENCE)
    hub.route.settings = replace(
        hub.route.settings,
        draft_07_publisher_tokens=publishers,
        draft_07_subscriber_tokens=readers,
    )
    with Publisher(hub.url, publishers, protocol="draft-07") as publisher:
        first = publisher.publish("https://example.com/books/1", "public")
        publisher.publish("https://example.com/books/2", "private", private=True)
    narrow = publishers.issue(None, publish=["https://example.com/books/{id}"])
    assert hub.post("topic=" + q("https://example.com/users/1"), bearer=narrow).status_code == 403
    assert hub.post("topic=" + q("https://example.com/books/3") + "&data=three", bearer=narrow)
    selector = "topic=" + q("https://example.com/books/{id}")
    cookie = "mercureAuthorization=" + readers.issue(
        "u", subscribe=["https://example.com/books/{id}"]
    )
    allowed = hub.read(f"{selector}&lastEventID=earliest", 3, cookie=cookie)
    assert [e.data for e in allowed.events] == ["public", "private", "three"]
    assert allowed.headers["last-event-id"] == allowed.headers["mercure-last-event-id"]
    anonymous = hub.read(f"{selector}&lastEventID={q(first)}", 2, timeout=1.5)
    assert [e.data for e in anonymous.events] == ["three"]
    assert anonymous.headers["last-event-id"] == first
    assert httpx.get(f"{hub.url}?topic=" + q("https://e.com/{?x}")).status_code == 400
    # Draft-08 clients are served as before on the same hub.
    assert [e.data for e in hub.read("match=*&last_event_id=earliest", 3).events] == [
        "public",
        "three",
    ]


# --- section 9.2 and the publisher --------------------------------------------------------------


def test_s9_2_protected_resource_metadata(hub: Hub) -> None:
    origin = hub.url.split("/.well-known")[0]
    document = httpx.get(f"{origin}/.well-known/oauth-protected-resource/.well-known/mercure")
    assert document.json() == {
        "resource": AUDIENCE,
        "authorization_details_types_supported": [DETAIL],
        "bearer_methods_supported": ["header"],
        "mercure_cookie": "__Secure-mercure_access_token",
    }


def test_the_publisher_against_our_hub(hub: Hub) -> None:
    issuer = tokens(PUBLISHER_KEY, AUDIENCE)
    with Publisher(hub.url, issuer, protocol="draft-08") as publisher:
        sent = publisher.publish("https://example.com/books/1", "from the publisher")
        with pytest.raises(MercureForbidden, match="insufficient_scope"):
            Publisher(
                hub.url, hub.publisher("https://example.com/other"), protocol="draft-08"
            ).publish("https://example.com/books/1")
    with pytest.raises(MercureUnauthorized, match="invalid_token"):
        Publisher(hub.url, tokens(SUBSCRIBER_KEY, AUDIENCE), protocol="draft-08").publish("t")
    (event,) = hub.read("match=*&last_event_id=earliest", 1).events
    assert (event.id, event.data) == (sent, "from the publisher")


# --- the example, as its page runs it ----------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (apt-get install redis-server)"
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(port), timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc, timeout=10)


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_example(redis_url: str, audience: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "MERCURE_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        "MERCURE_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "MERCURE_ISSUER": SITE,
        "MERCURE_AUDIENCE": audience,
        "MERCURE_ANONYMOUS": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "--app-dir", "examples/mercure_hub", "hub:app"]
    proc = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", proc, timeout=20)
    except BaseException:
        stop_process(proc)
        raise
    return proc


@pytest.fixture
def two_hubs(private_redis: str) -> Iterator[tuple[str, str, str]]:
    # One resource identifier for both processes, as behind a load balancer.
    audience = AUDIENCE
    ports = free_port(), free_port()
    procs = [start_example(private_redis, audience, port) for port in ports]
    try:
        yield audience, *(f"http://127.0.0.1:{port}/.well-known/mercure" for port in ports)
    finally:
        for proc in procs:
            stop_process(proc, timeout=15)


@pytest.mark.slow
@pytest.mark.redis
def test_two_processes_on_one_redis_each_subscriber_gets_every_update_once(
    two_hubs: tuple[str, str, str],
) -> None:
    audience, first, second = two_hubs
    bearer = grant(PUBLISHER_KEY, audience, "publish", "*")
    readers = []
    with (
        httpx.stream("GET", f"{first}?match=t", timeout=20) as a,
        httpx.stream("GET", f"{second}?match=t", timeout=20) as b,
    ):
        for response in (a, b):
            reader = StreamReader(response)
            reader.read_until(lambda r=reader: b"\n\n" in r.raw)
            readers.append(reader)
        sent = []
        for n in range(10):
            target = (first, second)[n % 2]
            answer = httpx.post(
                target,
                content=f"topic=t&data={n}".encode(),
                headers={**FORM, "authorization": f"Bearer {bearer}"},
            )
            assert answer.status_code == 200, answer.text
            sent.append(answer.text)
        for reader in readers:
            events = reader.wait_events(10)
            assert [e.id for e in events] == sent
            assert [e.data for e in events] == [str(n) for n in range(10)]
    # Resuming on the other process from the first id replays the rest, once.
    capture = read_events(
        f"{second}?match=t&last_event_id={q(sent[0])}",
        count=10,
        timeout=3,
    )
    assert [e.id for e in capture.events] == sent[1:]


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.browser
async def test_eventsource_in_chromium_on_the_example_hub(
    browser: Any, two_hubs: tuple[str, str, str]
) -> None:
    audience, first, second = two_hubs
    page = await (await browser.new_context()).new_page()
    await page.goto(first.split("/.well-known")[0] + "/")  # the hub's origin: / answers
    await page.evaluate(
        """(hub) => {
            window.got = [];
            const url = new URL(hub);
            url.searchParams.append("match_urlpattern", "https://example.com/books/:id");
            const source = new EventSource(url);
            source.onmessage = (e) => window.got.push([e.lastEventId, e.data]);
            window.source = source;
        }""",
        first,
    )
    await page.wait_for_function("window.source.readyState === 1", timeout=10_000)
    bearer = grant(PUBLISHER_KEY, audience, "publish", "*")
    ids = []
    for body in (
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&data=one",
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F2&data=secret&private=on",
        "topic=https%3A%2F%2Fexample.com%2Fauthors%2F1&data=elsewhere",
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F3&data=three",
    ):
        answer = httpx.post(
            second, content=body.encode(), headers={**FORM, "authorization": f"Bearer {bearer}"}
        )
        ids.append(answer.text)
    await page.wait_for_function("window.got.length >= 2", timeout=10_000)
    await page.wait_for_timeout(500)  # nothing more may arrive
    assert await page.evaluate("window.got") == [[ids[0], "one"], [ids[3], "three"]]


@pytest.mark.parametrize(
    ("method", "query", "body", "headers"),
    [
        ("GET", b"match=t", b"", {"last-event-id": "x" * 5000}),
        ("GET", b"match=t&last_event_id=%FF", b"", {}),
        ("GET", b"match=%C3%28", b"", {}),
        ("GET", b"match=t", b"", {"authorization": "Bearer " + "a" * 3000}),
        ("GET", b"match=t", b"", {"authorization": "Bearer e30.e30.e30"}),
        ("GET", b"match=t", b"", {"cookie": '__Secure-mercure_access_token="\\\x01'}),
        ("GET", b"match=t", b"", {"authorization": "Bearer"}),
        ("POST", b"", b"topic=t&data=%FF%FE", {}),
        ("POST", b"", b"%%%%", {}),
        ("POST", b"", b"topic=t", {"content-type": "application/x-www-form-urlencoded; x"}),
        ("POST", b"", b"topic=" + b"x" * 3000, {}),
        ("POST", b"", b"topic=t&retry=99999999999999999999999", {}),
        ("DELETE", b"match=t", b"", {}),
    ],
)
def test_bad_input_gets_a_4xx_never_a_500(
    hub: Hub, method: str, query: bytes, body: bytes, headers: dict[str, str]
) -> None:
    sent = {**FORM, **headers} if method == "POST" else headers
    if method == "POST" and "authorization" not in sent:
        sent["authorization"] = f"Bearer {hub.publisher()}"
    url = httpx.URL(hub.url, query=query)
    with (
        httpx.Client(timeout=5) as client,
        client.stream(method, url, content=body or None, headers=sent) as response,
    ):
        status = response.status_code
    assert status < 500, (status, method, query, body, headers)
