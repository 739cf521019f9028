"""Publishing to a Mercure hub (httpx), and the discovery, token and cookie helpers around it.

Targets the protocol that released hubs speak (draft-07, hub v0.x): an update is a
`POST /.well-known/mercure` with an `application/x-www-form-urlencoded` body (`topic` repeated,
then `data`, `private`, `id`, `type`, `retry`) and `Authorization: Bearer <JWT>` whose
`mercure.publish` claim covers every topic. The hub answers with the update's id.

[`Publisher`][sidestream.mercure.Publisher] (sync, for Flask) and
[`AsyncPublisher`][sidestream.mercure.AsyncPublisher] share one implementation: request building,
response mapping and the retry policy live in a sans-IO core that both drive. Each update gets a
`urn:uuid:` id on the client before the first attempt, so a retry after a timeout or a 5xx sends
the *same* id: subscribers (and hubs that check ids for replays) see one update, not two.
"""

from __future__ import annotations

import random
import time
import unicodedata
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import anyio
import httpx

from sidestream.errors import (
    InvalidUpdate,
    MercureBadRequest,
    MercureError,
    MercureForbidden,
    MercurePayloadTooLarge,
    MercureUnauthorized,
    MercureUnavailable,
)
from sidestream.tokens import TokenIssuer

HUB_PATH = "/.well-known/mercure"
COOKIE_NAME = "mercureAuthorization"
PUBLISHER_TOKEN_LIFETIME = 60.0
"""Seconds a per-request publisher token lives (it is signed again for every attempt)."""

# Failures after which the hub may or may not have the update: safe to retry with the same id.
RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def new_id() -> str:
    """A fresh update id: a `urn:uuid:` IRI, as the spec suggests."""
    return f"urn:uuid:{uuid.uuid4()}"


def _forbidden_char(text: str) -> str | None:
    # Control characters (C0, DEL, C1) and Unicode format characters would let a value inject
    # SSE fields or hide itself; later drafts of the spec forbid them in topics, ids and types.
    for char in text:
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or unicodedata.category(char) == "Cf":
            return f"U+{ord(char):04X}"
    return None


