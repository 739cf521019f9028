"""Short-lived signed stream tokens: the API issues them, the stream service verifies them.

A stream token is a JWT (PyJWT) that names a subject and the channels it may read. By default the
claims follow Mercure's draft-07 shape (hubs 0.x), so one helper signs tokens for the sidestream
service and for a Mercure 0.x hub alike:

```json
{"sub": "user-42", "aud": "sidestream", "iat": 1767225300, "exp": 1767225600,
 "jti": "…", "mercure": {"subscribe": ["user:42"], "publish": []}}
```

Where the two differ: a Mercure hub reads the entries as *topic selectors* (URIs or URI templates
such as `https://example.com/books/{id}`, or `*`), while the sidestream service reads them as
*channel names* (the `bus.validate_channel` pattern `[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}`) and
matches them exactly, `*` standing for every channel. A Mercure hub v0.x ignores `aud`; the
service checks it.

Mercure 1.0 hubs (draft-08) take an RFC 9068 JWT access token instead: header `typ: at+jwt`, the
claims `iss`, `aud` (the hub's resource identifier), `exp`, `sub`, `client_id`, `iat`, `jti`, and
the grants in `authorization_details`. Choose that shape with
`claims_format=AccessTokenClaims(client_id=...)` (and an `issuer=`); verification then also checks
`typ`, requires all seven claims, and rejects the whole token if any Mercure authorization detail
is malformed.

Verification is strict: the algorithm is pinned (an explicit allow-list of one, never `none`, so a
token cannot pick how it is checked), `exp` and `aud` are required, and the leeway for clock skew
is small. Every refusal is an `sidestream.errors.InvalidToken` (HTTP 401) whose
`reason` says what was wrong; a channel the token does not grant is a
`sidestream.errors.Forbidden` (403).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from sidestream.access import Authorizer, Grant
from sidestream.errors import Forbidden, InvalidToken, InvalidTokenConfig
from sidestream.mercure_match import EXACT, WILDCARD, InvalidMatcher, TopicMatcher

DEFAULT_ALGORITHM = "HS256"
DEFAULT_AUDIENCE = "sidestream"
DEFAULT_LIFETIME = 300.0
"""Seconds a token lives unless told otherwise: five minutes, then the client fetches a new one."""
DEFAULT_LEEWAY = 5.0
"""Seconds of clock skew tolerated on `exp`, `nbf` and `iat`."""
KEY_ENV = "SIDESTREAM_TOKEN_KEY"
COOKIE_NAME = "sidestream_token"
QUERY_PARAM = "token"
MERCURE_DETAIL_TYPE = "https://mercure.rocks/authorization-detail"
"""The `type` of a Mercure authorization detail (draft-08), compared byte by byte."""
ACCESS_TOKEN_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
"""The claims RFC 9068 requires in every JWT access token (Mercure draft-08 tokens)."""
Grants = Sequence[str | TopicMatcher]
"""What a token grants: channel names or topics (`*` for all), or draft-08 topic matchers."""

# Algorithms PyJWT implements, without "none". HMAC keys must be at least as long as the hash.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
ALGORITHMS = frozenset(_HMAC_MIN_BYTES) | frozenset(_ASYMMETRIC) | {"EdDSA"}


@dataclass(frozen=True)
class AuthorizationDetail:
    """One Mercure authorization detail of a draft-08 token (RFC 9396 `authorization_details`).

    Attributes:
        actions: what it grants (`publish`, `subscribe`; actions this library does not know are
            kept and grant nothing).
        topics: the topic matchers the actions apply to (never empty).
        payload: the `payload` object (subscription metadata), if any.
    """

    actions: tuple[str, ...]
    topics: tuple[TopicMatcher, ...]
    payload: Mapping[str, Any] | None = None

    def grants(self, action: str, topic: str, hub_url: str) -> bool:
        """Whether this detail grants `action` on `topic` (matchers resolve against `hub_url`)."""
        return action in self.actions and any(m.matches(topic, hub_url) for m in self.topics)

    def to_json(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "type": MERCURE_DETAIL_TYPE,
            "actions": list(self.actions),
            "topics": [matcher.to_json() for matcher in self.topics],
        }
        if self.payload is not None:
            detail["payload"] = dict(self.payload)
        return detail


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says.

    Attributes:
        subject: the `sub` claim (who the token was issued to), if any.
        subscribe: what the holder may read: channel names or topic selectors (`mercure.subscribe`
            of a draft-07 token), or the `exact` matchers and `*` of a draft-08 token's
            `subscribe` details (its URL patterns are only in `details`).
        publish: what the holder may publish, read the same way.
        expires_at: the `exp` claim, Unix seconds.
        token_id: the `jti` claim, if any.
        issuer: the `iss` claim, if any.
        client_id: the `client_id` claim (draft-08 tokens).
        details: the Mercure authorization details of a draft-08 token, in token order.
    """

    subject: str | None
    subscribe: tuple[str, ...]
    publish: tuple[str, ...]
    expires_at: float
    token_id: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    details: tuple[AuthorizationDetail, ...] = ()

    def may_read(self, channel: str) -> bool:
        """True when `channel` is granted by exact name or by the `*` wildcard (no templates)."""
        return WILDCARD in self.subscribe or channel in self.subscribe

    def may_publish_update(self, topics: Sequence[str], hub_url: str) -> bool:
        """Draft-08 Publishers: true when a `publish` detail matches *every* topic."""
        return bool(topics) and all(
            any(d.grants("publish", t, hub_url) for d in self.details) for t in topics
        )

    def may_receive_private(self, topics: Sequence[str], hub_url: str) -> bool:
        """Draft-08 Subscribers: true when a `subscribe` detail matches *at least one* topic."""
        return any(d.grants("subscribe", t, hub_url) for d in self.details for t in topics)


