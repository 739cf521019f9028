"""Short-lived signed stream tokens: the API issues them, the stream service verifies them.

A stream token is a JWT (PyJWT) that names a subject and the channels it may read. The claims
follow Mercure's draft-07 shape, so one helper signs tokens for the sidestream service and for a
Mercure hub alike:

```json
{"sub": "user-42", "aud": "sidestream", "iat": 1767225300, "exp": 1767225600,
 "jti": "…", "mercure": {"subscribe": ["user:42"], "publish": []}}
```

Where the two differ: a Mercure hub reads the entries as *topic selectors* (URIs or URI templates
such as `https://example.com/books/{id}`, or `*`), while the sidestream service reads them as
*channel names* (the `bus.validate_channel` pattern `[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}`) and
matches them exactly, `*` standing for every channel. A Mercure hub v0.x ignores `aud`; the
service checks it.

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

DEFAULT_ALGORITHM = "HS256"
DEFAULT_AUDIENCE = "sidestream"
DEFAULT_LIFETIME = 300.0
"""Seconds a token lives unless told otherwise: five minutes, then the client fetches a new one."""
DEFAULT_LEEWAY = 5.0
"""Seconds of clock skew tolerated on `exp`, `nbf` and `iat`."""
KEY_ENV = "SIDESTREAM_TOKEN_KEY"
COOKIE_NAME = "sidestream_token"
QUERY_PARAM = "token"
WILDCARD = "*"

# Algorithms PyJWT implements, without "none". HMAC keys must be at least as long as the hash.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
ALGORITHMS = frozenset(_HMAC_MIN_BYTES) | frozenset(_ASYMMETRIC) | {"EdDSA"}


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says.

    Attributes:
        subject: the `sub` claim (who the token was issued to), if any.
        subscribe: what the holder may read (`mercure.subscribe`): channel names or topic selectors.
        publish: what the holder may publish (`mercure.publish`).
        expires_at: the `exp` claim, Unix seconds.
        token_id: the `jti` claim, if any.
    """

    subject: str | None
    subscribe: tuple[str, ...]
    publish: tuple[str, ...]
    expires_at: float
    token_id: str | None = None

    def may_read(self, channel: str) -> bool:
        """True when `channel` is granted by exact name or by the `*` wildcard (no templates)."""
        return WILDCARD in self.subscribe or channel in self.subscribe


class ClaimsFormat(Protocol):
    """Where the grants live inside a token: the strategy that keeps callers format-agnostic.

    [`MercureClaims`][sidestream.tokens.MercureClaims] is Mercure draft-07's `mercure` claim. A
    format for Mercure draft-08 (1.0) tokens (`typ: at+jwt`, an `authorization_details` claim,
    `client_id`) would implement this same protocol; `issue` and `verify` would not change.
    """

    header: Mapping[str, str]
    """Extra JOSE header fields (draft-08 needs `typ: at+jwt`)."""

    def encode(self, subscribe: Sequence[str], publish: Sequence[str]) -> dict[str, Any]:
        """The claims that carry the grants."""
        ...

    def decode(self, payload: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """`(subscribe, publish)` read back from a verified payload; ValueError if malformed."""
        ...


class MercureClaims:
    """Mercure draft-07 grants: `{"mercure": {"subscribe": [...], "publish": [...]}}`."""

    header: Mapping[str, str] = {}

    def encode(self, subscribe: Sequence[str], publish: Sequence[str]) -> dict[str, Any]:
        return {"mercure": {"subscribe": list(subscribe), "publish": list(publish)}}

    def decode(self, payload: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        claim = payload.get("mercure", {})
        if not isinstance(claim, Mapping):
            raise ValueError("claim 'mercure' must be an object")
        return _strings(claim, "subscribe"), _strings(claim, "publish")


def _strings(claim: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = claim.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"claim 'mercure.{key}' must be a list of strings")
    return tuple(value)


class TokenIssuer(Protocol):
    """Anything that signs a token for a subject with read and publish grants.

    `sidestream.mercure.Publisher` and the examples depend on this protocol only, so another
    issuer (an OAuth authorization server client for Mercure 1.0, say) can be swapped in.
    """

    def issue(
        self,
        subject: str | None,
        *,
        subscribe: Sequence[str] = (),
        publish: Sequence[str] = (),
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
        claims_format: where the grants live in the token (Mercure draft-07 by default).

    Raises:
        InvalidTokenConfig: `alg: none` or an unknown algorithm, no key, a short HMAC key.

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
        subscribe: Sequence[str] = (),
        publish: Sequence[str] = (),
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
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.DecodeError as exc:
            raise InvalidToken(f"token is malformed: {exc}") from exc
        if alg != self.algorithm:
            raise InvalidToken(
                f"token algorithm {alg!r} is not accepted; expected {self.algorithm}"
            )
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
        subject = payload.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise InvalidToken("token claim 'sub' must be a string")
        try:
            subscribe, publish = self.claims_format.decode(payload)
        except ValueError as exc:
            raise InvalidToken(f"token is invalid: {exc}") from exc
        jti = payload.get("jti")
        return TokenClaims(
            subject=subject,
            subscribe=subscribe,
            publish=publish,
            expires_at=float(payload["exp"]),
            token_id=jti if isinstance(jti, str) else None,
        )


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