@dataclass(frozen=True)
class Update:
    """One update, checked against the protocol's rules when it is built.

    Attributes:
        topics: the canonical topic IRI first, then alternates (at least one).
        data: the new content (any text; the hub splits lines into `data:` fields).
        private: dispatch only to subscribers whose JWT grants one of the topics.
        id: the SSE id; a `urn:uuid:` is generated when omitted. Must not start with `#`.
        type: the SSE `event` type.
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


def error_for(response: httpx.Response, update: Update) -> MercureError | None:
    """The typed error a hub response means, or `None` for success (2xx)."""
    status, body = response.status_code, response.text.strip()
    if 200 <= status < 300:
        return None
    where = f"{response.request.method} {response.request.url}"
    if status == 400:
        return MercureBadRequest(
            f"hub rejected the update as malformed ({where}): {body}", status, body
        )
    if status == 401:
        return MercureUnauthorized(
            f"hub refused the publisher JWT (401 from {where}): check that it is signed with the "
            "hub's publisher key and not expired (hubs v0.x also answer 401 when "
            "mercure.publish does not cover the topics)",
            status,
            body,
        )
    if status == 403:
        return MercureForbidden(
            f"the JWT's mercure.publish does not cover every topic of {list(update.topics)} "
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
    if status >= 500:
        return MercureUnavailable(f"hub failed ({status} from {where}): {body}", status, body)
    return MercureError(f"hub answered {status} to {where}: {body}", status, body)


Step = httpx.Request | float
"""What the core asks its driver for: send this request, or sleep this many seconds."""
Outcome = httpx.Response | Exception | None


class _PublishCore:
    """Everything about publishing except the I/O, shared by the sync and async publishers."""

    def __init__(self, hub_url: str, token: str | TokenIssuer, retry: RetryPolicy) -> None:
        if urlsplit(hub_url).scheme not in {"http", "https"}:
            raise InvalidUpdate(f"hub_url must be an http(s) URL, got {hub_url!r}")
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
        for attempt in range(1, self.retry.attempts + 1):
            outcome = yield self.request(update)
            last = attempt == self.retry.attempts
            if isinstance(outcome, httpx.Response):
                error = error_for(outcome, update)
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


class Publisher:
    """Publishes updates from sync code (a Flask view). Thread-safe; create one per process.

    Args:
        hub_url: the hub's publish URL, e.g. `https://hub.example.com/.well-known/mercure`.
        token: a publisher JWT, or a [`TokenIssuer`][sidestream.tokens.TokenIssuer] (then each
            update gets its own short-lived token for exactly its topics).
        client: an `httpx.Client` to use (its transport, proxies, TLS); one is made otherwise.
        timeout: seconds for each attempt when the client is made here.
        retry: the [`RetryPolicy`][sidestream.mercure.RetryPolicy].
    """

    def __init__(
        self,
        hub_url: str,
        token: str | TokenIssuer,
        *,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._core = _PublishCore(hub_url, token, retry or RetryPolicy())
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
            MercureError: a subclass per status (see `sidestream.errors`).
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
        client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._core = _PublishCore(hub_url, token, retry or RetryPolicy())
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
    issuer: TokenIssuer, topics: Sequence[str] = ("*",), *, lifetime: float | None = None
) -> str:
    """A JWT whose `mercure.publish` lists `topics` (selectors; `*` for every topic)."""
    return issuer.issue(None, publish=list(topics), lifetime=lifetime)


def subscriber_token(
    issuer: TokenIssuer,
    topics: Sequence[str],
    *,
    subject: str | None = None,
    lifetime: float | None = None,
) -> str:
    """A JWT whose `mercure.subscribe` lists the topic selectors whose private updates it reads."""
    return issuer.issue(subject, subscribe=list(topics), lifetime=lifetime)


# --- discovery and the subscriber cookie -----------------------------------------------------


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _target(url: str) -> str:
    if any(char in url for char in "<>\r\n") or _forbidden_char(url):
        raise InvalidUpdate(f"{url!r} cannot be a Link target")
    return f"<{url}>"


def discovery_links(
    hub_url: str, *, topic: str | None = None, last_event_id: str | None = None
) -> list[str]:
    """The `Link` header values that let a subscriber find the hub (draft-07 Discovery).

    Args:
        hub_url: the hub's URL (its path is `/.well-known/mercure`).
        topic: the canonical topic to subscribe to (`rel="self"`); subscribers fall back to the
            resource's own URL without it.
        last_event_id: the id of the last update when this resource was rendered; the subscriber
            passes it as `lastEventID` so nothing between rendering and subscribing is lost.

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
    if last_event_id is not None:
        if _forbidden_char(last_event_id):
            raise InvalidUpdate(f"last_event_id {last_event_id!r} contains a control character")
        hub += f"; last-event-id={_quoted(last_event_id)}"
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
) -> None:
    """Add the discovery `Link` headers to a Flask/Werkzeug response (one header per link)."""
    for link in discovery_links(hub_url, topic=topic, last_event_id=last_event_id):
        response.headers.add("Link", link)


def set_subscriber_cookie(
    response: _CookieResponse,
    token: str,
    hub_url: str,
    *,
    max_age: int,
    name: str = COOKIE_NAME,
    samesite: str = "Strict",
    domain: str | None = None,
) -> None:
    """Set the subscriber JWT as the hub's authorization cookie on a Flask/Werkzeug response.

    With the attributes the spec asks for: `Secure` and `HttpOnly` (JavaScript never sees the
    token), `SameSite`, and `Path` set to the hub's path so the cookie goes to the hub only.
    The hub must share the site's registrable domain (`domain` lets subdomains share it).

    Args:
        max_age: seconds; make it the token's lifetime.
    """
    if samesite not in {"Strict", "Lax", "None"}:
        raise ValueError("samesite must be 'Strict', 'Lax' or 'None'")
    response.set_cookie(
        name,
        token,
        max_age=max_age,
        path=urlsplit(hub_url).path or HUB_PATH,
        domain=domain,
        secure=True,
        httponly=True,
        samesite=samesite,
    )
