"""Mercure draft-08, section 6 (Authorization), as sidestream.tokens issues and verifies it.

Each test names the section of the specification it comes from (s6_3 = 6.3 Token Validation,
s6_4 = Authorization Details, s6_5 = Publishers, s6_6 = Subscribers, s6_7 = Topic Matcher List,
s4 = Matcher Types, s5 = Publication, s13_3 = Security: Reserved Hub Namespace). Tokens are
forged with PyJWT directly, so the verifier is checked against bytes it did not write.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from mercure_cases import DRAFT_07_SELECTOR_CASES, access_claims

from sidestream.errors import InvalidToken, InvalidTokenConfig
from sidestream.mercure_match import (
    InvalidMatcher,
    TopicMatcher,
    TopicSelector,
    forbidden_char,
    in_reserved_namespace,
)
from sidestream.tokens import (
    ACCESS_TOKEN_CLAIMS,
    MERCURE_DETAIL_TYPE,
    AccessTokenClaims,
    MercureClaims,
    StreamTokens,
)

HUB = "https://hub.example.com/.well-known/mercure"
ISSUER = "https://example.com"
KEY = "draft-08-publisher-key-32-bytes-long!"


@pytest.fixture
def tokens() -> StreamTokens:
    return StreamTokens(
        KEY, audience=HUB, issuer=ISSUER, claims_format=AccessTokenClaims(client_id=ISSUER)
    )


def detail(actions: Any, topics: Any, **extra: Any) -> dict[str, Any]:
    return {"type": MERCURE_DETAIL_TYPE, "actions": actions, "topics": topics, **extra}


def claims(**overrides: Any) -> dict[str, Any]:
    return access_claims(
        issuer=ISSUER,
        audience=HUB,
        subject="urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6",
        token_id="urn:uuid:e70ff8d7-59d5-4a92-b0b7-505e8f6d09fa",
        lifetime=300,
        details=[detail(["subscribe"], [{"match": "https://example.com/a"}])],
        **overrides,
    )


def sign(payload: dict[str, Any], typ: str = "at+jwt", **header: Any) -> str:
    return jwt.encode(payload, KEY, algorithm="HS256", headers={"typ": typ, **header})


def refused(tokens: StreamTokens, token: str) -> str:
    with pytest.raises(InvalidToken) as raised:
        tokens.verify(token)
    assert raised.value.status == 401
    return raised.value.reason


# --- 6.3 Token Validation --------------------------------------------------------------------


def test_s6_3_issued_token_is_an_rfc9068_access_token(tokens: StreamTokens) -> None:
    token = tokens.issue("user-7", subscribe=["https://example.com/books/1"], lifetime=60)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(ACCESS_TOKEN_CLAIMS) <= set(payload)
    assert (payload["iss"], payload["aud"], payload["sub"], payload["client_id"]) == (
        ISSUER,
        HUB,
        "user-7",
        ISSUER,
    )
    assert payload["exp"] - payload["iat"] == 60
    assert payload["authorization_details"] == [
        {
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["subscribe"],
            "topics": [{"match": "https://example.com/books/1", "match_type": "exact"}],
        }
    ]
    assert "mercure" not in payload


def test_s6_3_a_token_for_no_subject_names_the_client(tokens: StreamTokens) -> None:
    # RFC 9068 sec. 2.2: with no resource owner, `sub` identifies the client.
    payload = jwt.decode(tokens.issue(None, publish=["*"]), options={"verify_signature": False})
    assert payload["sub"] == payload["client_id"] == ISSUER


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
def test_s6_3_typ_at_jwt_is_accepted_in_any_case_with_or_without_prefix(
    tokens: StreamTokens, typ: str
) -> None:
    assert tokens.verify(sign(claims(), typ=typ)).issuer == ISSUER


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt", "at+jwt+x", "id_token"])
def test_s6_3_typ_other_than_at_jwt_is_refused(tokens: StreamTokens, typ: str) -> None:
    assert refused(tokens, sign(claims(), typ=typ)) == (
        f"token type {typ!r} is not an access token: expected 'at+jwt'"
    )


def test_s6_3_token_without_typ_is_refused(tokens: StreamTokens) -> None:
    # PyJWS leaves `typ` out of the header when it is given as None.
    token = jwt.PyJWS().encode(
        json.dumps(claims()).encode(), KEY, algorithm="HS256", headers={"typ": None}
    )
    assert "typ" not in jwt.get_unverified_header(token)
    assert refused(tokens, token) == "token type None is not an access token: expected 'at+jwt'"


@pytest.mark.parametrize("claim", ACCESS_TOKEN_CLAIMS)
def test_s6_3_every_rfc9068_claim_is_required(tokens: StreamTokens, claim: str) -> None:
    assert refused(tokens, sign(claims(**{claim: None}))) == f"token has no {claim!r} claim"


def test_s6_3_iss_must_be_the_trusted_issuer(tokens: StreamTokens) -> None:
    assert refused(tokens, sign(claims(iss="https://evil.example"))) == (
        "token issuer is not 'https://example.com'"
    )


def test_s6_3_draft_08_verification_needs_a_configured_issuer() -> None:
    with pytest.raises(InvalidTokenConfig, match="draft-08 access tokens need issuer="):
        StreamTokens(KEY, audience=HUB, claims_format=AccessTokenClaims(client_id=ISSUER))


def test_s6_3_aud_may_be_an_array_holding_the_resource_identifier(tokens: StreamTokens) -> None:
    assert tokens.verify(sign(claims(aud=["https://other/", HUB]))).subject
    assert refused(tokens, sign(claims(aud=["https://other.example/.well-known/mercure"]))) == (
        f"token audience is not {HUB!r}"
    )


def test_s6_3_exp_in_the_past_and_nbf_in_the_future_are_refused(tokens: StreamTokens) -> None:
    now = int(time.time())
    assert refused(tokens, sign(claims(iat=now - 600, exp=now - 300))) == (
        "token has expired: fetch a new one"
    )
    assert refused(tokens, sign(claims(nbf=now + 600))).startswith("token is invalid: ")


def test_s6_3_alg_none_is_refused(tokens: StreamTokens) -> None:
    token = jwt.encode(claims(), None, algorithm="none", headers={"typ": "at+jwt"})
    assert refused(tokens, token) == "token algorithm 'none' is not accepted; expected HS256"


@pytest.mark.parametrize("name", ["jwk", "jku", "x5u"])
def test_s6_3_key_material_in_the_token_header_is_refused(tokens: StreamTokens, name: str) -> None:
    token = sign(claims(), **{name: "https://attacker.example/key"})
    assert refused(tokens, token) == (
        f"token header {name!r} is not accepted: keys come from the hub"
    )


# --- 6.4 Authorization Details and 6.7 Topic Matcher List -------------------------------------


@pytest.mark.parametrize(
    ("bad_detail", "reason"),
    [
        ("not an object", "authorization_details[1] must be an object with a string 'type'"),
        ({"actions": ["publish"]}, "authorization_details[1] must be an object with a string"),
        (detail([], [{"match": "a"}]), "authorization_details[1].actions must be a non-empty"),
        (detail("publish", [{"match": "a"}]), "authorization_details[1].actions must be a non-"),
        (detail(["publish", 7], [{"match": "a"}]), ".actions must hold strings only"),
        (detail(["publish"], []), "authorization_details[1].topics must be a non-empty array"),
        (detail(["publish"], "a"), "authorization_details[1].topics must be a non-empty array"),
        (detail(["publish"], ["a"]), "topics[0] must be an object with a 'match'"),
        (detail(["publish"], [{"match_type": "exact"}]), "topics[0] must be an object with a"),
        (detail(["publish"], [{"match": ""}]), "a matcher is a non-empty string"),
        (detail(["publish"], [{"match": "a", "match_type": "regex"}]), "'regex' is not supp"),
        (detail(["publish"], [{"match": "a", "match_type": "Exact"}]), "'Exact' is not supp"),
        (
            detail(["publish"], [{"match": "https://e.com/(a", "match_type": "urlpattern"}]),
            "is not a well-formed URL pattern",
        ),
        (detail(["publish"], [{"match": "a\u202eb"}]), "forbidden character U+202E"),
        (detail(["publish"], [{"match": "a"}], payload=[1]), ".payload must be an object"),
    ],
)
def test_s6_4_one_malformed_detail_rejects_the_whole_token(
    tokens: StreamTokens, bad_detail: Any, reason: str
) -> None:
    # "MUST NOT act on the basis of the remaining entries; partial acceptance is forbidden".
    good = detail(["publish", "subscribe"], [{"match": "*"}])
    message = refused(tokens, sign(claims(authorization_details=[good, bad_detail])))
    assert message.startswith("token is invalid: ")
    assert reason in message


def test_s6_4_authorization_details_must_be_an_array(tokens: StreamTokens) -> None:
    assert refused(tokens, sign(claims(authorization_details={"type": MERCURE_DETAIL_TYPE}))) == (
        "token is invalid: claim 'authorization_details' must be an array"
    )


def test_s6_4_unknown_actions_grant_nothing_and_do_not_invalidate(tokens: StreamTokens) -> None:
    token = sign(claims(authorization_details=[detail(["archive"], [{"match": "*"}])]))
    verified = tokens.verify(token)
    assert verified.details[0].actions == ("archive",)
    assert not verified.may_publish_update(["https://example.com/a"], HUB)
    assert not verified.may_receive_private(["https://example.com/a"], HUB)


def test_s6_4_details_of_other_types_are_ignored(tokens: StreamTokens) -> None:
    other = {"type": "https://bank.example/payment", "actions": "anything"}
    verified = tokens.verify(sign(claims(authorization_details=[other])))
    assert verified.details == ()
    assert not verified.may_receive_private(["https://example.com/a"], HUB)


def test_s6_4_no_mercure_detail_grants_nothing(tokens: StreamTokens) -> None:
    verified = tokens.verify(sign(claims(authorization_details=None)))
    assert (verified.details, verified.subscribe, verified.publish) == ((), (), ())


def test_s6_4_limits_reject_the_token_as_invalid() -> None:
    small = StreamTokens(
        KEY,
        audience=HUB,
        issuer=ISSUER,
        claims_format=AccessTokenClaims(client_id=ISSUER, max_details=2, max_topics=3),
    )
    three = [detail(["subscribe"], [{"match": "a"}])] * 3
    assert "more than 2 Mercure authorization details" in refused(
        small, sign(claims(authorization_details=three))
    )
    wide = [detail(["subscribe"], [{"match": str(n)} for n in range(4)])]
    assert "topics has more than 3 matchers" in refused(
        small, sign(claims(authorization_details=wide))
    )
    with pytest.raises(InvalidMatcher, match="the limit is 2048"):
        TopicMatcher("x" * 2049)


def test_s6_7_match_type_defaults_to_exact_and_star_matches_regardless(
    tokens: StreamTokens,
) -> None:
    verified = tokens.verify(
        sign(
            claims(
                authorization_details=[
                    detail(["subscribe"], [{"match": "https://example.com/books/:id"}]),
                    detail(["publish"], [{"match": "*", "match_type": "urlpattern"}]),
                ]
            )
        )
    )
    books = verified.details[0].topics[0]
    assert books == TopicMatcher("https://example.com/books/:id", "exact")
    assert not verified.may_receive_private(["https://example.com/books/1"], HUB)
    assert verified.may_receive_private(["https://example.com/books/:id"], HUB)
    assert verified.may_publish_update(["urn:x", "https://a.example/"], HUB)
    assert verified.subscribe == ("https://example.com/books/:id",)
    assert verified.publish == ("*",)


# --- 6.5 Publishers and 6.6 Subscribers ---------------------------------------------------------


def test_s6_5_publish_needs_a_grant_on_every_topic(tokens: StreamTokens) -> None:
    books = TopicMatcher("https://example.com/books/:id", "urlpattern")
    verified = tokens.verify(tokens.issue(None, publish=[books]))
    assert verified.may_publish_update(["https://example.com/books/1"], HUB)
    assert not verified.may_publish_update(
        ["https://example.com/books/1", "https://example.com/users/1"], HUB
    )
    assert not verified.may_publish_update([], HUB)
    assert not verified.may_receive_private(["https://example.com/books/1"], HUB)


def test_s6_6_private_updates_need_a_subscribe_grant_on_one_topic(tokens: StreamTokens) -> None:
    # The two examples of section 6.6: exact grants for books 1 and 7, and a namespace grant
    # that admits an update through its alternate topic.
    exact = tokens.verify(
        tokens.issue("u", subscribe=["https://example.com/books/1", "https://example.com/books/7"])
    )
    assert exact.may_receive_private(["https://example.com/books/1"], HUB)
    assert not exact.may_receive_private(["https://example.com/books/2"], HUB)
    own = tokens.verify(
        tokens.issue("u", subscribe=[TopicMatcher("https://example.com/users/42/*", "urlpattern")])
    )
    assert own.may_receive_private(
        ["https://example.com/books/1", "https://example.com/users/42/books/1"], HUB
    )
    assert not own.may_receive_private(["https://example.com/books/1"], HUB)


# --- 4 Matcher Types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "topic", "matched"),
    [
        (TopicMatcher("https://example.com/foo"), "https://example.com/foo", True),
        (TopicMatcher("https://example.com/foo"), "https://example.com/Foo", False),
        (TopicMatcher("https://example.com/foo"), "https://example.com/foo/", False),
        (TopicMatcher("/foo"), "https://hub.example.com/foo", False),  # s4.1: never resolved
        (TopicMatcher("caf\u00e9"), "cafe\u0301", False),  # s4.1: no Unicode normalization
        (
            TopicMatcher("https://example.com/bar/:id", "urlpattern"),
            "https://example.com/bar/1",
            True,
        ),
        (
            TopicMatcher("https://example.com/bar/:id", "urlpattern"),
            "https://example.com/bar/",
            False,
        ),
        (
            TopicMatcher("https://example.com/bar/:id", "urlpattern"),
            "https://EXAMPLE.com/bar/1",
            True,
        ),
        (
            TopicMatcher("https://example.com/bar/:id", "urlpattern"),
            "https://example.com/BAR/1",
            False,
        ),
        (TopicMatcher("https://example.com/bar/:id", "urlpattern"), "not a url ::", False),
        (
            TopicMatcher("/.well-known/mercure/subscriptions/exact/:t/:s", "urlpattern"),
            "/.well-known/mercure/subscriptions/exact/a/b",
            True,
        ),
        (TopicMatcher("*"), "anything at all", True),
        (TopicMatcher("*", "urlpattern"), "urn:uuid:1", True),
    ],
)
def test_s4_matcher_types(matcher: TopicMatcher, topic: str, matched: bool) -> None:
    assert matcher.matches(topic, HUB) is matched


def test_s4_2_pathological_patterns_run_in_linear_time() -> None:
    # A pattern that backtracks catastrophically in a backtracking engine; the Rust regex
    # engine behind `urlpattern` answers at once (the test would hang otherwise).
    evil = TopicMatcher("https://example.com/:a(a*)*b", "urlpattern")
    assert evil.matches("https://example.com/" + "a" * 5000 + "c", HUB) is False


# --- 2 Terminology, 5 Publication and 13.3 Reserved Hub Namespace -------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("https://example.com/books/1", None),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\x7fb", "U+007F"),
        ("a\x85b", "U+0085"),
        ("a\u200bb", "U+200B"),
        ("a\u2066b", "U+2066"),
        ("caf\u00e9 \u00fcber", None),
    ],
)
def test_s2_topics_carry_no_control_or_format_characters(text: str, found: str | None) -> None:
    assert forbidden_char(text) == found


@pytest.mark.parametrize(
    ("topic", "reserved"),
    [
        ("/.well-known/mercure", True),
        ("/.well-known/mercure/subscriptions/exact/a/b", True),
        ("https://hub.example.com/.well-known/mercure/subscriptions/x", True),
        ("https://other.example/.well-known/mercure/x", True),  # regardless of authority
        ("/.well-known/%6Dercure/x", True),  # percent-encoded unreserved characters
        ("/.well-known/mercure/../mercure/x", True),  # dot segments
        ("/.well-known/x/%2E%2E/mercure/y", True),
        ("/.well-known/mercurex", False),
        ("/.well-known/mercure%2Fx", False),  # %2F is not unreserved: one segment
        ("https://example.com/books/1", False),
        ("urn:uuid:e1ee88e2-532a-4d6f-ba70-f0f8bd584022", False),
    ],
)
def test_s5_reserved_hub_namespace(topic: str, reserved: bool) -> None:
    assert in_reserved_namespace(topic, HUB) is reserved


def test_s5_reserved_namespace_follows_the_hub_path() -> None:
    hub = "https://example.com/hubs/one"
    assert in_reserved_namespace("/hubs/one/subscriptions", hub)
    assert not in_reserved_namespace("/.well-known/mercure/x", hub)


# --- draft-07 stays what it was ------------------------------------------------------------


def test_draft_07_tokens_cannot_say_url_patterns() -> None:
    with pytest.raises(InvalidTokenConfig, match="urlpattern matcher cannot be written"):
        MercureClaims().encode([TopicMatcher("https://e.com/:id", "urlpattern")], [])
    assert MercureClaims().encode([TopicMatcher("https://e.com/1")], ["*"]) == {
        "mercure": {"subscribe": ["https://e.com/1"], "publish": ["*"]}
    }


def test_draft_07_verifier_refuses_a_draft_08_token_and_back(tokens: StreamTokens) -> None:
    draft_07 = StreamTokens(KEY, audience=HUB, issuer=ISSUER)
    # A draft-08 token read as draft-07 grants nothing; a draft-07 token fails typ for draft-08.
    assert draft_07.verify(tokens.issue("u", subscribe=["*"])).subscribe == ()
    assert refused(tokens, draft_07.issue("u", subscribe=["*"])) == (
        "token type 'JWT' is not an access token: expected 'at+jwt'"
    )


def test_access_token_claims_needs_a_client_id() -> None:
    with pytest.raises(InvalidTokenConfig, match="needs a client_id"):
        AccessTokenClaims(client_id="")


@pytest.mark.parametrize(("selector", "topic", "matched"), DRAFT_07_SELECTOR_CASES)
def test_draft_07_topic_selectors(selector: str, topic: str, matched: bool) -> None:
    assert TopicSelector(selector).matches(topic) is matched


@pytest.mark.parametrize("selector", ["https://e.com/{?x}", "https://e.com/{a,b}", "{/path}"])
def test_draft_07_templates_we_cannot_match_are_refused(selector: str) -> None:
    with pytest.raises(InvalidMatcher, match="only \\{var\\} and \\{\\+var\\} are supported"):
        TopicSelector(selector)
