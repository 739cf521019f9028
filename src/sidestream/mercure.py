"""Publishing to a Mercure hub (httpx), and the discovery, token and cookie helpers around it.

Two protocol versions are in use, and every publisher and cookie says which one its hub speaks:

- `"draft-08"` (Mercure 1.0, the hub's 1.0 line): the publisher's token is an RFC 9068 access
  token (`typ: at+jwt`; `iss`, `aud` = the hub's resource identifier, `exp`, `sub`,
  `client_id`, `iat`, `jti`) whose `authorization_details` grant `publish` on every topic;
  refusals carry `WWW-Authenticate: Bearer error="..."`; subscribers use `match=` /
  `match_urlpattern=`, `last_event_id` and the `__Secure-mercure_access_token` cookie.
- `"draft-07"` (hubs 0.x): the token's `mercure.publish` claim lists topic selectors;
  subscribers use `topic=`, `lastEventID` and the `mercureAuthorization` cookie.

The update itself is the same form on both: a `POST` to the hub URL with an
`application/x-www-form-urlencoded` body (`topic` repeated, then `data`, `private`, `id`,
`type`, `retry`), and the hub answers `200` with the update's id. Updates are checked against
draft-08's rules before anything is sent, whichever version the hub speaks.

[`Publisher`][sidestream.mercure.Publisher] (sync, for Flask) and
[`AsyncPublisher`][sidestream.mercure.AsyncPublisher] share one implementation: request building,
response mapping and the retry policy live in a sans-IO core that both drive. Each update gets a
`urn:uuid:` id on the client before the first attempt, and a retry after a timeout or a 5xx sends
the *same* id. That does not make a retry free of duplicates: if the hub had dispatched the update
and only its answer was lost, a draft-08 hub stores and dispatches the repeat as a second update
with the same id (the spec only recommends unique ids and resolves a `Last-Event-ID` to the
earliest of them). What the shared id gives is that subscribers can recognise the repeat and
drop it; `RetryPolicy(attempts=1)` turns retries off where a second delivery is worse than none.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args
from urllib.parse import urlencode, urlsplit

import anyio
import httpx
import jwt

from sidestream.errors import (
    InvalidUpdate,
    MercureBadRequest,
    MercureError,
    MercureForbidden,
    MercurePayloadTooLarge,
    MercureRateLimited,
    MercureUnauthorized,
    MercureUnavailable,
)
from sidestream.mercure_match import (
    URLPATTERN,
    WILDCARD,
    InvalidMatcher,
    TopicMatcher,
    forbidden_char,
    in_reserved_namespace,
)
from sidestream.tokens import AccessTokenClaims, Grants, StreamTokens, TokenIssuer

Version = Literal["draft-07", "draft-08"]
"""The Mercure protocol version a hub speaks: `"draft-08"` (Mercure 1.0) or `"draft-07"` (0.x)."""
DRAFT_07: Version = "draft-07"
DRAFT_08: Version = "draft-08"
VERSIONS: tuple[Version, ...] = get_args(Version)

HUB_PATH = "/.well-known/mercure"
COOKIE_NAMES: dict[Version, str] = {
    "draft-08": "__Secure-mercure_access_token",
    "draft-07": "mercureAuthorization",
}
"""The subscriber cookie each version's hubs read by default."""
LAST_EVENT_ID_PARAMS: dict[Version, str] = {"draft-08": "last_event_id", "draft-07": "lastEventID"}
"""The query parameter a first connection (which cannot set headers) sends its last event id in."""
LAST_EVENT_ID_RESPONSE_HEADERS: dict[Version, str] = {
    "draft-08": "Mercure-Last-Event-ID",
    "draft-07": "Last-Event-ID",
}
"""The response header in which the hub says which event the stream continues after."""
COOKIE_NAME = COOKIE_NAMES["draft-07"]
"""Draft-07's cookie name, kept for existing imports; prefer `COOKIE_NAMES[version]`."""
PUBLISHER_TOKEN_LIFETIME = 60.0
"""Seconds a per-request publisher token lives (it is signed again for every attempt)."""

# Failures after which the hub may or may not have the update: safe to retry with the same id.
RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def new_id() -> str:
    """A fresh update id: a `urn:uuid:` IRI, as the spec suggests."""
    return f"urn:uuid:{uuid.uuid4()}"


