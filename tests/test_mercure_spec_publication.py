"""The publisher against the hub double speaking draft-08 (Mercure 1.0), and the double itself
held to the specification, so that it can fail the publisher.

Test names carry the section of draft-dunglas-mercure-08 they come from: s3 Subscription,
s4 Matcher Types, s5 Publication, s6_1 Presenting the Access Token, s6_2 Error Responses,
s6_3 Token Validation, s6_4 Authorization Details, s6_5 Publishers, s6_6 Subscribers,
s7 Reconnection and State Reconciliation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from mercure_cases import (
    BAD_SUBSCRIPTION_QUERIES,
    DETAIL_TYPE,
    access_claims,
    matchers,
    publish_to_double,
)
from mercure_hub import HUB_PATH, MercureHub

from sidestream.errors import (
    InvalidUpdate,
    MercureForbidden,
    MercurePayloadTooLarge,
    MercureUnauthorized,
)
from sidestream.mercure import Publisher, RetryPolicy, publisher_token
from sidestream.mercure_match import TopicMatcher
from sidestream.testing import StreamReader, read_events, serve_asgi
from sidestream.tokens import AccessTokenClaims, StreamTokens

HUB = "https://hub.example.com/.well-known/mercure"
SITE = "https://example.com"
PUBLISHER_KEY = "publisher-key-of-at-least-32-bytes!!"
SUBSCRIBER_KEY = "subscriber-key-of-at-least-32-bytes!"
NO_WAIT = RetryPolicy(attempts=3, backoff=0)
DETAIL = DETAIL_TYPE
FORM = "application/x-www-form-urlencoded"

Publish = Callable[..., Awaitable[str]]


def issuer(key: str = PUBLISHER_KEY, hub: str = HUB, **options: Any) -> StreamTokens:
    options.setdefault("issuer", SITE)
    return StreamTokens(
        key, audience=hub, claims_format=AccessTokenClaims(client_id=SITE), **options
    )


@pytest.fixture
def hub() -> MercureHub:
    return MercureHub(
        publisher_key=PUBLISHER_KEY,
        subscriber_key=SUBSCRIBER_KEY,
        protocol="draft-08",
        issuer=SITE,
        hub_url=HUB,
    )


@pytest.fixture(params=["sync", "async"])
def publish(request: pytest.FixtureRequest, hub: MercureHub) -> Publish:
    """Publish through Publisher or AsyncPublisher, each behaviour on both."""

    async def run(*args: Any, token: Any = None, **kw: Any) -> str:
        token = token or issuer()
        return await publish_to_double(
            request.param, hub, HUB, token, "draft-08", NO_WAIT, *args, **kw
        )

    return run


def token(key: str = PUBLISHER_KEY, typ: str = "at+jwt", **overrides: Any) -> str:
    claims = access_claims(
        issuer=SITE,
        audience=HUB,
        subject="urn:uuid:1",
        token_id="urn:uuid:2",
        lifetime=60,
        details=[{"type": DETAIL, "actions": ["publish", "subscribe"], "topics": [{"match": "*"}]}],
        **overrides,
    )
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": typ})


def post(
    hub: MercureHub,
    body: str,
    bearer: str | None = None,
    *,
    content_type: str = FORM,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"content-type": content_type, **(headers or {})}
    if bearer is not None:
        sent["authorization"] = f"Bearer {bearer}"
    with httpx.Client(transport=hub.transport()) as client:
        return client.post(HUB, content=body.encode(), headers=sent)


def challenge(response: httpx.Response) -> str | None:
    return response.headers.get("www-authenticate")


# --- the publisher against the draft-08 double -------------------------------------------------


async def test_s5_publish_returns_the_id_in_a_200_text_plain(
    publish: Publish, hub: MercureHub
) -> None:
    returned = await publish(
        ["https://example.com/books/1", "https://example.com/users/7/books/1"],
        "line one\nline two",
        private=True,
        type="book.updated",
        retry=2500,
    )
    (done,) = hub.history
    assert returned == done.id
    assert done.topics == ["https://example.com/books/1", "https://example.com/users/7/books/1"]
    assert (done.data, done.private, done.type, done.retry) == (
        "line one\nline two",
        True,
        "book.updated",
        2500,
    )
    response = post(hub, "topic=t", token())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == hub.history[-1].id


async def test_s6_5_publish_needs_a_grant_on_every_topic(publish: Publish, hub: MercureHub) -> None:
    books = publisher_token(issuer(), [TopicMatcher("https://example.com/books/:id", "urlpattern")])
    assert await publish("https://example.com/books/1", token=books)
    with pytest.raises(MercureForbidden, match="insufficient_scope") as refused:
        await publish(["https://example.com/books/2", "https://example.com/users/1"], token=books)
    assert refused.value.status == 403
    assert [done.topics for done in hub.history] == [["https://example.com/books/1"]]


@pytest.mark.parametrize(
    "bad_issuer",
    [
        pytest.param(lambda: issuer("another-key-of-at-least-32-bytes!!!!"), id="other-key"),
        pytest.param(lambda: issuer(issuer="https://evil.example"), id="untrusted-iss"),
        pytest.param(lambda: issuer(hub="https://other/.well-known/mercure"), id="other-aud"),
    ],
)
async def test_s6_3_a_token_the_hub_cannot_validate_is_401_invalid_token(
    publish: Publish, hub: MercureHub, bad_issuer: Callable[[], StreamTokens]
) -> None:
    with pytest.raises(MercureUnauthorized, match=r"\(invalid_token\) \(401 from POST") as refused:
        await publish("https://example.com/a", token=bad_issuer())
    assert refused.value.status == 401
    assert hub.history == []


async def test_s5_too_large_is_413(publish: Publish, hub: MercureHub) -> None:
    hub.max_body = 400
    with pytest.raises(MercurePayloadTooLarge):
        await publish("https://example.com/a", "x" * 400)
    assert hub.history == []


async def test_s5_what_the_hub_refuses_is_refused_before_sending(
    publish: Publish, hub: MercureHub
) -> None:
    for topics, kwargs in [
        (["https://example.com/a", "*"], {}),
        ("/.well-known/mercure/subscriptions/exact/a/b", {}),
        ("https://example.com/a", {"id": "earliest"}),
        ("https://example.com/a", {"type": "mercure"}),
        ("https://example.com/a", {"id": "a\u200bb"}),
    ]:
        with pytest.raises(InvalidUpdate):
            await publish(topics, **kwargs)
    assert hub.requests == []


async def test_s7_a_retried_update_is_stored_twice_and_last_event_id_resolves_to_the_first(
    hub: MercureHub,
) -> None:
    # The hub dispatched, the answer was lost, the publisher retried with the same id: a
    # draft-08 hub keeps both (ids are only recommended unique). A Last-Event-ID naming that id
    # "MUST resolve to the earliest such update" and the hub then sends "all updates published
    # after that one, including any later update carrying the same, reused ID".
    with serve_asgi(hub.asgi, interface="asgi3") as base:
        hub_url = base + HUB_PATH
        hub.hub_url = hub_url
        hub.dispatch_then = [httpx.ReadTimeout("answer lost")]
        with Publisher(
            hub_url, issuer(hub=hub_url), protocol="draft-08", retry=NO_WAIT
        ) as publisher:
            lost = publisher.publish("https://example.com/a", "first")
            later = publisher.publish("https://example.com/a", "second")
        assert [done.id for done in hub.history] == [lost, lost, later]
        capture = read_events(
            f"{hub_url}?match=*", count=2, headers={"Last-Event-ID": lost}, timeout=10
        )
    assert [(event.id, event.data) for event in capture.events] == [
        (lost, "first"),
        (later, "second"),
    ]
    assert capture.headers["mercure-last-event-id"] == lost


# --- the double holds publishers to section 5 --------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "data=no-topic",
        "topic=*",
        "topic=https%3A%2F%2Fexample.com%2Fa&topic=*",
        "topic=%2F.well-known%2Fmercure",
        "topic=%2F.well-known%2Fmercure%2Fsubscriptions%2Fexact%2Fa%2Fb",
        "topic=https%3A%2F%2Fany.example%2F.well-known%2F%256Dercure%2Fx",
        "topic=%2F.well-known%2Fmercure%2F..%2Fmercure%2Fx",
        "topic=a%00b",
        "topic=a%E2%80%8Bb",  # U+200B ZERO WIDTH SPACE (Cf)
        "topic=t&id=%23frag",
        "topic=t&id=earliest",
        "topic=t&id=a%0Ab",
        "topic=t&id=a%C2%85b",  # U+0085 (C1)
        "topic=t&type=mercure",
        "topic=t&type=a%0Db",
        "topic=t&retry=soon",
        "topic=t&retry=-1",
        "topic=t&retry=1.5",
        "topic=t&retry=%C2%B2",  # "²" is a digit to str.isdigit, not an ASCII digit
        "topic=%FF",  # not UTF-8
    ],
)
def test_s5_the_double_refuses_malformed_publishes_with_400(hub: MercureHub, body: str) -> None:
    response = post(hub, body, token())
    assert response.status_code == 400, response.text
    assert hub.history == []


def test_s5_the_double_refuses_other_encodings_and_takes_private_by_presence(
    hub: MercureHub,
) -> None:
    assert post(hub, '{"topic": "t"}', token(), content_type="application/json").status_code == 400
    assert post(hub, "topic=t&private=&future_field=x", token()).status_code == 200
    assert post(hub, "topic=u&private=false", token()).status_code == 200
    assert [done.private for done in hub.history] == [True, True]
    hub.max_topics = 2
    assert post(hub, "topic=a&topic=b&topic=c", token()).status_code == 413


# --- 6.1 to 6.4: presenting and validating the token ---------------------------------------------


def test_s6_2_no_token_is_401_with_a_bare_bearer_challenge(hub: MercureHub) -> None:
    response = post(hub, "topic=t")
    assert response.status_code == 401
    assert challenge(response) is not None
    assert challenge(response).startswith("Bearer")  # type: ignore[union-attr]
    assert "error=" not in challenge(response)  # type: ignore[operator]


def test_s6_1_the_access_token_query_parameter_is_not_read(hub: MercureHub) -> None:
    with httpx.Client(transport=hub.transport()) as client:
        response = client.post(
            f"{HUB}?access_token={token()}", content=b"topic=t", headers={"content-type": FORM}
        )
    assert response.status_code == 401
    assert hub.history == []


def test_s6_1_the_header_wins_over_the_cookie_and_the_cookie_serves_alone(
    hub: MercureHub,
) -> None:
    cookie = f"__Secure-mercure_access_token={token()}"
    bad = token("another-key-of-at-least-32-bytes!!!!")
    assert post(hub, "topic=t", bad, headers={"cookie": cookie}).status_code == 401
    assert post(hub, "topic=t", token(), headers={"cookie": "__Secure-x=y"}).status_code == 200
    assert post(hub, "topic=t", headers={"cookie": cookie}).status_code == 200
    old_name = f"mercureAuthorization={token()}"
    assert post(hub, "topic=t", headers={"cookie": old_name}).status_code == 401


def test_s6_1_the_scheme_is_case_insensitive_and_malformed_is_invalid_request(
    hub: MercureHub,
) -> None:
    assert post(hub, "topic=t", headers={"authorization": f"bearer {token()}"}).status_code == 200
    response = post(hub, "topic=t", headers={"authorization": "Basic dXNlcjpwdw=="})
    assert response.status_code == 400
    assert challenge(response) == 'Bearer error="invalid_request"'


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(token(typ="JWT"), id="typ-JWT"),
        pytest.param(token(iss=None), id="no-iss"),
        pytest.param(token(iss="https://evil.example"), id="other-iss"),
        pytest.param(token(aud="https://other.example/.well-known/mercure"), id="other-aud"),
        pytest.param(token(exp=None), id="no-exp"),
        pytest.param(token(exp=int(time.time()) - 120), id="expired"),
        pytest.param(token(nbf=int(time.time()) + 600), id="not-yet-valid"),
        pytest.param("not.a.jwt", id="garbage"),
        pytest.param(
            token(
                authorization_details=[
                    {"type": DETAIL, "actions": ["publish"], "topics": [{"match": "*"}]},
                    {
                        "type": DETAIL,
                        "actions": ["publish"],
                        "topics": [{"match": "x", "match_type": "regex"}],
                    },
                ]
            ),
            id="one-bad-detail",
        ),
        pytest.param(
            token(
                authorization_details=[{"type": DETAIL, "actions": [1], "topics": [{"match": "*"}]}]
            ),
            id="non-string-action",
        ),
    ],
)
def test_s6_3_s6_4_invalid_tokens_are_401_invalid_token(hub: MercureHub, bad: str) -> None:
    response = post(hub, "topic=t", bad)
    assert response.status_code == 401
    assert challenge(response) == 'Bearer error="invalid_token"'
    assert hub.history == []


def test_s6_4_unknown_actions_grant_nothing(hub: MercureHub) -> None:
    detail = {"type": DETAIL, "actions": ["archive"], "topics": [{"match": "*"}]}
    response = post(hub, "topic=t", token(authorization_details=[detail]))
    assert (response.status_code, challenge(response)) == (
        403,
        'Bearer error="insufficient_scope"',
    )


# --- sections 3, 6.6 and 7 on the double's subscription side -------------------------------------


@pytest.fixture
def served(hub: MercureHub) -> Iterator[tuple[MercureHub, str]]:
    with serve_asgi(hub.asgi, interface="asgi3") as base:
        hub.hub_url = base + HUB_PATH
        yield hub, base + HUB_PATH


def publish_form(hub_url: str, body: str, **claims: Any) -> str:
    response = httpx.post(
        hub_url,
        content=body.encode(),
        headers={"content-type": FORM, "authorization": f"Bearer {token(aud=hub_url, **claims)}"},
    )
    assert response.status_code == 200, response.text
    return response.text


def subscriber(hub_url: str, *written: str, exp: int | None = None) -> str:
    detail = {"type": DETAIL, "actions": ["subscribe"], "topics": matchers(*written)}
    expiry = {"exp": exp} if exp is not None else {}
    return token(SUBSCRIBER_KEY, aud=hub_url, authorization_details=[detail], **expiry)


@pytest.mark.parametrize("query", BAD_SUBSCRIPTION_QUERIES)
def test_s3_bad_matcher_parameters_are_400(served: tuple[MercureHub, str], query: str) -> None:
    _, hub_url = served
    assert httpx.get(f"{hub_url}?{query}").status_code == 400


def test_s3_s4_matchers_route_updates(served: tuple[MercureHub, str]) -> None:
    _, hub_url = served
    ids = [
        publish_form(hub_url, f"topic=https%3A%2F%2Fexample.com%2F{path}&data={path}")
        for path in ("foo", "bar/1", "bar/1/x", "baz")
    ]
    url = (
        f"{hub_url}?match=https%3A%2F%2Fexample.com%2Ffoo"
        "&match_urlpattern=https%3A%2F%2Fexample.com%2Fbar%2F%3Aid&last_event_id=earliest"
    )
    capture = read_events(url, count=3, timeout=3)
    assert [event.data for event in capture.events] == ["foo", "bar/1"]
    assert capture.headers["mercure-last-event-id"] == "earliest"
    everything = read_events(f"{hub_url}?match_exact=*&last_event_id=earliest", count=4)
    assert [event.id for event in everything.events] == ids


def test_s6_6_private_updates_reach_only_a_matching_subscribe_grant(
    served: tuple[MercureHub, str],
) -> None:
    hub, hub_url = served
    publish_form(hub_url, "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&data=public")
    publish_form(
        hub_url,
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"
        "&topic=https%3A%2F%2Fexample.com%2Fusers%2F42%2Fbooks%2F1&private=on&data=private",
    )
    books = "https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid"
    url = f"{hub_url}?match_urlpattern={books}&last_event_id=earliest"

    def seen(bearer: str | None) -> list[str]:
        headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        return [e.data for e in read_events(url, count=2, timeout=2, headers=headers).events]

    assert seen(None) == ["public"]  # anonymous: public updates only
    assert seen(subscriber(hub_url, "https://example.com/books/2")) == ["public"]
    assert seen(subscriber(hub_url, "https://example.com/users/42/* urlpattern")) == [
        "public",
        "private",
    ]
    hub.anonymous = False
    refused = httpx.get(url)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_s7_last_event_id_header_wins_and_replay_is_reauthorized(
    served: tuple[MercureHub, str],
) -> None:
    _, hub_url = served
    first = publish_form(hub_url, "topic=t&data=1")
    second = publish_form(hub_url, "topic=t&data=2&private=on")
    publish_form(hub_url, "topic=t&data=3")
    url = f"{hub_url}?match=t&last_event_id={first}"
    by_query = read_events(url, count=2, timeout=3)
    assert [e.data for e in by_query.events] == ["3"]  # "2" is private: not for anonymous
    assert by_query.headers["mercure-last-event-id"] == first
    by_header = read_events(
        url,
        count=1,
        timeout=3,
        headers={"Last-Event-ID": second, "authorization": f"Bearer {subscriber(hub_url, 't')}"},
    )
    assert [e.data for e in by_header.events] == ["3"]
    assert by_header.headers["mercure-last-event-id"] == second
    unknown = read_events(f"{hub_url}?match=t&last_event_id=urn:uuid:gone", count=3, timeout=3)
    assert unknown.headers["mercure-last-event-id"] == "earliest"
    live = read_events(f"{hub_url}?match=t", count=1, timeout=1)
    assert "mercure-last-event-id" not in live.headers
    assert live.events == []


def test_s6_6_the_stream_closes_at_the_token_exp(served: tuple[MercureHub, str]) -> None:
    _, hub_url = served
    bearer = subscriber(hub_url, "t", exp=int(time.time()) + 2)
    started = time.monotonic()
    with httpx.stream(
        "GET", f"{hub_url}?match=t", headers={"authorization": f"Bearer {bearer}"}, timeout=10
    ) as response:
        stream = StreamReader(response)
        assert list(stream.follow()) == []  # ends by itself, no event
    assert time.monotonic() - started < 9
