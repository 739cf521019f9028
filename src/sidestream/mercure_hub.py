"""A Mercure hub (draft-08, Mercure 1.0) as a route of the stream service, on Redis.

Every update is one entry of one Redis Stream (the bus channel `settings.channel`), published
with the bus's `XADD` + `PUBLISH` script; each process's [`Hub`][sidestream.hub.Hub] holds one
pub/sub subscription and fans the updates out to that process's Mercure subscribers, which
filter them by topic matcher and private grant. So any process behind a load balancer takes
publishes and subscriptions, and every subscriber of every process gets every update once.

What it implements of the specification: subscription with `match`, `match_exact`,
`match_urlpattern` and `*` (GET); anonymous subscribers when allowed; private updates only to a
token whose `subscribe` authorization detail matches one topic; heartbeats; `Last-Event-ID`,
`last_event_id`, `earliest` and the `Mercure-Last-Event-ID` response field, from the Stream's
history; publication (form POST, token from the `Authorization` header or the
`__Secure-mercure_access_token` cookie, `200 text/plain` with the id, refusals with
`WWW-Authenticate: Bearer`); the protected resource metadata document; and, where configured
(`draft_07_publisher_tokens`), clients of hubs 0.x. Not implemented (all optional): active
subscriptions (subscription events and API), the `QUERY` method, payloads.

Ids: an update published without an `id` gets `#<stream id>`, which resolves straight to its
place in the Stream. A client-supplied id is found by reading the retained history (at most the
bus's `maxlen` entries), earliest first, as the spec asks for a reused id.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import falcon
import falcon.asgi
import jwt
from redis.exceptions import RedisError

from sidestream.bus import validate_channel
from sidestream.errors import (
    HistoryGap,
    InvalidArgument,
    InvalidConfig,
    InvalidToken,
    PayloadTooLarge,
    Unavailable,
)
from sidestream.hub import Hub, Subscriber
from sidestream.mercure_match import (
    MATCHER_TYPES,
    WILDCARD,
    InvalidMatcher,
    TopicMatcher,
    TopicSelector,
    forbidden_char,
    in_reserved_namespace,
)
from sidestream.servers import connection
from sidestream.sse import Event, comment, encode
from sidestream.tokens import MERCURE_DETAIL_TYPE, AccessTokenClaims, StreamTokens, TokenClaims

log = logging.getLogger("sidestream.mercure_hub")

COOKIE_NAME = "__Secure-mercure_access_token"
METADATA_PREFIX = "/.well-known/oauth-protected-resource"
_FORM = "application/x-www-form-urlencoded"
_MAX_SEQ = 2**64 - 1
_DIGITS = re.compile(r"[0-9]+")
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


@dataclass(frozen=True)
class MercureSettings:
    """How the Mercure route checks tokens and where it keeps updates.

    Args:
        hub_url: the hub's absolute URL (`https://hub.example.com/.well-known/mercure`): the
            route's path, the base for relative topics and URL patterns, and by default the
            resource identifier tokens must name in `aud`.
        publisher_tokens: verifies publishers' tokens: a
            [`StreamTokens`][sidestream.tokens.StreamTokens] with
            [`AccessTokenClaims`][sidestream.tokens.AccessTokenClaims], the trusted `issuer` and
            the resource identifier as `audience` (a verify-only instance is enough).
        subscriber_tokens: verifies subscribers' tokens (default: `publisher_tokens`).
        anonymous: let subscribers in without a token (they get public updates only).
        channel: the bus channel whose Redis Stream holds every update.
        max_body: largest publish body in bytes; more is a 413.
        max_topics: most `topic` fields in one publish; more is a 413.
        max_matchers: most matcher parameters in one subscription; more is a 400.
        max_streams: event streams this process holds at most, `/events` included; more are
            refused with 429 and `Retry-After` (the spec's answer to too many connections).
        cookie: the cookie the access token may come in.
        cors_origins: origins whose pages may publish with the cookie (CSRF check); the app's
            own CORS settings decide who may read.
        draft_07_publisher_tokens: accept clients of hubs 0.x too: publishers' tokens with the
            draft-07 `mercure` claim, verified by this (the default `StreamTokens` format);
            subscriptions with `topic=` selectors (exact, `*`, `{var}` / `{+var}` URI
            templates) and `lastEventID=`, the `mercureAuthorization` cookie, and the response
            field `Last-Event-ID` beside `Mercure-Last-Event-ID`. A token with `typ: at+jwt`
            is always read as draft-08.
        draft_07_subscriber_tokens: the same for subscribers' draft-07 tokens (default:
            `draft_07_publisher_tokens`).
    """

    hub_url: str
    publisher_tokens: StreamTokens
    subscriber_tokens: StreamTokens | None = None
    anonymous: bool = False
    channel: str = "mercure"
    max_body: int = 64 * 1024
    max_topics: int = 32
    max_matchers: int = 32
    max_streams: int = 5000
    cookie: str = COOKIE_NAME
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    draft_07_publisher_tokens: StreamTokens | None = None
    draft_07_subscriber_tokens: StreamTokens | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.hub_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc or not parts.path:
            raise InvalidConfig(
                f"hub_url must be the hub's absolute URL, like "
                f"https://hub.example.com/.well-known/mercure, not {self.hub_url!r}"
            )
        for role, tokens in (("publisher", self.publisher_tokens), ("subscriber", self.readers)):
            if not isinstance(tokens.claims_format, AccessTokenClaims) or not tokens.issuer:
                raise InvalidConfig(
                    f"{role} tokens must be draft-08 access tokens: "
                    "StreamTokens(..., issuer=..., claims_format=AccessTokenClaims(...))"
                )
        for old in (self.draft_07_publisher_tokens, self.draft_07_subscriber_tokens):
            if old is not None and isinstance(old.claims_format, AccessTokenClaims):
                raise InvalidConfig("draft_07_* tokens read the draft-07 `mercure` claim")
        validate_channel(self.channel)
        for name in ("max_body", "max_topics", "max_matchers", "max_streams"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be an int >= 1, not {value!r}")

    @property
    def path(self) -> str:
        return urlsplit(self.hub_url).path

    @property
    def readers(self) -> StreamTokens:
        return self.subscriber_tokens or self.publisher_tokens

    @property
    def draft_07(self) -> bool:
        return (self.draft_07_publisher_tokens or self.draft_07_subscriber_tokens) is not None


@dataclass(frozen=True)
class _Grants:
    """What a verified token allows, whichever version it is."""

    claims: TokenClaims
    selectors: tuple[tuple[TopicSelector, ...], tuple[TopicSelector, ...]] | None = None

    def may_publish(self, topics: Sequence[str], hub_url: str) -> bool:
        if self.selectors is None:
            return self.claims.may_publish_update(topics, hub_url)
        publish = self.selectors[1]  # draft-07: every topic matches a mercure.publish selector
        return bool(topics) and all(any(s.matches(t) for s in publish) for t in topics)

    def may_read_private(self, topics: Sequence[str], hub_url: str) -> bool:
        if self.selectors is None:
            return self.claims.may_receive_private(topics, hub_url)
        return any(s.matches(t) for s in self.selectors[0] for t in topics)


def _selectors(grants: Sequence[str]) -> tuple[TopicSelector, ...]:
    found = []
    for grant in grants:
        try:
            found.append(TopicSelector(grant))
        except InvalidMatcher as exc:  # a grant we cannot evaluate grants nothing
            log.warning("ignoring a draft-07 grant: %s", exc)
    return tuple(found)


def _is_access_token(token: str) -> bool:
    try:
        typ = jwt.get_unverified_header(token).get("typ")
    except jwt.DecodeError:
        return False
    return isinstance(typ, str) and typ.lower().removeprefix("application/") == "at+jwt"


class _Refusal(Exception):
    """A refusal the route answers with: status, a text body, and the Bearer challenge."""

    def __init__(self, status: int, reason: str, error: str | None = None, *, bearer: bool = False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.error = error
        self.bearer = bearer or error is not None


def _answer(resp: falcon.asgi.Response, refusal: _Refusal) -> None:
    resp.status = refusal.status
    resp.content_type = "text/plain; charset=utf-8"
    resp.text = refusal.reason
    if refusal.bearer:
        # RFC 6750 / draft-08 6.2: the error code travels in the challenge; none without a token.
        challenge = f'Bearer error="{refusal.error}"' if refusal.error else 'Bearer realm="mercure"'
        resp.set_header("WWW-Authenticate", challenge)


@dataclass(frozen=True)
class _Update:
    topics: tuple[str, ...]
    private: bool
    wire: bytes


class MercureRoute:
    """The Falcon resource behind the hub URL: `GET` subscribes, `POST` publishes.

    Install it with [`install`][sidestream.mercure_hub.install].
    """

    def __init__(self, hub: Hub, settings: MercureSettings) -> None:
        self.hub = hub
        self.settings = settings
        self._decoded: dict[str, _Update | None] = {}
        self.published = 0

    # --- tokens ---------------------------------------------------------------------------------

    def _token(self, req: falcon.asgi.Request) -> str | None:
        # 6.1: the Authorization header wins and any cookie is ignored; otherwise the cookie.
        header = req.get_header("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token or " " in token:
                raise _Refusal(400, "send 'Authorization: Bearer <token>'", "invalid_request")
            return token
        raw = req.get_header("Cookie")
        if raw:
            try:
                morsel = SimpleCookie(raw).get(self.settings.cookie)
            except CookieError:
                morsel = None
            if morsel is not None and morsel.value:
                return morsel.value
            if self.settings.draft_07:
                try:
                    morsel = SimpleCookie(raw).get("mercureAuthorization")
                except CookieError:
                    morsel = None
                if morsel is not None and morsel.value:
                    return morsel.value
        return None

    def _verify(self, token: str, publisher: bool) -> _Grants:
        settings = self.settings
        draft_07 = (
            settings.draft_07_publisher_tokens
            if publisher
            else settings.draft_07_subscriber_tokens or settings.draft_07_publisher_tokens
        )
        try:
            if draft_07 is not None and not _is_access_token(token):
                claims = draft_07.verify(token)
                return _Grants(claims, (_selectors(claims.subscribe), _selectors(claims.publish)))
            return _Grants(
                (settings.publisher_tokens if publisher else settings.readers).verify(token)
            )
        except InvalidToken as exc:
            # One code for every validation failure, so the reason is not disclosed.
            log.info("refused a Mercure token: %s", exc.reason)
            raise _Refusal(401, "invalid token", "invalid_token") from None

    # --- publish (section 5) ------------------------------------------------------------------

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        try:
            topics, fields = await self._read_form(req)
            from_cookie = req.get_header("Authorization") is None
            token = self._token(req)
            if token is None:
                raise _Refusal(401, "a publisher token is required", bearer=True)
            grants = self._verify(token, publisher=True)
            if from_cookie:
                self._check_origin(req)
            if not grants.may_publish(topics, self.settings.hub_url):
                raise _Refusal(
                    403, "the token does not grant publish on every topic", "insufficient_scope"
                )
            update_id, envelope = self._envelope(topics, fields)
        except _Refusal as refusal:
            _answer(resp, refusal)
            return
        try:
            stream_id = await self.hub.bus.publish(self.settings.channel, envelope)
        except PayloadTooLarge as exc:
            _answer(resp, _Refusal(413, str(exc)))
            return
        except Exception as exc:  # Redis down: the update is not taken
            log.warning("Mercure publish failed: %s", exc)
            _answer(resp, _Refusal(503, "the hub cannot store updates now; retry"))
            resp.set_header("Retry-After", "5")
            return
        self.published += 1
        resp.status = 200
        resp.content_type = "text/plain; charset=utf-8"
        resp.text = update_id or f"#{stream_id}"

    async def _read_form(self, req: falcon.asgi.Request) -> tuple[list[str], dict[str, str]]:
        if (req.content_type or "").split(";")[0].strip().lower() != _FORM:
            raise _Refusal(400, f"publish with Content-Type: {_FORM}")
        limit = self.settings.max_body
        if req.content_length is not None and req.content_length > limit:
            raise _Refusal(413, f"the body is over {limit} bytes")
        body = await req.stream.read(limit + 1)
        if len(body) > limit:
            raise _Refusal(413, f"the body is over {limit} bytes")
        try:
            form = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict"
            )
        except (UnicodeDecodeError, ValueError):
            raise _Refusal(400, "the body is not form-encoded UTF-8") from None
        topics = [value for name, value in form if name == "topic"]
        fields: dict[str, str] = {}
        for name, value in form:
            fields.setdefault(name, value)  # the first occurrence counts
        if not topics:
            raise _Refusal(400, "send at least one topic")
        if len(topics) > self.settings.max_topics:
            raise _Refusal(413, f"at most {self.settings.max_topics} topics per update")
        for topic in topics:
            if not topic or forbidden_char(topic):
                raise _Refusal(400, f"topic {topic!r} is empty or has a control character")
            if topic == WILDCARD:
                raise _Refusal(400, "topic '*' is reserved for the wildcard matcher")
            if in_reserved_namespace(topic, self.settings.hub_url):
                raise _Refusal(400, f"topic {topic!r} is in the hub's reserved namespace")
        return topics, fields

    def _check_origin(self, req: falcon.asgi.Request) -> None:
        # Security Considerations: with cookie authorization, a publish must come from a page of
        # a trusted origin (CSRF); a request with neither Origin nor Referer is refused.
        source = req.get_header("Origin") or req.get_header("Referer")
        if source is None:
            raise _Refusal(403, "a cookie-authorized publish needs an Origin header")
        parts = urlsplit(source)
        origin = f"{parts.scheme}://{parts.netloc}"
        hub = urlsplit(self.settings.hub_url)
        if origin != f"{hub.scheme}://{hub.netloc}" and origin not in self.settings.cors_origins:
            raise _Refusal(403, f"publishing with the cookie is not allowed from {origin}")

    def _envelope(self, topics: list[str], fields: dict[str, str]) -> tuple[str | None, str]:
        update_id = fields.get("id")
        if update_id is not None and (
            not update_id
            or update_id.startswith("#")
            or update_id == "earliest"
            or forbidden_char(update_id)
        ):
            raise _Refusal(
                400,
                "id must not be empty, start with '#', be 'earliest' or hold a control character",
            )
        kind = fields.get("type")
        if kind is not None and (not kind or forbidden_char(kind) or kind == "mercure"):
            raise _Refusal(400, "type must not be empty, 'mercure' or hold a control character")
        retry = fields.get("retry")
        if retry is not None and not _DIGITS.fullmatch(retry):
            raise _Refusal(400, "retry must be ASCII digits")
        envelope = {
            "topics": topics,
            "data": fields.get("data", ""),
            "private": "private" in fields,
            "id": update_id,
            "type": kind,
            "retry": int(retry) if retry is not None else None,
        }
        return update_id, json.dumps(envelope, ensure_ascii=False)

    # --- subscribe (sections 3 and 7) ---------------------------------------------------------

    def _matchers(self, query: list[tuple[str, str]]) -> list[TopicMatcher | TopicSelector]:
        kinds = {"match": "exact", **{f"match_{kind}": kind for kind in MATCHER_TYPES}}
        found: list[TopicMatcher | TopicSelector] = []
        for name, value in query:
            if name == "topic" and self.settings.draft_07:
                try:
                    found.append(TopicSelector(value))
                except InvalidMatcher as exc:
                    raise _Refusal(400, f"topic: {exc}") from None
                continue
            if not name.lower().startswith("match"):
                continue
            kind = kinds.get(name)
            if kind is None:
                raise _Refusal(400, f"{name!r} is not a matcher this hub supports")
            try:
                found.append(TopicMatcher(value, kind))
            except InvalidMatcher as exc:
                raise _Refusal(400, f"{name}: {exc}") from None
        if not found:
            raise _Refusal(400, "subscribe with at least one match= parameter")
        if len(found) > self.settings.max_matchers:
            raise _Refusal(400, f"at most {self.settings.max_matchers} matchers per request")
        return found

    async def _history_ids(self) -> AsyncIterator[Event]:
        after = "0"
        bus = self.hub.bus
        while True:
            try:
                page = await bus.history(self.settings.channel, after_id=after, limit=500)
            except HistoryGap as gap:
                if gap.oldest_id is None:
                    return
                after = _before(gap.oldest_id)
                continue
            for event in page:
                yield event
            if len(page) < 500 or page[-1].id is None:
                return
            after = page[-1].id

    async def _resolve(self, last_id: str | None) -> tuple[str | None, str | None]:
        """(the stream cursor to resume after, the Mercure-Last-Event-ID value)."""
        if last_id is None:
            return None, None
        if last_id.startswith("#") and _STREAM_ID.fullmatch(last_id[1:]):
            # A hub-generated id names its place in the Stream: no search.
            candidate = last_id[1:]
            oldest = await self._oldest()
            latest = await self.hub.bus.latest_id(self.settings.channel)
            if oldest is not None and _key(oldest) <= _key(candidate) <= _key(latest):
                return candidate, last_id
        elif last_id != "earliest":
            async for event in self._history_ids():
                update = self._decode_data(event.data)
                if update is not None and update.get("id") == last_id:
                    return event.id, last_id  # the earliest update bearing this id
        # earliest, unknown or discarded: everything retained, and "earliest" in the header.
        return await self._earliest_cursor(), "earliest"

    async def _earliest_cursor(self) -> str:
        """A cursor before every retained update (the Stream's start, or its oldest entry)."""
        try:
            await self.hub.bus.history(self.settings.channel, after_id="0", limit=1)
        except HistoryGap as gap:  # trimmed: start just before the oldest retained entry
            return _before(gap.oldest_id) if gap.oldest_id else "0-0"
        return "0-0"

    async def _oldest(self) -> str | None:
        async for event in self._history_ids():
            return event.id
        return None

    @staticmethod
    def _decode_data(data: str) -> dict[str, Any] | None:
        try:
            value = json.loads(data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _update(self, frame: str) -> _Update | None:
        """The update a hub frame carries, decoded and encoded once per process."""
        cache = self._decoded
        if frame in cache:
            return cache[frame]
        result: _Update | None = None
        try:
            outer = json.loads(frame)
            inner = json.loads(outer["data"]) if outer.get("event") is None else None
            if isinstance(inner, dict):
                stream_id = outer.get("id")
                event_id = inner.get("id") or (f"#{stream_id}" if stream_id else None)
                wire = encode(
                    Event(
                        str(inner.get("data", "")),
                        event=inner.get("type"),
                        id=event_id,
                        retry=inner.get("retry"),
                    )
                )
                result = _Update(tuple(inner["topics"]), bool(inner.get("private")), wire)
        except (ValueError, KeyError, TypeError):
            log.warning("skipping a malformed Mercure entry in the stream")
        if len(cache) >= 4096:
            cache.clear()
        cache[frame] = result
        return result

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        try:
            raw_query = req.scope.get("query_string", b"").decode("ascii")
            query = parse_qsl(raw_query, keep_blank_values=True, encoding="utf-8", errors="strict")
        except (UnicodeDecodeError, ValueError):
            _answer(resp, _Refusal(400, "the query is not form-encoded UTF-8"))
            return
        try:
            matchers = self._matchers(query)
            token = self._token(req)
            claims: _Grants | None = None
            if token is not None:
                claims = self._verify(token, publisher=False)
                if claims.claims.expires_at <= time.time():
                    raise _Refusal(401, "invalid token", "invalid_token")
            elif not self.settings.anonymous:
                raise _Refusal(401, "a subscriber token is required", bearer=True)
        except _Refusal as refusal:
            _answer(resp, refusal)
            return
        if self.hub.open_streams >= self.settings.max_streams:
            _answer(resp, _Refusal(429, "this process holds its maximum of event streams"))
            resp.set_header("Retry-After", "5")
            return
        # 7: the header takes precedence over the query parameter.
        params = dict(reversed(query))  # the first occurrence of each name
        requested = req.get_header("Last-Event-ID") or params.get("last_event_id")
        if requested is None and self.settings.draft_07:
            requested = params.get("lastEventID")
        try:
            cursor, answered = await self._resolve(requested)
            sub = await self.hub.subscribe([self.settings.channel], cursor=cursor, frames=True)
        except (Unavailable, RedisError, OSError) as exc:
            log.warning("Mercure subscription refused for now: %s", exc)
            _answer(resp, _Refusal(503, "the hub cannot serve history now; reconnect later"))
            resp.set_header("Retry-After", "5")
            return
        if any('"event": "reset"' in frame for frame in sub.replay):
            answered = "earliest" if requested is not None else None  # history was trimmed
        loop = asyncio.get_running_loop()
        if claims is not None:
            self.hub.expire_at(sub, loop.time() + (claims.claims.expires_at - time.time()))
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "private, no-store")
        resp.set_header("X-Accel-Buffering", "no")
        resp.set_header("Access-Control-Expose-Headers", "Mercure-Last-Event-ID, Last-Event-ID")
        if answered is not None:
            resp.set_header("Mercure-Last-Event-ID", answered)
            if self.settings.draft_07:  # what hubs 0.x answered with
                resp.set_header("Last-Event-ID", answered)
        resp.stream = self._stream(sub, matchers, claims, self._watch(req, sub))

    def _watch(self, req: falcon.asgi.Request, sub: Subscriber) -> asyncio.Task[None] | None:
        """Notice a client that left, and drop one that stopped reading (sidestream.servers)."""
        scope = req.scope
        receive, send = scope.get("sidestream.receive"), scope.get("sidestream.send")
        if receive is None or send is None:  # not the stream service's app: heartbeats only
            return None
        conn = connection(scope, receive, send)
        gone = functools.partial(sub.close, drop_queue=True)
        sub.gone = conn.gone_check()
        watcher = None
        if sub.gone is None:
            watcher = asyncio.get_running_loop().create_task(conn.watch(gone))

        def abort() -> None:
            if conn.abort():  # the request was cancelled: end what it would have ended
                self.hub.finish(sub)
                if watcher is not None:
                    watcher.cancel()

        sub.abort = abort
        return watcher

    def _wanted(
        self,
        update: _Update,
        matchers: Sequence[TopicMatcher | TopicSelector],
        claims: _Grants | None,
    ) -> bool:
        hub_url = self.settings.hub_url
        if not any(m.matches(topic, hub_url) for topic in update.topics for m in matchers):
            return False
        if not update.private:
            return True
        return claims is not None and claims.may_read_private(update.topics, hub_url)

    async def _stream(
        self,
        sub: Subscriber,
        matchers: Sequence[TopicMatcher | TopicSelector],
        claims: _Grants | None,
        watcher: asyncio.Task[None] | None,
    ) -> AsyncIterator[bytes]:
        try:
            first = [comment()]
            for frame in sub.replay:
                update = self._update(frame)
                if update is not None and self._wanted(update, matchers, claims):
                    first.append(update.wire)
            sub.replay = ()
            yield b"".join(first)
            while True:
                try:
                    # asyncio.timeout, not wait_for: no task per wait, one timer handle.
                    async with asyncio.timeout(self.hub.heartbeat):
                        frames = await sub.next_frames()
                except TimeoutError:
                    yield comment()  # a keep-alive on an idle stream
                    continue
                if not frames:
                    return
                out = []
                for frame in frames:
                    update = self._update(frame)
                    if update is not None and self._wanted(update, matchers, claims):
                        out.append(update.wire)
                if out:
                    yield b"".join(out)
        finally:
            if watcher is not None:
                watcher.cancel()
            self.hub.finish(sub)


def _key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _before(stream_id: str) -> str:
    """The stream id just before `stream_id` (a cursor that replays it)."""
    ms, seq = _key(stream_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else "0-0"


class _Metadata:
    """`GET /.well-known/oauth-protected-resource/<hub path>` (RFC 9728), draft-08 9.2."""

    def __init__(self, settings: MercureSettings) -> None:
        self.document = {
            "resource": settings.publisher_tokens.audience,
            "authorization_details_types_supported": [MERCURE_DETAIL_TYPE],
            "bearer_methods_supported": ["header"],
            "mercure_cookie": settings.cookie,
        }

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = self.document


def install(app: falcon.asgi.App[Any, Any], hub: Hub, settings: MercureSettings) -> MercureRoute:
    """Add the Mercure hub at `settings.hub_url`'s path, and its metadata document, to `app`.

    Args:
        app: a Falcon ASGI app, normally the stream service from
            [`create_app`][sidestream.service.create_app] (its hub, CORS and drain apply).
        hub: the app's [`Hub`][sidestream.hub.Hub].
        settings: the [`MercureSettings`][sidestream.mercure_hub.MercureSettings].
    """
    route = MercureRoute(hub, settings)
    app.add_route(settings.path, route)
    app.add_route(METADATA_PREFIX + settings.path, _Metadata(settings))
    return route