def _check_version(version: object) -> Version:
    if version not in VERSIONS:
        raise InvalidUpdate(
            f"protocol must be 'draft-08' (Mercure 1.0 hubs) or 'draft-07' (hubs 0.x), "
            f"got {version!r}"
        )
    return version


_forbidden_char = forbidden_char  # the name this module used before mercure_match existed


@dataclass(frozen=True)
class Update:
    """One update, checked against draft-08's Publication rules when it is built.

    The hub's reserved namespace (`/.well-known/mercure/...`) depends on the hub's URL, so the
    publisher checks it when it sends (see `check_topics`).

    Attributes:
        topics: the canonical topic IRI first, then alternates (at least one; none is `*`, and
            none holds a control or format character).
        data: the new content (any text; the hub splits lines into `data:` fields).
        private: dispatch only to subscribers whose token grants one of the topics.
        id: the SSE id; a `urn:uuid:` is generated when omitted. Must not start with `#`, must
            not be `earliest`, and holds no control or format character.
        type: the SSE `event` type; not `mercure`, which is the hub's own.
        retry: the SSE reconnection time in milliseconds.

    Raises:
        InvalidUpdate: with the rule that was broken.
    """

    topics: tuple[str, ...]
    data: str = ""
    private: bool = False
    id: str = field(default_factory=new_id)
    type: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.topics, str) or not self.topics:
            raise InvalidUpdate("topics must be a non-empty sequence of topic IRIs, not a string")
        for topic in self.topics:
            if not isinstance(topic, str) or not topic:
                raise InvalidUpdate(f"every topic must be a non-empty string, got {topic!r}")
            if bad := _forbidden_char(topic):
                raise InvalidUpdate(f"topic {topic!r} contains the control character {bad}")
            if topic == WILDCARD:
                raise InvalidUpdate("topic '*' is reserved for the wildcard matcher")
        if not self.id or self.id.startswith("#") or self.id == "earliest":
            raise InvalidUpdate(
                f"id {self.id!r} is not allowed: it must be non-empty, must not start with '#' "
                "(hub-generated ids) and must not be 'earliest'; omit it to get a urn:uuid: id"
            )
        for name, value in (("id", self.id), ("type", self.type)):
            if value is not None and (bad := _forbidden_char(value)):
                raise InvalidUpdate(f"{name} {value!r} contains the control character {bad}")
        if self.type == "mercure":
            raise InvalidUpdate("type 'mercure' is reserved for the hub's own events")
        if self.retry is not None and (
            isinstance(self.retry, bool) or not isinstance(self.retry, int) or self.retry < 0
        ):
            raise InvalidUpdate(
                f"retry must be a non-negative int (milliseconds), got {self.retry!r}"
            )

    def form(self) -> list[tuple[str, str]]:
        """The form fields, in the order they are sent: every `topic`, then the others."""
        fields = [("topic", topic) for topic in self.topics] + [("data", self.data)]
        if self.private:
            fields.append(("private", "on"))
        fields.append(("id", self.id))
        if self.type is not None:
            fields.append(("type", self.type))
        if self.retry is not None:
            fields.append(("retry", str(self.retry)))
        return fields

    def body(self) -> bytes:
        """The exact request body: `application/x-www-form-urlencoded`."""
        return urlencode(self.form()).encode("ascii")

    def check_topics(self, hub_url: str) -> None:
        """Refuse topics in the hub's reserved namespace (its path and below, after resolution).

        Raises:
            InvalidUpdate: naming the topic.
        """
        for topic in self.topics:
            if in_reserved_namespace(topic, hub_url):
                raise InvalidUpdate(
                    f"topic {topic!r} is in the hub's reserved namespace "
                    f"({urlsplit(hub_url).path}/...), which only the hub publishes to"
                )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a publish is retried after a timeout, network error or 5xx.

    Attributes:
        attempts: total tries, the first included.
        backoff: seconds before the second try; doubles each time, with jitter (50-100 %).
        max_backoff: cap on one wait.
    """

    attempts: int = 3
    backoff: float = 0.2
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("RetryPolicy needs attempts >= 1 and non-negative backoffs")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)


_AUTH_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def bearer_challenge(response: httpx.Response) -> dict[str, str] | None:
    """The parameters of the response's `WWW-Authenticate: Bearer` challenge, or None.

    Example:
        ```python
        import httpx

        from sidestream.mercure import bearer_challenge

        challenge = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
        refused = httpx.Response(403, headers=challenge)
        print(bearer_challenge(refused))
        #> {'error': 'insufficient_scope'}
        ```
    """
    for value in response.headers.get_list("www-authenticate"):
        scheme, _, params = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            return {
                name.lower(): re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
                for name, quoted, bare in _AUTH_PARAM.findall(params)
            }
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.strip().isdigit() else None


def error_for(
    response: httpx.Response, update: Update, *, protocol: Version = "draft-07"
) -> MercureError | None:
    """The typed error a hub response means, or `None` for success (2xx).

    Draft-08 hubs name the token problem in `WWW-Authenticate: Bearer error="..."`
    (`invalid_token`, `insufficient_scope`, `invalid_request`); the message says what it means.
    """
    status, body = response.status_code, response.text.strip()
    if 200 <= status < 300:
        return None
    where = f"{response.request.method} {response.request.url}"
    challenge = bearer_challenge(response) or {}
    code = challenge.get("error")
    said = (
        f" ({code}: {challenge['error_description']})"
        if challenge.get("error_description")
        else (f" ({code})" if code else "")
    )
    if status == 400:
        if code == "invalid_request":
            return MercureBadRequest(
                f"hub could not read the token as presented{said} ({where}): send exactly one "
                "'Authorization: Bearer <token>' header",
                status,
                body,
            )
        return MercureBadRequest(
            f"hub rejected the update as malformed ({where}): {body}", status, body
        )
    if status == 401:
        if protocol == "draft-07":
            hint = (
                "check that it is signed with the hub's publisher key and not expired (hubs "
                "v0.x also answer 401 when mercure.publish does not cover the topics)"
            )
        elif code is None:
            hint = "no token reached the hub: send 'Authorization: Bearer <token>'"
        else:
            hint = (
                "the hub refused the token: check its signing key and algorithm, 'typ: at+jwt', "
                "'iss' (the issuer the hub trusts), 'aud' (the hub's resource identifier), "
                "'exp', and that every authorization detail is well-formed"
            )
        return MercureUnauthorized(
            f"hub refused the publisher token{said} (401 from {where}): {hint}", status, body
        )
    if status == 403:
        claim = "mercure.publish" if protocol == "draft-07" else "publish authorization_details"
        return MercureForbidden(
            f"the token's {claim} does not cover every topic of {list(update.topics)}{said} "
            f"(403 from {where})",
            status,
            body,
        )
    if status == 413:
        return MercurePayloadTooLarge(
            f"update of {len(update.body())} bytes is too large for the hub (413 from {where}): "
            "send less data (a URL to fetch, a diff) or raise the hub's body limit",
            status,
            body,
        )
    if status == 429:
        retry_after = _retry_after(response)
        wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
        return MercureRateLimited(
            f"hub is limiting this publisher (429 from {where}){wait}",
            status,
            body,
            retry_after=retry_after,
        )
    if status >= 500:
        return MercureUnavailable(f"hub failed ({status} from {where}): {body}", status, body)
    return MercureError(f"hub answered {status} to {where}: {body}", status, body)


Step = httpx.Request | float
"""What the core asks its driver for: send this request, or sleep this many seconds."""
Outcome = httpx.Response | Exception | None


class _PublishCore:
    """Everything about publishing except the I/O, shared by the sync and async publishers."""

    def __init__(
        self, hub_url: str, token: str | TokenIssuer, retry: RetryPolicy, protocol: Version
    ) -> None:
        if urlsplit(hub_url).scheme not in {"http", "https"}:
            raise InvalidUpdate(f"hub_url must be an http(s) URL, got {hub_url!r}")
        self.protocol = _check_version(protocol)
        _check_token_version(token, self.protocol)
        self.hub_url = hub_url
        self.token = token
        self.retry = retry

    def request(self, update: Update) -> httpx.Request:
        if isinstance(self.token, str):
            jwt = self.token
        else:  # least privilege: a short-lived token for exactly this update's topics
            jwt = publisher_token(self.token, update.topics, lifetime=PUBLISHER_TOKEN_LIFETIME)
        headers = {
            "Authorization": f"Bearer {jwt}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return httpx.Request("POST", self.hub_url, headers=headers, content=update.body())

    def attempts(self, update: Update) -> Generator[Step, Outcome, str]:
        """Yields requests to send and delays to sleep; returns the id the hub assigned."""
        update.check_topics(self.hub_url)
        for attempt in range(1, self.retry.attempts + 1):
            outcome = yield self.request(update)
            last = attempt == self.retry.attempts
            if isinstance(outcome, httpx.Response):
                error = error_for(outcome, update, protocol=self.protocol)
                if error is None:
                    return outcome.text.strip() or update.id
                if not isinstance(error, MercureUnavailable) or last:
                    raise error
            elif last:
                raise MercureUnavailable(
                    f"no answer from {self.hub_url} after {attempt} attempts: {outcome!r}"
                ) from outcome
            yield self.retry.delay(attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _check_token_version(token: str | TokenIssuer, protocol: Version) -> None:
    """Catch the one mistake no hub explains well: a token of the other version's shape."""
    if isinstance(token, StreamTokens):
        draft_08 = isinstance(token.claims_format, AccessTokenClaims)
        if draft_08 != (protocol == "draft-08"):
            shape = "AccessTokenClaims" if draft_08 else "the mercure claim (draft-07)"
            raise InvalidUpdate(
                f"the token issuer writes {shape} but protocol={protocol!r}: use "
                + (
                    "claims_format=AccessTokenClaims(client_id=...) and issuer=... for draft-08"
                    if protocol == "draft-08"
                    else "the default claims_format for draft-07"
                )
            )
    elif isinstance(token, str) and protocol == "draft-08":
        try:
            typ = jwt.get_unverified_header(token).get("typ")
        except jwt.DecodeError as exc:
            raise InvalidUpdate(f"the publisher token is not a JWT: {exc}") from exc
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "at+jwt":
            raise InvalidUpdate(
                f"a draft-08 hub takes only access tokens (header typ 'at+jwt'); this one has "
                f"typ {typ!r}"
            )


