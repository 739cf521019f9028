"""sidestream.tokens: every bad token is refused with its own reason, good ones grant exactly."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence

import falcon.testing
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidestream.access import Grant
from sidestream.errors import Forbidden, InvalidToken, InvalidTokenConfig, Unauthorized
from sidestream.tokens import MercureClaims, StreamTokens, authorizer, token_from_request

KEY = "k" * 32
OTHER_KEY = "o" * 32


@pytest.fixture
def tokens() -> StreamTokens:
    return StreamTokens(KEY)


def request(
    *,
    bearer: str | None = None,
    query: str | None = None,
    cookie: str | None = None,
    header: str | None = None,
) -> falcon.asgi.Request:
    """A real falcon.asgi.Request carrying the token the way a client would."""
    headers = {"Authorization": header or f"Bearer {bearer}"} if (bearer or header) else {}
    return falcon.testing.create_asgi_req(
        headers=headers,
        query_string=f"token={query}" if query else "",
        cookies={"sidestream_token": cookie} if cookie else None,
    )


async def authorize(
    tokens: StreamTokens, req: falcon.asgi.Request, channels: Sequence[str] = ("user:42",)
) -> Grant:
    return await authorizer(tokens)(req, channels)


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forge(header: dict[str, object], payload: dict[str, object], signature: str = "") -> str:
    return f"{b64(header)}.{b64(payload)}.{signature}"


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "user-42",
        "aud": "sidestream",
        "iat": now,
        "exp": now + 60,
        "mercure": {"subscribe": ["user:42"], "publish": []},
    }
    return {**base, **overrides}


# --- the bad-token cases: one test each, exact exception and reason -------------------------


async def test_missing_token_is_401_naming_where_to_send_it(tokens: StreamTokens) -> None:
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request())
    assert refused.value.status == 401
    assert refused.value.reason == (
        "no stream token: send it in an 'Authorization: Bearer' header or the 'token' query "
        "parameter or the 'sidestream_token' cookie"
    )


async def test_non_bearer_authorization_header_is_401(tokens: StreamTokens) -> None:
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(header="Basic dXNlcjpwdw=="))
    assert refused.value.reason == "Authorization header must be 'Bearer <token>'"


async def test_malformed_token_is_401(tokens: StreamTokens) -> None:
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer="not-a-jwt"))
    assert refused.value.status == 401
    assert refused.value.reason.startswith("token is malformed: ")


async def test_wrong_signature_is_401(tokens: StreamTokens) -> None:
    token = StreamTokens(OTHER_KEY).issue("user-42", subscribe=["user:42"])
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=token))
    assert refused.value.reason == "token signature does not verify"


async def test_expired_token_is_401(tokens: StreamTokens) -> None:
    past = int(time.time()) - 3600
    token = jwt.encode(claims(iat=past, exp=past + 60), KEY, algorithm="HS256")
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=token))
    assert refused.value.reason == "token has expired: fetch a new one"


async def test_token_without_exp_is_401(tokens: StreamTokens) -> None:
    payload = claims()
    del payload["exp"]
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=jwt.encode(payload, KEY, algorithm="HS256")))
    assert refused.value.reason == "token has no 'exp' claim"


async def test_wrong_audience_is_401(tokens: StreamTokens) -> None:
    token = StreamTokens(KEY, audience="https://hub.example.com").issue("u", subscribe=["user:42"])
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=token))
    assert refused.value.reason == "token audience is not 'sidestream'"


async def test_token_without_audience_is_401(tokens: StreamTokens) -> None:
    payload = claims()
    del payload["aud"]
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=jwt.encode(payload, KEY, algorithm="HS256")))
    assert refused.value.reason == "token has no 'aud' claim"


async def test_alg_none_is_401(tokens: StreamTokens) -> None:
    # An unsigned token: header {"alg": "none"}, empty signature. Must never be accepted.
    token = forge({"alg": "none", "typ": "JWT"}, claims())
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=token))
    assert refused.value.reason == "token algorithm 'none' is not accepted; expected HS256"


async def test_other_hmac_algorithm_with_the_right_key_is_401(tokens: StreamTokens) -> None:
    # Even correctly signed, a token may not pick its own algorithm.
    token = jwt.encode(claims(), KEY + "x" * 16, algorithm="HS384")
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=token))
    assert refused.value.reason == "token algorithm 'HS384' is not accepted; expected HS256"


def rsa_pair() -> tuple[bytes, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, public


async def test_algorithm_confusion_hs256_signed_with_the_public_key_is_401() -> None:
    # The classic attack on RS256 verifiers: sign HS256 with the (public) RSA key as HMAC secret.
    private, public = rsa_pair()
    rs_tokens = StreamTokens(private, algorithm="RS256", verify_key=public)
    header = b64({"alg": "HS256", "typ": "JWT"})
    body = b64(claims())
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken) as refused:
        await authorize(rs_tokens, request(bearer=token))
    assert refused.value.reason == "token algorithm 'HS256' is not accepted; expected RS256"
    # And the real RS256 token from the same pair is accepted.
    good = rs_tokens.issue("user-42", subscribe=["user:42"])
    assert (await authorize(rs_tokens, request(bearer=good))).subject == "user-42"


async def test_tampered_claims_are_401(tokens: StreamTokens) -> None:
    header, _, signature = tokens.issue("user-42", subscribe=["user:42"]).split(".")
    widened = b64(claims(mercure={"subscribe": ["*"], "publish": []}))
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=f"{header}.{widened}.{signature}"))
    assert refused.value.reason == "token signature does not verify"


async def test_channel_not_granted_is_403_naming_the_channel(tokens: StreamTokens) -> None:
    token = tokens.issue("user-42", subscribe=["user:42"])
    with pytest.raises(Forbidden) as refused:
        await authorize(tokens, request(bearer=token), ["user:42", "user:7"])
    assert refused.value.status == 403
    assert refused.value.reason == "user-42 may not read user:7"


async def test_malformed_mercure_claim_is_401(tokens: StreamTokens) -> None:
    token = jwt.encode(claims(mercure={"subscribe": "user:42"}), KEY, algorithm="HS256")
    with pytest.raises(InvalidToken) as refused:
        await authorize(tokens, request(bearer=token))
    assert (
        refused.value.reason
        == "token is invalid: claim 'mercure.subscribe' must be a list of strings"
    )


def test_invalid_token_is_an_unauthorized() -> None:
    # The service maps AccessDenied subclasses by .status; InvalidToken must stay a 401.
    assert issubclass(InvalidToken, Unauthorized)
    assert InvalidToken("x").status == 401


# --- good tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["bearer", "query", "cookie"])
async def test_token_is_accepted_from_header_query_or_cookie(
    tokens: StreamTokens, where: str
) -> None:
    token = tokens.issue("user-42", subscribe=["user:42"], lifetime=60)
    grant = await authorize(tokens, request(**{where: token}))
    assert grant.subject == "user-42"
    assert grant.expires_at == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert time.time() + 55 < grant.expires_at <= time.time() + 60


def test_header_wins_over_query_and_cookie(tokens: StreamTokens) -> None:
    # Mercure's order: the Authorization header, then the query parameter, then the cookie.
    a, b, c = (tokens.issue(name) for name in ("header", "query", "cookie"))
    assert token_from_request(request(bearer=a, query=b, cookie=c)) == a
    assert token_from_request(request(query=b, cookie=c)) == b
    assert token_from_request(request(cookie=c)) == c


def test_disabled_places_are_not_read(tokens: StreamTokens) -> None:
    token = tokens.issue("user-42")
    with pytest.raises(InvalidToken) as refused:
        token_from_request(request(query=token), query_param=None)
    assert refused.value.reason == (
        "no stream token: send it in an 'Authorization: Bearer' header "
        "or the 'sidestream_token' cookie"
    )


async def test_wildcard_grants_every_channel(tokens: StreamTokens) -> None:
    token = tokens.issue("admin", subscribe=["*"])
    grant = await authorize(tokens, request(bearer=token), ["user:1", "user:2", "news"])
    assert grant.subject == "admin"


async def test_no_subject_is_allowed(tokens: StreamTokens) -> None:
    token = tokens.issue(None, subscribe=["news"])
    assert await authorize(tokens, request(bearer=token), ["news"]) == Grant(
        subject=None, expires_at=tokens.verify(token).expires_at
    )


def test_claims_are_mercure_shaped(tokens: StreamTokens) -> None:
    token = tokens.issue("user-42", subscribe=["user:42"], publish=["https://example.com/b/1"])
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["mercure"] == {"subscribe": ["user:42"], "publish": ["https://example.com/b/1"]}
    assert payload["aud"] == "sidestream"
    assert payload["exp"] - payload["iat"] == 300
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    verified = tokens.verify(token)
    assert verified.publish == ("https://example.com/b/1",)
    assert verified.token_id == payload["jti"]


def test_issuer_is_written_and_required() -> None:
    api = StreamTokens(KEY, issuer="https://api.example.com")
    token = api.issue("user-42")
    assert api.verify(token).subject == "user-42"
    with pytest.raises(InvalidToken) as refused:
        api.verify(StreamTokens(KEY).issue("user-42"))
    assert refused.value.reason == "token has no 'iss' claim"
    with pytest.raises(InvalidToken) as refused:
        api.verify(StreamTokens(KEY, issuer="https://evil.example").issue("user-42"))
    assert refused.value.reason == "token issuer is not 'https://api.example.com'"


def test_es256_tokens_round_trip() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    es = StreamTokens(private, algorithm="ES256", verify_key=private.public_key())
    verifier = StreamTokens(None, algorithm="ES256", verify_key=private.public_key())
    assert verifier.verify(es.issue("u", subscribe=["a"])).subscribe == ("a",)
    with pytest.raises(InvalidTokenConfig, match="no signing key"):
        verifier.issue("u")


# --- leeway ---------------------------------------------------------------------------------


def test_leeway_accepts_a_token_just_expired_and_refuses_beyond() -> None:
    now = int(time.time())
    lenient = StreamTokens(KEY, leeway=30)
    just_expired = jwt.encode(claims(iat=now - 70, exp=now - 10), KEY, algorithm="HS256")
    assert lenient.verify(just_expired).subject == "user-42"
    long_expired = jwt.encode(claims(iat=now - 100, exp=now - 40), KEY, algorithm="HS256")
    with pytest.raises(InvalidToken, match="expired"):
        lenient.verify(long_expired)
    with pytest.raises(InvalidToken, match="expired"):
        StreamTokens(KEY).verify(just_expired)  # default leeway is 5 s


def test_issued_in_the_future_beyond_leeway_is_refused(tokens: StreamTokens) -> None:
    now = int(time.time())
    token = jwt.encode(claims(iat=now + 600, exp=now + 900), KEY, algorithm="HS256")
    with pytest.raises(InvalidToken) as refused:
        tokens.verify(token)
    assert refused.value.reason.startswith("token is invalid: ")


# --- configuration mistakes are typed and say what to do ------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": KEY, "algorithm": "none"}, "algorithm 'none' is not allowed"),
        ({"key": "short"}, "HS256 key is 5 bytes; use at least 32"),
        ({"key": "x" * 40, "algorithm": "HS512"}, "HS512 key is 40 bytes; use at least 64"),
        ({"key": None}, "HS256 needs a secret key"),
        ({"key": "-----BEGIN PUBLIC KEY-----" + "x" * 40}, "looks like a PEM key"),
        ({"key": KEY, "verify_key": KEY}, "HS256 uses one shared key"),
        ({"key": "pem", "algorithm": "RS256"}, "RS256 needs `verify_key`"),
        ({"key": KEY, "lifetime": 0}, "lifetime must be > 0"),
    ],
)
def test_unsafe_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    key = kwargs.pop("key")
    with pytest.raises(InvalidTokenConfig, match=message):
        StreamTokens(key, **kwargs)  # type: ignore[arg-type]


def test_from_env_needs_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDESTREAM_TOKEN_KEY", raising=False)
    with pytest.raises(InvalidTokenConfig, match="SIDESTREAM_TOKEN_KEY is not set"):
        StreamTokens.from_env()
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    assert StreamTokens.from_env().verify(StreamTokens(KEY).issue("u")).subject == "u"


def test_a_single_string_of_channels_is_refused(tokens: StreamTokens) -> None:
    with pytest.raises(InvalidTokenConfig, match="subscribe must be a list of strings"):
        tokens.issue("u", subscribe="user:42")


def test_mercure_claims_format_round_trips() -> None:
    fmt = MercureClaims()
    assert fmt.decode(fmt.encode(["a"], ["b"])) == (("a",), ("b",))
    assert fmt.decode({}) == ((), ())
    with pytest.raises(ValueError, match="'mercure' must be an object"):
        fmt.decode({"mercure": ["a"]})
