"""sidestream.mercure against the hub double (tests/mercure_hub.py) speaking draft-07, as hubs
0.x do; tests/test_mercure_spec_publication.py runs the publisher against it in draft-08."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import flask
import httpx
import jwt
import pytest
from mercure_cases import DRAFT_07_SELECTOR_CASES, publish_to_double
from mercure_hub import Grants, MercureHub, matches

from sidestream.errors import (
    InvalidUpdate,
    MercureBadRequest,
    MercureError,
    MercureForbidden,
    MercurePayloadTooLarge,
    MercureUnauthorized,
    MercureUnavailable,
)
from sidestream.mercure import (
    LAST_EVENT_ID_PARAMS,
    LAST_EVENT_ID_RESPONSE_HEADERS,
    AsyncPublisher,
    MercureRateLimited,
    Publisher,
    RetryPolicy,
    TopicMatcher,
    Update,
    add_discovery,
    discovery_links,
    publisher_token,
    set_subscriber_cookie,
    subscriber_token,
    subscription_url,
)
from sidestream.tokens import AccessTokenClaims, StreamTokens

HUB = "https://hub.example.com/.well-known/mercure"
KEY = "publisher-key-of-at-least-32-bytes!!"
NO_WAIT = RetryPolicy(attempts=3, backoff=0)
UUID_ID = re.compile(
    r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)

Publish = Callable[..., Awaitable[str]]


@pytest.fixture
def issuer() -> StreamTokens:
    # A Mercure hub v0.x does not check `aud`; the double does when given one, so pin it.
    return StreamTokens(KEY, audience=HUB)


@pytest.fixture
def hub() -> MercureHub:
    return MercureHub(publisher_key=KEY, audience=HUB, protocol="draft-07")


@pytest.fixture
def all_topics(issuer: StreamTokens) -> str:
    return publisher_token(issuer)


@pytest.fixture(params=["sync", "async"])
def publish(request: pytest.FixtureRequest, hub: MercureHub, all_topics: str) -> Publish:
    """Publish through Publisher or AsyncPublisher: every behaviour is tested on both."""

    async def run(
        *args: Any, token: Any = all_topics, policy: RetryPolicy = NO_WAIT, **kw: Any
    ) -> str:
        return await publish_to_double(
            request.param, hub, HUB, token, "draft-07", policy, *args, **kw
        )

    return run


def form(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.content.decode(), keep_blank_values=True)


# --- the exact request ----------------------------------------------------------------------


async def test_exact_request_bytes_and_headers(
    publish: Publish, hub: MercureHub, all_topics: str
) -> None:
    returned = await publish(
        ["https://example.com/books/1", "https://example.com/users/7/?topic=books%2F1"],
        '{"title": "Dune"}\nsecond line',
        private=True,
        id="urn:uuid:00000000-0000-4000-8000-000000000001",
        type="book.updated",
        retry=3000,
    )
    (sent,) = hub.requests
    assert sent.method == "POST"
    assert str(sent.url) == HUB
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.headers["authorization"] == f"Bearer {all_topics}"
    assert sent.content == (
        b"topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"
        b"&topic=https%3A%2F%2Fexample.com%2Fusers%2F7%2F%3Ftopic%3Dbooks%252F1"
        b"&data=%7B%22title%22%3A+%22Dune%22%7D%0Asecond+line"
        b"&private=on"
        b"&id=urn%3Auuid%3A00000000-0000-4000-8000-000000000001"
        b"&type=book.updated"
        b"&retry=3000"
    )
    assert returned == "urn:uuid:00000000-0000-4000-8000-000000000001"
    (done,) = hub.history
    assert done.topics == [
        "https://example.com/books/1",
        "https://example.com/users/7/?topic=books%2F1",
    ]
    assert (done.data, done.private, done.type, done.retry) == (
        '{"title": "Dune"}\nsecond line',
        True,
        "book.updated",
        3000,
    )


async def test_minimal_update_gets_a_client_side_uuid_id(publish: Publish, hub: MercureHub) -> None:
    returned = await publish("https://example.com/books/1", "hello")
    (sent,) = hub.requests
    fields = form(sent)
    assert [name for name, _ in fields] == ["topic", "data", "id"]  # no private/type/retry
    assert UUID_ID.fullmatch(dict(fields)["id"])
    assert returned == dict(fields)["id"] == hub.history[0].id


async def test_returns_the_id_the_hub_assigned(publish: Publish, hub: MercureHub) -> None:
    # "Even if provided, the hub MAY ignore the ID provided by the client and generate its own."
    original = hub.handle
    hub.handle = lambda request: (original(request), httpx.Response(200, text="#42\n"))[1]  # type: ignore[method-assign]
    assert await publish("t", "x") == "#42"


# --- tokens -----------------------------------------------------------------------------------


async def test_issuer_signs_a_token_for_exactly_the_update_topics(
    publish: Publish, hub: MercureHub, issuer: StreamTokens
) -> None:
    await publish(["https://example.com/a", "https://example.com/b"], "x", token=issuer)
    token = hub.requests[0].headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=HUB)
    assert claims["mercure"]["publish"] == ["https://example.com/a", "https://example.com/b"]
    assert claims["exp"] - claims["iat"] == 60
    assert "sub" not in claims


async def test_token_not_covering_every_topic_is_forbidden(
    publish: Publish, hub: MercureHub, issuer: StreamTokens
) -> None:
    narrow = publisher_token(issuer, ["https://example.com/books/{id}"])
    assert await publish("https://example.com/books/1", "ok", token=narrow)
    with pytest.raises(MercureForbidden) as refused:
        await publish(["https://example.com/books/2", "https://example.com/users/1"], token=narrow)
    assert refused.value.status == 403
    assert "does not cover every topic of ['https://example.com/books/2'" in str(refused.value)
    assert len(hub.history) == 1  # "MUST NOT dispatch the update (even if some topics [...])"


def test_subscriber_token_claims(issuer: StreamTokens) -> None:
    token = subscriber_token(issuer, ["https://example.com/users/7/{?topic}"], subject="user-7")
    claims = issuer.verify(token)
    assert (claims.subject, claims.subscribe, claims.publish) == (
        "user-7",
        ("https://example.com/users/7/{?topic}",),
        (),
    )


# --- each error status maps to its exception ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, MercureBadRequest),
        (401, MercureUnauthorized),
        (403, MercureForbidden),
        (413, MercurePayloadTooLarge),
        (404, MercureError),
        (429, MercureRateLimited),
    ],
)
async def test_client_errors_raise_their_exception_without_retry(
    publish: Publish, hub: MercureHub, status: int, error: type[MercureError]
) -> None:
    hub.fail_next = [status]
    with pytest.raises(error) as raised:
        await publish("t", "x")
    assert type(raised.value) is error
    assert raised.value.status == status
    assert raised.value.body == "injected failure"
    assert len(hub.requests) == 1


def test_rate_limited_lives_with_the_other_errors_and_stays_importable_from_mercure() -> None:
    import sidestream.errors
    import sidestream.mercure

    assert sidestream.mercure.MercureRateLimited is sidestream.errors.MercureRateLimited
    assert sidestream.errors.MercureRateLimited.__module__ == "sidestream.errors"
    assert issubclass(sidestream.errors.MercureRateLimited, sidestream.errors.MercureError)


async def test_real_rejections_from_the_double(
    publish: Publish, hub: MercureHub, issuer: StreamTokens
) -> None:
    with pytest.raises(MercureUnauthorized):
        await publish("t", token=publisher_token(StreamTokens("w" * 32, audience=HUB)))
    with pytest.raises(MercureForbidden):
        await publish("t", token=publisher_token(issuer, []))  # empty mercure.publish
    hub.max_body = 100
    with pytest.raises(MercurePayloadTooLarge, match=r"update of 1[0-9]{2} bytes is too large"):
        await publish("t", "x" * 100)
    assert hub.history == []


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried_then_raises_unavailable(
    publish: Publish, hub: MercureHub, status: int
) -> None:
    hub.fail_next = [status] * 3
    with pytest.raises(MercureUnavailable) as raised:
        await publish("t", "x")
    assert raised.value.status == status
    assert len(hub.requests) == 3
    assert len({dict(form(r))["id"] for r in hub.requests}) == 1


async def test_timeouts_are_retried_with_the_same_id(publish: Publish, hub: MercureHub) -> None:
    hub.fail_next = [httpx.ReadTimeout("slow hub"), 503]
    returned = await publish("t", "x")
    ids = [dict(form(r))["id"] for r in hub.requests]
    assert len(ids) == 3 and len(set(ids)) == 1
    assert returned == ids[0]
    assert len(hub.history) == 1


async def test_a_retry_after_a_lost_answer_repeats_the_update_with_the_same_id(
    publish: Publish, hub: MercureHub
) -> None:
    # The hub dispatched, then the answer was lost: the retry carries the same id. Hubs do not
    # drop a reused id (the spec only recommends unique ids), so the update is there twice,
    # and the shared id is what lets a subscriber recognise the repeat.
    hub.dispatch_then = [httpx.ReadTimeout("answer lost")]
    returned = await publish("t", "x")
    assert len(hub.requests) == 2
    assert [done.id for done in hub.history] == [returned, returned]


async def test_network_errors_exhaust_into_unavailable(publish: Publish, hub: MercureHub) -> None:
    hub.fail_next = [httpx.ConnectError("refused")] * 2
    with pytest.raises(MercureUnavailable, match=r"no answer from .* after 2 attempts") as raised:
        await publish("t", policy=RetryPolicy(attempts=2, backoff=0))
    assert raised.value.status is None
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(attempts=5, backoff=0.2, max_backoff=0.5)
    for _ in range(50):
        assert 0.1 <= policy.delay(1) <= 0.2
        assert 0.2 <= policy.delay(2) <= 0.4
        assert 0.25 <= policy.delay(3) <= 0.5
    with pytest.raises(ValueError, match="attempts >= 1"):
        RetryPolicy(attempts=0)


# --- updates are checked before anything is sent ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topics": ()}, "topics must be a non-empty sequence"),
        ({"topics": "t"}, "not a string"),
        ({"topics": ("",)}, "non-empty string"),
        ({"topics": ("a\nb",)}, "control character U\\+000A"),
        ({"topics": ("t",), "id": "#1"}, "must not start with '#'"),
        ({"topics": ("t",), "id": "earliest"}, "must not be 'earliest'"),
        ({"topics": ("t",), "id": "a\rb"}, "id 'a\\\\rb' contains the control character U\\+000D"),
        ({"topics": ("t",), "type": "x\u200by"}, "control character U\\+200B"),
        ({"topics": ("t",), "type": "mercure"}, "reserved"),
        ({"topics": ("t",), "retry": -1}, "non-negative int"),
        ({"topics": ("t",), "retry": True}, "non-negative int"),
    ],
)
def test_invalid_updates_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidUpdate, match=message):
        Update(**kwargs)


async def test_invalid_update_sends_nothing(publish: Publish, hub: MercureHub) -> None:
    with pytest.raises(InvalidUpdate):
        await publish("t", id="#mine")
    assert hub.requests == []


def test_hub_url_must_be_http() -> None:
    with pytest.raises(InvalidUpdate, match="http"):
        Publisher("hub.example.com/.well-known/mercure", "t", protocol="draft-07")


# --- the double itself must reject what the spec rejects ------------------------------------------


def post(
    hub: MercureHub,
    body: bytes,
    token: str | None,
    content_type: str = "application/x-www-form-urlencoded",
) -> httpx.Response:
    headers = {"content-type": content_type} | (
        {"authorization": f"Bearer {token}"} if token else {}
    )
    with httpx.Client(transport=hub.transport()) as client:
        return client.post(HUB, content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"data=x", 400, 'Missing "topic" parameter'),
        (b"topic=t&id=%23frag", 400, 'Invalid "id" parameter'),
        (b"topic=t&retry=soon", 400, 'Invalid "retry" parameter'),
        (b"topic=t&topic=forbidden", 403, "the token does not grant publish on every topic"),
    ],
)
def test_double_enforces_the_publication_rules(
    hub: MercureHub, issuer: StreamTokens, body: bytes, status: int, reason: str
) -> None:
    response = post(hub, body, publisher_token(issuer, ["t"]))
    assert (response.status_code, response.text) == (status, reason)
    assert hub.history == []


def test_double_enforces_authorization_and_encoding(hub: MercureHub, issuer: StreamTokens) -> None:
    assert post(hub, b"topic=t", None).status_code == 401
    assert post(hub, b"topic=t", "not-a-jwt").status_code == 401
    assert (
        post(hub, b'{"topic": "t"}', publisher_token(issuer), "application/json").status_code == 400
    )
    response = post(hub, b"topic=t&private=", publisher_token(issuer))
    assert response.status_code == 200
    assert hub.history[0].private is True  # "it CAN contain any value, including an empty string"


@pytest.mark.parametrize(("selector", "topic", "matched"), DRAFT_07_SELECTOR_CASES)
def test_double_topic_selectors(selector: str, topic: str, matched: bool) -> None:
    assert matches(topic, selector) is matched


def test_double_private_updates_need_a_matching_subscribe_claim(hub: MercureHub) -> None:
    post(
        hub,
        b"topic=https://example.com/books/1&topic=https://example.com/users/7/books/1&private=on",
        publisher_token(StreamTokens(KEY, audience=HUB)),
    )
    (update,) = hub.history
    wanted = hub.routing([("topic", "https://example.com/books/{id}")])

    def grants(*selectors: str) -> Grants:
        return hub.draft_07_grants({"mercure": {"subscribe": list(selectors)}})

    assert hub.may_receive(update, wanted, grants("https://example.com/users/7/{+rest}"))
    assert not hub.may_receive(update, wanted, grants("https://example.com/users/8/{+rest}"))
    assert not hub.may_receive(update, wanted, grants())


# --- discovery and the subscriber cookie ---------------------------------------------------------


def test_discovery_links_quote_the_last_event_id() -> None:
    assert discovery_links(HUB) == [f'<{HUB}>; rel="mercure"']
    assert discovery_links(HUB, last_event_id='a"b\\c') == [
        f'<{HUB}>; rel="mercure"; last-event-id="a\\"b\\\\c"'
    ]
    with pytest.raises(InvalidUpdate, match="cannot be a Link target"):
        discovery_links("https://x/>; rel=evil")


def test_add_discovery_on_a_flask_response() -> None:
    response = flask.Response("{}")
    add_discovery(response, HUB, topic="https://example.com/books/1", last_event_id="urn:uuid:9")
    assert response.headers.getlist("Link") == [
        f'<{HUB}>; rel="mercure"; last-event-id="urn:uuid:9"',
        '<https://example.com/books/1>; rel="self"',
    ]


def test_subscriber_cookie_has_the_spec_attributes() -> None:
    response = flask.Response("{}")
    set_subscriber_cookie(response, "header.payload.sig", HUB, max_age=300, protocol="draft-07")
    (cookie,) = response.headers.getlist("Set-Cookie")
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0] == "mercureAuthorization=header.payload.sig"
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/.well-known/mercure"):
        assert attribute in parts
    assert "Max-Age=300" in parts
    assert {part.split("=")[0] for part in parts[1:]} == {
        "Expires",
        "Max-Age",
        "Secure",
        "HttpOnly",
        "Path",
        "SameSite",
    }
    with pytest.raises(ValueError, match="samesite"):
        set_subscriber_cookie(response, "t", HUB, max_age=1, protocol="draft-07", samesite="strict")


# --- draft-08: the version is chosen, refusals are read from WWW-Authenticate -------------------


D08_ISSUER = "https://example.com"


def draft_08_tokens(key: str = KEY) -> StreamTokens:
    return StreamTokens(
        key, audience=HUB, issuer=D08_ISSUER, claims_format=AccessTokenClaims(client_id=D08_ISSUER)
    )


def canned(response: httpx.Response) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: response))


def refusal(status: int, challenge: str | None, body: str = "") -> httpx.Response:
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    return httpx.Response(status, headers=headers, text=body)


@pytest.mark.parametrize(
    ("response", "error", "says"),
    [
        (refusal(401, "Bearer"), MercureUnauthorized, "no token reached the hub"),
        (
            refusal(401, 'Bearer error="invalid_token"'),
            MercureUnauthorized,
            "(invalid_token) (401 from POST",
        ),
        (
            refusal(401, 'Bearer error="invalid_token", error_description="expired"'),
            MercureUnauthorized,
            "(invalid_token: expired)",
        ),
        (
            refusal(403, 'Bearer error="insufficient_scope"'),
            MercureForbidden,
            "publish authorization_details does not cover every topic of ['t'] "
            "(insufficient_scope)",
        ),
        (
            refusal(400, 'Bearer error="invalid_request"'),
            MercureBadRequest,
            "could not read the token as presented (invalid_request)",
        ),
        (refusal(400, None, 'Missing "topic"'), MercureBadRequest, "malformed (POST"),
        (refusal(413, None), MercurePayloadTooLarge, "too large for the hub (413"),
        (
            httpx.Response(429, headers={"Retry-After": "7"}),
            MercureRateLimited,
            "limiting this publisher (429 from POST https://hub.example.com/.well-known/mercure); "
            "it asks to wait 7 s",
        ),
    ],
)
def test_s6_2_draft_08_refusals_are_read_from_the_bearer_challenge(
    response: httpx.Response, error: type[MercureError], says: str
) -> None:
    token = draft_08_tokens()
    publisher = Publisher(HUB, token, protocol="draft-08", client=canned(response))
    with publisher, pytest.raises(error) as raised:
        publisher.publish("t", "x")
    assert type(raised.value) is error
    assert says in str(raised.value)
    assert raised.value.status == response.status_code
    if isinstance(raised.value, MercureRateLimited):
        assert raised.value.retry_after == 7


def test_s5_draft_08_publish_sends_an_access_token_for_exactly_the_topics() -> None:
    seen: list[httpx.Request] = []

    def hub(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="urn:uuid:from-hub")

    client = httpx.Client(transport=httpx.MockTransport(hub))
    with Publisher(HUB, draft_08_tokens(), protocol="draft-08", client=client) as publisher:
        assert publisher.publish(["https://example.com/a", "https://example.com/b"]) == (
            "urn:uuid:from-hub"
        )
    token = seen[0].headers["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    verified = draft_08_tokens().verify(token)
    assert verified.subject == verified.client_id == D08_ISSUER
    assert [(d.actions, [m.match for m in d.topics]) for d in verified.details] == [
        (("publish",), ["https://example.com/a", "https://example.com/b"])
    ]
    assert verified.expires_at - jwt.decode(token, options={"verify_signature": False})["iat"] == 60


@pytest.mark.parametrize(
    "topic",
    [
        "/.well-known/mercure/subscriptions/exact/a/b",
        "https://hub.example.com/.well-known/mercure",
        "https://hub.example.com/.well-known/%6Dercure/subscriptions/x",
    ],
)
@pytest.mark.parametrize("protocol", ["draft-07", "draft-08"])
def test_s5_reserved_namespace_topics_are_refused_before_sending(topic: str, protocol: str) -> None:
    sent: list[httpx.Request] = []

    def hub(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, text="sent anyway")

    client = httpx.Client(transport=httpx.MockTransport(hub))
    token = draft_08_tokens() if protocol == "draft-08" else StreamTokens(KEY, audience=HUB)
    publisher = Publisher(HUB, token, protocol=protocol, client=client)  # type: ignore[arg-type]
    with publisher, pytest.raises(InvalidUpdate, match="reserved namespace"):
        publisher.publish(["https://example.com/ok", topic])
    assert sent == []


def test_s5_topic_star_is_refused() -> None:
    with pytest.raises(InvalidUpdate, match="topic '\\*' is reserved for the wildcard"):
        Update(("https://example.com/a", "*"))


def test_the_protocol_must_be_chosen_and_match_the_token_shape() -> None:
    with pytest.raises(TypeError, match="protocol"):
        Publisher(HUB, "t")  # type: ignore[call-arg]
    with pytest.raises(InvalidUpdate, match="protocol must be 'draft-08'"):
        Publisher(HUB, "t", protocol="1.0")  # type: ignore[arg-type]
    with pytest.raises(InvalidUpdate, match="writes the mercure claim \\(draft-07\\) but"):
        Publisher(HUB, StreamTokens(KEY, audience=HUB), protocol="draft-08")
    with pytest.raises(InvalidUpdate, match="writes AccessTokenClaims but protocol='draft-07'"):
        Publisher(HUB, draft_08_tokens(), protocol="draft-07")
    old = publisher_token(StreamTokens(KEY, audience=HUB))
    with pytest.raises(InvalidUpdate, match="typ 'JWT'"):
        AsyncPublisher(HUB, old, protocol="draft-08")
    Publisher(HUB, publisher_token(draft_08_tokens()), protocol="draft-08").close()


@pytest.mark.parametrize(
    ("protocol", "cookie"),
    [("draft-08", "__Secure-mercure_access_token"), ("draft-07", "mercureAuthorization")],
)
def test_s6_1_2_cookie_name_follows_the_version(protocol: str, cookie: str) -> None:
    response = flask.Response("{}")
    set_subscriber_cookie(response, "h.p.s", HUB, max_age=60, protocol=protocol)  # type: ignore[arg-type]
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{cookie}=h.p.s;")
    assert {"Secure", "HttpOnly", "SameSite=Strict"} <= set(set_cookie.split("; "))


def test_s3_s7_subscription_url_per_version() -> None:
    books = TopicMatcher("https://example.com/books/:id", "urlpattern")
    draft_08 = subscription_url(HUB, ["a&b", books], protocol="draft-08", last_event_id="#1")
    assert draft_08 == (
        f"{HUB}?match=a%26b&match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid"
        "&last_event_id=%231"
    )
    draft_07 = subscription_url(HUB, ["a"], protocol="draft-07", last_event_id="x")
    assert draft_07 == f"{HUB}?topic=a&lastEventID=x"
    with pytest.raises(InvalidUpdate, match="draft-07 hubs know no URL patterns"):
        subscription_url(HUB, [books], protocol="draft-07")
    with pytest.raises(InvalidUpdate, match="forbidden character U\\+000A"):
        subscription_url(HUB, ["a\nb"], protocol="draft-08")
    assert LAST_EVENT_ID_PARAMS == {"draft-08": "last_event_id", "draft-07": "lastEventID"}
    assert LAST_EVENT_ID_RESPONSE_HEADERS["draft-08"] == "Mercure-Last-Event-ID"


def test_s9_discovery_hints_for_draft_08() -> None:
    links = discovery_links(HUB, content_type="application/merge-patch+json", type="book")
    assert links == [
        f'<{HUB}>; rel="mercure"; content-type="application/merge-patch+json"; type="book"'
    ]
    with pytest.raises(InvalidUpdate, match="reserved"):
        discovery_links(HUB, type="mercure")


# --- the measured fan-out table of the Mercure page ----------------------------------------------


def test_mercure_bench_table_has_every_run() -> None:
    import json
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench"
    sys.path.insert(0, str(bench))
    import tables

    data = json.loads((bench / "results" / "mercure.json").read_text())
    table = tables.render("mercure")
    assert {(run["route"], run["processes"]) for run in data["runs"]} == {
        ("events", 1),
        ("mercure", 1),
        ("mercure", 2),
    }
    for run in data["runs"]:
        assert run["lost"] == 0 and run["duplicates"] == 0
        assert f"{run['p50_ms']:,} / {run['p99_ms']:,}" in table
        assert f"{run['deliveries_per_cpu_s']:,}" in table