class Publisher:
    """Publishes updates from sync code (a Flask view). Thread-safe; create one per process.

    Args:
        hub_url: the hub's publish URL, e.g. `https://hub.example.com/.well-known/mercure`.
        token: a publisher token, or a [`TokenIssuer`][sidestream.tokens.TokenIssuer] (then each
            update gets its own short-lived token for exactly its topics).
        protocol: the version the hub speaks: `"draft-08"` (Mercure 1.0) or `"draft-07"`
            (hubs 0.x). It decides how refusals are read, and a
            [`StreamTokens`][sidestream.tokens.StreamTokens] issuer must write that version's
            token shape.
        client: an `httpx.Client` to use (its transport, proxies, TLS); one is made otherwise.
        timeout: seconds for each attempt when the client is made here.
        retry: the [`RetryPolicy`][sidestream.mercure.RetryPolicy].

    Raises:
        InvalidUpdate: an unknown protocol, a non-http(s) hub URL, or a token of the other
            version's shape.
    """

    def __init__(
        self,
        hub_url: str,
        token: str | TokenIssuer,
        *,
        protocol: Version,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._core = _PublishCore(hub_url, token, retry or RetryPolicy(), protocol)
        self._client = client or httpx.Client(timeout=timeout)

    def publish(
        self,
        topics: str | Sequence[str],
        data: str = "",
        *,
        private: bool = False,
        id: str | None = None,
        type: str | None = None,
        retry: int | None = None,
    ) -> str:
        """Publish one update; returns the id the hub assigned (normally the one sent).

        Raises:
            InvalidUpdate: before anything is sent, if the update breaks the protocol.
            MercureError: a subclass per status (see `sidestream.errors`;
                [`MercureRateLimited`][sidestream.errors.MercureRateLimited] for 429).
        """
        update = make_update(topics, data, private=private, id=id, type=type, retry=retry)
        steps = self._core.attempts(update)
        outcome: Outcome = None
        try:
            while True:
                step = steps.send(outcome)
                if isinstance(step, float):
                    time.sleep(step)
                    outcome = None
                    continue
                try:
                    outcome = self._client.send(step)
                except RETRYABLE as exc:
                    outcome = exc
        except StopIteration as done:
            return str(done.value)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncPublisher:
    """The async twin of [`Publisher`][sidestream.mercure.Publisher]: same arguments, awaited."""

    def __init__(
        self,
        hub_url: str,
        token: str | TokenIssuer,
        *,
        protocol: Version,
        client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._core = _PublishCore(hub_url, token, retry or RetryPolicy(), protocol)
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def publish(
        self,
        topics: str | Sequence[str],
        data: str = "",
        *,
        private: bool = False,
        id: str | None = None,
        type: str | None = None,
        retry: int | None = None,
    ) -> str:
        """Publish one update; see [`Publisher.publish`][sidestream.mercure.Publisher.publish]."""
        update = make_update(topics, data, private=private, id=id, type=type, retry=retry)
        steps = self._core.attempts(update)
        outcome: Outcome = None
        try:
            while True:
                step = steps.send(outcome)
                if isinstance(step, float):
                    await anyio.sleep(step)
                    outcome = None
                    continue
                try:
                    outcome = await self._client.send(step)
                except RETRYABLE as exc:
                    outcome = exc
        except StopIteration as done:
            return str(done.value)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def make_update(
    topics: str | Sequence[str],
    data: str = "",
    *,
    private: bool = False,
    id: str | None = None,
    type: str | None = None,
    retry: int | None = None,
) -> Update:
    """An [`Update`][sidestream.mercure.Update] from `publish()`'s arguments (one topic or many)."""
    topic_list = (topics,) if isinstance(topics, str) else tuple(topics)
    return Update(topic_list, data, private, id or new_id(), type, retry)


# --- tokens ----------------------------------------------------------------------------------


def publisher_token(
    issuer: TokenIssuer, topics: Grants = ("*",), *, lifetime: float | None = None
) -> str:
    """A token that may publish to `topics` (`*` for every topic).

    In the issuer's format: `mercure.publish` (draft-07), or a `publish` authorization detail
    (draft-08, where a plain string is an `exact` matcher and a
    [`TopicMatcher`][sidestream.mercure_match.TopicMatcher] can be a URL pattern).
    """
    return issuer.issue(None, publish=list(topics), lifetime=lifetime)


def subscriber_token(
    issuer: TokenIssuer,
    topics: Grants,
    *,
    subject: str | None = None,
    lifetime: float | None = None,
) -> str:
    """A token that may read the private updates of `topics` (a `subscribe` grant)."""
    return issuer.issue(subject, subscribe=list(topics), lifetime=lifetime)


def subscription_url(
    hub_url: str,
    topics: Sequence[str | TopicMatcher],
    *,
    protocol: Version,
    last_event_id: str | None = None,
) -> str:
    """The URL a subscriber opens (`EventSource`) to receive `topics`, in the hub's version.

    Draft-08: `match=` for an exact topic (or `*`), `match_urlpattern=` for a URL pattern, and
    `last_event_id=`. Draft-07: `topic=` selectors and `lastEventID=` (URL patterns cannot be
    said in draft-07).

    Example:
        ```python
        from urllib.parse import parse_qsl, urlsplit

        from sidestream.mercure import TopicMatcher, subscription_url

        url = subscription_url(
            "https://hub.example.com/.well-known/mercure",
            ["https://example.com/foo", TopicMatcher("https://example.com/bar/:id", "urlpattern")],
            protocol="draft-08",
            last_event_id="urn:uuid:1",
        )
        print(parse_qsl(urlsplit(url).query)[1])
        #> ('match_urlpattern', 'https://example.com/bar/:id')
        print([name for name, _ in parse_qsl(urlsplit(url).query)])
        #> ['match', 'match_urlpattern', 'last_event_id']
        ```
    """
    protocol = _check_version(protocol)
    if not topics:
        raise InvalidUpdate("subscribe to at least one topic")
    query: list[tuple[str, str]] = []
    for topic in topics:
        try:
            matcher = topic if isinstance(topic, TopicMatcher) else TopicMatcher(topic)
        except InvalidMatcher as exc:
            raise InvalidUpdate(str(exc)) from exc
        if protocol == "draft-07":
            if matcher.match_type == URLPATTERN:
                raise InvalidUpdate("draft-07 hubs know no URL patterns: use protocol='draft-08'")
            query.append(("topic", matcher.match))
        else:
            name = "match" if matcher.match_type != URLPATTERN else "match_urlpattern"
            query.append((name, matcher.match))
    if last_event_id is not None:
        if bad := forbidden_char(last_event_id):
            raise InvalidUpdate(f"last_event_id contains the control character {bad}")
        query.append((LAST_EVENT_ID_PARAMS[protocol], last_event_id))
    return f"{hub_url}?{urlencode(query)}"


# --- discovery and the subscriber cookie -----------------------------------------------------


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _target(url: str) -> str:
    if any(char in url for char in "<>\r\n") or _forbidden_char(url):
        raise InvalidUpdate(f"{url!r} cannot be a Link target")
    return f"<{url}>"


def discovery_links(
    hub_url: str,
    *,
    topic: str | None = None,
    last_event_id: str | None = None,
    content_type: str | None = None,
    type: str | None = None,
) -> list[str]:
    """The `Link` header values that let a subscriber find the hub (Discovery; both versions).

    Args:
        hub_url: the hub's URL (by default its path is `/.well-known/mercure`).
        topic: the canonical topic to subscribe to (`rel="self"`); subscribers fall back to the
            resource's own URL without it.
        last_event_id: the id of the last update when this resource was rendered; the subscriber
            passes it as `last_event_id` (draft-08) or `lastEventID` (draft-07) so nothing
            between rendering and subscribing is lost.
        content_type: the content type of every update for this resource (draft-08 hint).
        type: the SSE event type of every update for this resource (draft-08 hint; not
            `mercure`, which is the hub's own).

    Example:
        ```python
        from sidestream.mercure import discovery_links

        links = discovery_links(
            "https://hub.example.com/.well-known/mercure",
            topic="https://example.com/books/1",
            last_event_id="urn:uuid:1",
        )
        print(links[0])
        #> <https://hub.example.com/.well-known/mercure>; rel="mercure"; last-event-id="urn:uuid:1"
        print(links[1])
        #> <https://example.com/books/1>; rel="self"
        ```
    """
    hub = f'{_target(hub_url)}; rel="mercure"'
    if type == "mercure":
        raise InvalidUpdate("type 'mercure' is reserved for the hub's own events")
    for name, value in (
        ("last-event-id", last_event_id),
        ("content-type", content_type),
        ("type", type),
    ):
        if value is None:
            continue
        if _forbidden_char(value):
            raise InvalidUpdate(f"{name} {value!r} contains a control character")
        hub += f"; {name}={_quoted(value)}"
    return [hub] + ([f'{_target(topic)}; rel="self"'] if topic is not None else [])


class _HeadersResponse(Protocol):
    @property
    def headers(self) -> Any: ...


class _CookieResponse(Protocol):
    def set_cookie(self, key: str, value: str = "", **options: Any) -> None: ...


def add_discovery(
    response: _HeadersResponse,
    hub_url: str,
    *,
    topic: str | None = None,
    last_event_id: str | None = None,
    content_type: str | None = None,
    type: str | None = None,
) -> None:
    """Add the discovery `Link` headers to a Flask/Werkzeug response (one header per link)."""
    links = discovery_links(
        hub_url, topic=topic, last_event_id=last_event_id, content_type=content_type, type=type
    )
    for link in links:
        response.headers.add("Link", link)


def set_subscriber_cookie(
    response: _CookieResponse,
    token: str,
    hub_url: str,
    *,
    max_age: int,
    protocol: Version,
    name: str | None = None,
    samesite: str = "Strict",
    domain: str | None = None,
) -> None:
    """Set the subscriber token as the hub's authorization cookie on a Flask/Werkzeug response.

    With the attributes the spec asks for: `Secure` and `HttpOnly` (JavaScript never sees the
    token), `SameSite`, and `Path` set to the hub's path so the cookie goes to the hub only.
    The hub must share the site's registrable domain (`domain` lets subdomains share it).

    Args:
        max_age: seconds; make it the token's lifetime.
        protocol: the hub's version, which names the cookie: `__Secure-mercure_access_token`
            (draft-08) or `mercureAuthorization` (draft-07).
        name: another cookie name, when several hubs share a domain.
    """
    protocol = _check_version(protocol)
    if samesite not in {"Strict", "Lax", "None"}:
        raise ValueError("samesite must be 'Strict', 'Lax' or 'None'")
    response.set_cookie(
        name or COOKIE_NAMES[protocol],
        token,
        max_age=max_age,
        path=urlsplit(hub_url).path or HUB_PATH,
        domain=domain,
        secure=True,
        httponly=True,
        samesite=samesite,
    )