class ClaimsFormat(Protocol):
    """Where the grants live inside a token: the strategy that keeps callers format-agnostic.

    [`MercureClaims`][sidestream.tokens.MercureClaims] is Mercure draft-07's `mercure` claim (the
    default, which the sidestream service reads);
    [`AccessTokenClaims`][sidestream.tokens.AccessTokenClaims] is draft-08's RFC 9068 access token.
    """

    header: Mapping[str, str]
    """Extra JOSE header fields (draft-08 needs `typ: at+jwt`)."""

    def encode(self, subscribe: Grants, publish: Grants) -> dict[str, Any]:
        """The claims that carry the grants."""
        ...

    def decode(self, payload: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """`(subscribe, publish)` read back from a verified payload; ValueError if malformed."""
        ...


class MercureClaims:
    """Mercure draft-07 grants (hubs 0.x): `{"mercure": {"subscribe": [...], "publish": [...]}}`.

    Entries are strings: channel names for the sidestream service, topic selectors for a hub.
    An `exact` [`TopicMatcher`][sidestream.mercure_match.TopicMatcher] is written as its string;
    a `urlpattern` one cannot be said in this format and is refused.
    """

    header: Mapping[str, str] = {}

    def encode(self, subscribe: Grants, publish: Grants) -> dict[str, Any]:
        return {"mercure": {"subscribe": _selectors(subscribe), "publish": _selectors(publish)}}

    def decode(self, payload: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        claim = payload.get("mercure", {})
        if not isinstance(claim, Mapping):
            raise ValueError("claim 'mercure' must be an object")
        return _strings(claim, "subscribe"), _strings(claim, "publish")


def _selectors(grants: Grants) -> list[str]:
    selectors = []
    for grant in grants:
        if isinstance(grant, TopicMatcher):
            if grant.match_type != EXACT and grant.match != WILDCARD:
                raise InvalidTokenConfig(
                    f"a {grant.match_type} matcher cannot be written in a draft-07 token "
                    "(its selectors are topics and URI templates): use AccessTokenClaims"
                )
            grant = grant.match
        selectors.append(grant)
    return selectors


def _strings(claim: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = claim.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"claim 'mercure.{key}' must be a list of strings")
    return tuple(value)


class AccessTokenClaims:
    """Mercure draft-08 (1.0) grants: an RFC 9068 access token with `authorization_details`.

    Issued tokens carry the header `typ: at+jwt`, a `client_id`, and one Mercure authorization
    detail per action:

    ```json
    {"iss": "https://example.com", "aud": "https://hub.example.com/.well-known/mercure",
     "sub": "user-42", "client_id": "https://example.com", "iat": 1767225300,
     "exp": 1767225600, "jti": "…",
     "authorization_details": [{"type": "https://mercure.rocks/authorization-detail",
       "actions": ["subscribe"],
       "topics": [{"match": "https://example.com/books/:id", "match_type": "urlpattern"}]}]}
    ```

    A plain string grant is an `exact` matcher (`*` matches every topic); pass a
    [`TopicMatcher`][sidestream.mercure_match.TopicMatcher] for a URL pattern. A token issued
    for no subject (a publisher's) gets `sub` = `client_id`, as RFC 9068 says for tokens that
    involve no resource owner.

    Reading a token back is all-or-nothing: a Mercure detail that is not an object, lacks a
    non-empty `actions` list of strings or a non-empty `topics` list, holds a matcher of an
    unknown type or a malformed URL pattern, or a token over the limits below, is refused as a
    whole (`InvalidToken`), never partly applied.

    Args:
        client_id: the `client_id` claim: the OAuth client the token is issued to (for a
            self-issuing API, its own URL).
        max_details: most authorization details accepted in one token.
        max_topics: most topic matchers accepted in one detail.
    """

    header: Mapping[str, str] = {"typ": "at+jwt"}

    def __init__(self, client_id: str, *, max_details: int = 64, max_topics: int = 256) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise InvalidTokenConfig("AccessTokenClaims needs a client_id (e.g. your API's URL)")
        self.client_id = client_id
        self.max_details = max_details
        self.max_topics = max_topics

    def encode(self, subscribe: Grants, publish: Grants) -> dict[str, Any]:
        details = [
            AuthorizationDetail((action,), tuple(_matchers(grants))).to_json()
            for action, grants in (("subscribe", subscribe), ("publish", publish))
            if grants
        ]
        return {"client_id": self.client_id, "authorization_details": details}

    def decode(self, payload: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        details = self.details(payload)

        def exact(action: str) -> tuple[str, ...]:
            return tuple(
                m.match
                for d in details
                if action in d.actions
                for m in d.topics
                if m.match_type == EXACT or m.match == WILDCARD
            )

        return exact("subscribe"), exact("publish")

    def details(self, payload: Mapping[str, Any]) -> tuple[AuthorizationDetail, ...]:
        """Every Mercure authorization detail of `payload`; ValueError if any is malformed."""
        claim = payload.get("authorization_details", [])
        if not isinstance(claim, list):
            raise ValueError("claim 'authorization_details' must be an array")
        found: list[AuthorizationDetail] = []
        for index, entry in enumerate(claim):
            where = f"authorization_details[{index}]"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
                raise ValueError(f"{where} must be an object with a string 'type'")
            if entry["type"] != MERCURE_DETAIL_TYPE:
                continue  # another API's detail: not ours to judge
            found.append(self._detail(entry, where))
            if len(found) > self.max_details:
                raise ValueError(f"more than {self.max_details} Mercure authorization details")
        return tuple(found)

    def _detail(self, entry: Mapping[str, Any], where: str) -> AuthorizationDetail:
        actions = entry.get("actions")
        if not isinstance(actions, list) or not actions:
            raise ValueError(f"{where}.actions must be a non-empty array")
        if not all(isinstance(action, str) for action in actions):
            raise ValueError(f"{where}.actions must hold strings only")
        topics = entry.get("topics")
        if not isinstance(topics, list) or not topics:
            raise ValueError(f"{where}.topics must be a non-empty array")
        if len(topics) > self.max_topics:
            raise ValueError(f"{where}.topics has more than {self.max_topics} matchers")
        matchers = []
        for position, item in enumerate(topics):
            if not isinstance(item, Mapping) or not isinstance(item.get("match"), str):
                raise ValueError(f"{where}.topics[{position}] must be an object with a 'match'")
            try:
                matchers.append(TopicMatcher(item["match"], item.get("match_type", EXACT)))
            except InvalidMatcher as exc:
                raise ValueError(f"{where}.topics[{position}]: {exc}") from exc
        payload = entry.get("payload")
        if payload is not None and not isinstance(payload, Mapping):
            raise ValueError(f"{where}.payload must be an object")
        return AuthorizationDetail(tuple(actions), tuple(matchers), payload)


def _matchers(grants: Grants) -> list[TopicMatcher]:
    try:
        return [g if isinstance(g, TopicMatcher) else TopicMatcher(g) for g in grants]
    except InvalidMatcher as exc:
        raise InvalidTokenConfig(f"cannot grant it: {exc}") from exc


class TokenIssuer(Protocol):
    """Anything that signs a token for a subject with read and publish grants.

    `sidestream.mercure.Publisher` and the examples depend on this protocol only, so another
    issuer (an OAuth authorization server client for Mercure 1.0, say) can be swapped in.
    """

    def issue(
        self,
        subject: str | None,
        *,
        subscribe: Grants = (),
        publish: Grants = (),
        lifetime: float | None = None,
    ) -> str:
        """A signed token valid for `lifetime` seconds."""
        ...


class StreamTokens:
    """Issues and verifies stream tokens with one pinned algorithm and audience.

    Args:
        key: the HMAC secret (HS256/384/512, at least as many bytes as the hash) or the private
            key (RS/PS/ES/EdDSA, needs `pyjwt[crypto]`). `None` for a verify-only instance.
        algorithm: the one algorithm tokens are signed and verified with.
        verify_key: the public key for asymmetric algorithms (defaults to `key` for HMAC).
        audience: the `aud` claim written and required (the stream service's name or URL).
        issuer: an `iss` claim to write and require, if set.
        lifetime: default seconds a token lives.
        leeway: seconds of clock skew tolerated.
        claims_format: where the grants live in the token: Mercure draft-07's `mercure` claim
            by default; [`AccessTokenClaims`][sidestream.tokens.AccessTokenClaims] for a Mercure
            1.0 (draft-08) hub, which then needs `issuer` and the hub's resource identifier as
            `audience`.

    Raises:
        InvalidTokenConfig: `alg: none` or an unknown algorithm, no key, a short HMAC key, a
            draft-08 format without an issuer.

    Example:
        ```python
        from sidestream.tokens import StreamTokens

        tokens = StreamTokens("a-secret-of-at-least-32-bytes-long!!")
        token = tokens.issue("user-42", subscribe=["user:42"], lifetime=60)
        claims = tokens.verify(token)
        print(claims.subject, claims.subscribe, claims.may_read("user:7"))
        #> user-42 ('user:42',) False
        ```
    """

    def __init__(
        self,
        key: str | bytes | Any | None,
        *,
        algorithm: str = DEFAULT_ALGORITHM,
        verify_key: str | bytes | Any | None = None,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str | None = None,
        lifetime: float = DEFAULT_LIFETIME,
        leeway: float = DEFAULT_LEEWAY,
        claims_format: ClaimsFormat | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            allowed = ", ".join(sorted(ALGORITHMS))
            raise InvalidTokenConfig(
                f"algorithm {algorithm!r} is not allowed; use one of {allowed}"
            )
        if algorithm in _HMAC_MIN_BYTES:
            if verify_key is not None:
                raise InvalidTokenConfig(f"{algorithm} uses one shared key: pass it as `key` only")
            _check_hmac_key(key, algorithm)
            verify_key = key
        elif verify_key is None:
            raise InvalidTokenConfig(f"{algorithm} needs `verify_key`: the public key")
        if lifetime <= 0 or leeway < 0:
            raise InvalidTokenConfig("lifetime must be > 0 and leeway >= 0 (seconds)")
        if isinstance(claims_format, AccessTokenClaims) and not issuer:
            raise InvalidTokenConfig(
                "draft-08 access tokens need issuer=: a stable identifier of who signs them "
                "(your API's URL), which the hub is configured to trust"
            )
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        self.lifetime = lifetime
        self.leeway = leeway
        self.claims_format: ClaimsFormat = claims_format or MercureClaims()
        self._key = key
        self._verify_key: Any = verify_key

    @classmethod
    def from_env(cls, var: str = KEY_ENV, **options: Any) -> StreamTokens:
        """HMAC tokens keyed by the environment variable `var` (the API and the service share it).

        Raises:
            InvalidTokenConfig: the variable is unset or too short.
        """
        key = os.environ.get(var)
        if not key:
            raise InvalidTokenConfig(
                f"{var} is not set: generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
                "and give the same value to the API and the stream service"
            )
        return cls(key, **options)

    def issue(
        self,
        subject: str | None,
        *,
        subscribe: Grants = (),
        publish: Grants = (),
        lifetime: float | None = None,
    ) -> str:
        """Sign a token for `subject` that may read `subscribe` and publish to `publish`.

        Args:
            subject: the `sub` claim (a user id), or `None` for none.
            subscribe: channels (or Mercure topic selectors) the holder may read.
            publish: topics the holder may publish to (Mercure publishers).
            lifetime: seconds until `exp`; defaults to the instance's lifetime. Keep tokens that
                travel in URLs to a minute or so.

        Raises:
            InvalidTokenConfig: a verify-only instance (no signing key).
        """
        if self._key is None:
            raise InvalidTokenConfig("this StreamTokens has no signing key: it can only verify")
        for name, grants in (("subscribe", subscribe), ("publish", publish)):
            if isinstance(grants, str):
                raise InvalidTokenConfig(f"{name} must be a list of strings, not one string")
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": self.audience,
            "iat": now,
            "exp": now + int(lifetime if lifetime is not None else self.lifetime),
            "jti": str(uuid.uuid4()),
            **self.claims_format.encode(subscribe, publish),
        }
        if isinstance(self.claims_format, AccessTokenClaims) and subject is None:
            subject = self.claims_format.client_id  # RFC 9068: no resource owner, the client
        if subject is not None:
            payload["sub"] = subject
        if self.issuer is not None:
            payload["iss"] = self.issuer
        return jwt.encode(
            payload, self._key, algorithm=self.algorithm, headers=dict(self.claims_format.header)
        )

    def verify(self, token: str) -> TokenClaims:
        """Check signature, algorithm, `exp`, `aud` (and `iss`) and return the claims.

        Raises:
            InvalidToken: with a `reason` naming what failed.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise InvalidToken(f"token is malformed: {exc}") from exc
        alg = header.get("alg")
        if alg != self.algorithm:
            raise InvalidToken(
                f"token algorithm {alg!r} is not accepted; expected {self.algorithm}"
            )
        if isinstance(self.claims_format, AccessTokenClaims):
            _check_access_token_header(header)
            required = list(ACCESS_TOKEN_CLAIMS)
        else:
            required = ["exp", "aud", "iat"] + (["iss"] if self.issuer is not None else [])
        try:
            payload = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token has expired: fetch a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(f"token audience is not {self.audience!r}") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken(f"token issuer is not {self.issuer!r}") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("token signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token has no {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"token is invalid: {exc}") from exc
        for name in ("sub", "iss", "client_id", "jti"):
            if payload.get(name) is not None and not isinstance(payload[name], str):
                raise InvalidToken(f"token claim {name!r} must be a string")
        details: tuple[AuthorizationDetail, ...] = ()
        try:
            subscribe, publish = self.claims_format.decode(payload)
            if isinstance(self.claims_format, AccessTokenClaims):
                details = self.claims_format.details(payload)
        except ValueError as exc:
            raise InvalidToken(f"token is invalid: {exc}") from exc
        return TokenClaims(
            subject=payload.get("sub"),
            subscribe=subscribe,
            publish=publish,
            expires_at=float(payload["exp"]),
            token_id=payload.get("jti"),
            issuer=payload.get("iss"),
            client_id=payload.get("client_id"),
            details=details,
        )


def _check_access_token_header(header: Mapping[str, Any]) -> None:
    # RFC 9068 / draft-08 Token Validation: `typ` is `at+jwt` or `application/at+jwt`, compared
    # case-insensitively with the prefix omitted, so an ID token is never taken for an access token.
    typ = header.get("typ")
    media = typ.lower().removeprefix("application/") if isinstance(typ, str) else None
    if media != "at+jwt":
        raise InvalidToken(f"token type {typ!r} is not an access token: expected 'at+jwt'")
    for name in ("jwk", "jku", "x5u", "x5c"):
        if name in header:
            raise InvalidToken(f"token header {name!r} is not accepted: keys come from the hub")


def _check_hmac_key(key: object, algorithm: str) -> None:
    if key is None:
        raise InvalidTokenConfig(f"{algorithm} needs a secret key: see StreamTokens.from_env")
    if not isinstance(key, str | bytes):
        raise InvalidTokenConfig(f"{algorithm} keys are str or bytes, not {type(key).__name__}")
    raw = key.encode() if isinstance(key, str) else key
    minimum = _HMAC_MIN_BYTES[algorithm]
    if len(raw) < minimum:
        raise InvalidTokenConfig(
            f"{algorithm} key is {len(raw)} bytes; use at least {minimum} "
            f"(e.g. secrets.token_urlsafe({minimum}))"
        )
    if raw.lstrip().startswith(b"-----BEGIN"):
        raise InvalidTokenConfig(f"{algorithm} key looks like a PEM key: use RS256/ES256 for it")


class TokenSource(Protocol):
    """The request methods a token is read from (`falcon.Request` and `falcon.asgi.Request`)."""

    cookies: Mapping[str, str]

    def get_header(self, name: str) -> str | None: ...

    def get_param(self, name: str) -> str | None: ...


def token_from_request(
    req: TokenSource, *, cookie: str | None = COOKIE_NAME, query_param: str | None = QUERY_PARAM
) -> str:
    """The token a request carries, looked for in Mercure's order.

    1. `Authorization: Bearer <token>` (scripts, `fetch()`; never logged by default);
    2. the `query_param` query parameter (the one thing a cross-site `EventSource` can send; ends
       up in access logs and browser history, so such tokens must be short-lived and read-only);
    3. the `cookie` cookie (HttpOnly: JavaScript never sees it, but it needs the same site).

    Raises:
        InvalidToken: no token, or an `Authorization` header that is not `Bearer <token>`.
    """
    header = req.get_header("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("Authorization header must be 'Bearer <token>'")
        return token.strip()
    if query_param and (from_query := req.get_param(query_param)):
        return from_query
    if cookie and (from_cookie := req.cookies.get(cookie)):
        return from_cookie
    places = ["an 'Authorization: Bearer' header"]
    places += [f"the {query_param!r} query parameter"] if query_param else []
    places += [f"the {cookie!r} cookie"] if cookie else []
    raise InvalidToken(f"no stream token: send it in {' or '.join(places)}")


def authorizer(
    tokens: StreamTokens, *, cookie: str | None = COOKIE_NAME, query_param: str | None = QUERY_PARAM
) -> Authorizer:
    """An `sidestream.access.Authorizer` for the stream service, backed by tokens.

    It reads the token from the request (see
    [`token_from_request`][sidestream.tokens.token_from_request]), verifies it and requires every
    requested channel to be granted. The returned Grant carries the token's `exp`, so the service
    closes the stream when the token expires; the client reconnects with a fresh token and resumes
    from its last event id. It also carries the token's `mercure.publish` list: the channels a
    WebSocket client may publish to (exact names, or `*`).

    Raises (from the returned coroutine):
        InvalidToken: 401, for anything wrong with the token itself.
        Forbidden: 403, when a requested channel is not granted.
    """

    async def authorize(req: Any, channels: Sequence[str]) -> Grant:
        claims = tokens.verify(token_from_request(req, cookie=cookie, query_param=query_param))
        refused = [channel for channel in channels if not claims.may_read(channel)]
        if refused:
            who = claims.subject or "this token"
            raise Forbidden(f"{who} may not read {', '.join(refused)}")
        return Grant(subject=claims.subject, expires_at=claims.expires_at, publish=claims.publish)

    return authorize
