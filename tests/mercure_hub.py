"""A Mercure hub double written from the protocol text, speaking draft-08 (Mercure 1.0) or, when
configured with `protocol="draft-07"`, the draft-07 dialect of hubs 0.x.

- `MercureHub.handle(request)` is the publish endpoint as an `httpx` handler (wrap it in
  `httpx.MockTransport`); every rule it checks quotes the spec in a comment.
- `MercureHub.asgi` serves the same publish endpoint plus the SSE subscription so a browser can
  use it on a loopback port: draft-08 `match` / `match_exact` / `match_urlpattern`,
  `Last-Event-ID` / `last_event_id` / `earliest`, `Mercure-Last-Event-ID`, private updates only
  for a token whose `subscribe` authorization detail matches one topic, the cookie
  `__Secure-mercure_access_token`; draft-07 `topic` selectors (URI templates), `lastEventID`,
  the `mercure.subscribe` claim and the `mercureAuthorization` cookie.

It is deliberately independent of `sidestream.tokens` and `sidestream.mercure_match` (it decodes
tokens with PyJWT and matches URL patterns with the `urlpattern` package itself), so the library
is tested against a second reading of the spec. It is a double, not a hub: one process, history
in memory, no subscription events.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import httpx
import jwt
from urlpattern import URLPattern

from sidestream.sse import Event, comment, encode

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Version = Literal["draft-07", "draft-08"]

HUB_PATH = "/.well-known/mercure"
DETAIL_TYPE = "https://mercure.rocks/authorization-detail"
COOKIES = {"draft-08": "__Secure-mercure_access_token", "draft-07": "mercureAuthorization"}


class Refused(Exception):
    """A refusal: the status, a text body and, for token problems, the Bearer challenge."""

    def __init__(self, status: int, body: str, error: str | None = None, bearer: bool = False):
        super().__init__(body)
        self.status, self.body, self.error = status, body, error
        self.bearer = bearer or error is not None

    def response(self) -> httpx.Response:
        headers = {}
        if self.bearer:
            # 6.2: "the error code is carried as the error attribute (auth-param) of a
            # WWW-Authenticate: Bearer challenge"; with no token, "MUST NOT include an error code".
            headers["www-authenticate"] = (
                f'Bearer error="{self.error}"' if self.error else 'Bearer realm="mercure"'
            )
        return text(self.status, self.body, headers)


# --- character and matcher rules (draft-08 sections 2, 4 and 5) ------------------------------


def bad_chars(value: str) -> bool:
    # 2: topics "MUST NOT contain C0 (U+0000-U+001F) or C1 (U+0080-U+009F) control characters,
    # U+007F (DEL), or Unicode format characters (general category Cf)".
    return any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or unicodedata.category(c) == "Cf" for c in value
    )


def uri_template_regex(template: str) -> re.Pattern[str] | None:
    """Draft-07 selectors: RFC 6570 `{var}` (no `/`) and `{+var}` (anything) as a regex."""
    if "{" not in template:
        return None
    pattern, pos = "", 0
    for match in re.finditer(r"\{(\+?)[A-Za-z0-9_.]+\}", template):
        pattern += re.escape(template[pos : match.start()])
        pattern += ".+" if match[1] else r"[A-Za-z0-9\-._~%!$&'()*+,;=:@]+"
        pos = match.end()
    return re.compile(pattern + re.escape(template[pos:]))


def matches(topic: str, selector: str) -> bool:
    """Draft-07 Topic Selectors."""
    # "1. If the topic selector is `*`, then the string matches the selector.
    #  2. If the topic selector and the string are exactly the same, the string matches [...]
    #  3. If the topic selector is a valid URI Template, and the string matches this URI
    #     Template, the string matches the selector. 4. Otherwise, [it does] not match."
    if selector == "*" or topic == selector:
        return True
    regex = uri_template_regex(selector)
    return bool(regex and regex.fullmatch(topic))


@dataclass(frozen=True)
class Matcher:
    """A draft-08 topic matcher: `exact` or `urlpattern`; `*` matches everything (section 4)."""

    value: str
    kind: str
    hub_url: str

    def __post_init__(self) -> None:
        if self.kind not in ("exact", "urlpattern"):
            raise ValueError(f"unsupported matcher type {self.kind!r}")
        if not self.value or bad_chars(self.value) or len(self.value) > 2048:
            raise ValueError("invalid matcher value")
        if self.kind == "urlpattern" and self.value != "*":
            URLPattern(self.value, self.hub_url)  # ValueError if not a well-formed pattern

    def __call__(self, topic: str) -> bool:
        # 4: "The matcher value `*` is reserved as a wildcard that matches every topic".
        if self.value == "*":
            return True
        if self.kind == "exact":
            # 4.1: "exact, case-sensitive, byte-for-byte comparison [...] MUST NOT resolve
            # relative values [...] MUST NOT perform Unicode or IRI normalization".
            return topic == self.value
        # 4.2: relative patterns and topics use the hub's URL as the base; "hubs MUST NOT
        # enable the ignoreCase option"; an unparseable topic "MUST [be treated] as not matching".
        try:
            return bool(URLPattern(self.value, self.hub_url).test(topic, self.hub_url))
        except ValueError:
            return False


def reserved(topic: str, hub_url: str) -> bool:
    # 5: "each topic MUST be resolved against the hub's URL [...] A topic addresses the reserved
    # namespace when the resolved path component equals the path of the hub's URL or begins
    # with that path followed by `/` [...] regardless of scheme or authority. Before this
    # comparison, the path MUST have its dot-segments removed and its percent-encoded octets
    # that correspond to unreserved characters decoded".
    path = urlsplit(urljoin(hub_url, topic)).path
    path = re.sub(
        "%[0-9A-Fa-f]{2}",
        lambda m: c if re.fullmatch(r"[A-Za-z0-9\-._~]", c := unquote(m[0])) else m[0],
        path,
    )
    normal = posixpath.normpath(path) if path else path
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    hub_path = urlsplit(hub_url).path
    return normal == hub_path or normal.startswith(hub_path + "/")


@dataclass
class Dispatched:
    topics: list[str]
    data: str
    private: bool
    id: str
    type: str | None
    retry: int | None

    def event(self) -> Event:
        return Event(self.data, event=self.type, id=self.id, retry=self.retry)


@dataclass
class Grants:
    """What a verified token allows: per-topic checks for publish and subscribe."""

    publish: Callable[[str], bool]
    subscribe: Callable[[str], bool]
    expires_at: float | None


NOTHING = Grants(lambda topic: False, lambda topic: False, None)


@dataclass
class MercureHub:
    """The double. `fail_next` queues failures to inject before a publish is handled: an HTTP
    status (answered with that status, nothing dispatched) or an exception (raised, as httpx
    transports do, e.g. `httpx.ReadTimeout`; `dispatch_then` raises it *after* dispatching, the
    case where a retry repeats an update the hub already has).

    `protocol` is required: `"draft-08"` checks RFC 9068 access tokens (`typ: at+jwt`, `iss` =
    `issuer`, `aud` holding `hub_url`) and `authorization_details`; `"draft-07"` checks the
    `mercure` claim (and `aud` only when `audience` is set)."""

    publisher_key: str
    protocol: Version
    subscriber_key: str | None = None
    algorithm: str = "HS256"
    audience: str | None = None
    issuer: str | None = None
    hub_url: str = "https://hub.example.com" + HUB_PATH
    anonymous: bool = True
    max_body: int = 64 * 1024
    max_topics: int = 32
    heartbeat: float | None = None
    cors_origins: tuple[str, ...] = ()
    fail_next: list[int | Exception] = field(default_factory=list)
    dispatch_then: list[Exception] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    history: list[Dispatched] = field(default_factory=list)
    subscribe_urls: list[str] = field(default_factory=list)  # query strings, in arrival order
    _queues: set[asyncio.Queue[Dispatched]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.protocol not in ("draft-07", "draft-08"):
            raise ValueError(f"protocol must be draft-07 or draft-08, not {self.protocol!r}")

    # --- tokens (draft-08 section 6, draft-07 Authorization) ------------------------------------

    def grants(self, token: str, key: str) -> Grants:
        """Verify `token`; raises Refused(401, invalid_token) for anything wrong with it."""
        try:
            if self.protocol == "draft-07":
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[self.algorithm],
                    audience=self.audience,
                    options={"verify_aud": self.audience is not None},
                )
                return self.draft_07_grants(claims)
            # 6.3: "Hubs MUST verify that the token header typ is at+jwt, or the equivalent
            # application/at+jwt, compared with the application/ prefix omitted and
            # case-insensitively".
            typ = jwt.get_unverified_header(token).get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "at+jwt":
                raise Refused(401, "token typ is not at+jwt", "invalid_token")
            # 6.3: explicit algorithm allowlist; exp enforced and required; nbf if present; aud
            # must hold the resource identifier; iss present and exactly a trusted issuer.
            if self.issuer is None:
                raise Refused(401, "no trusted issuer configured", "invalid_token")
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience or self.hub_url,
                issuer=self.issuer,
                options={"require": ["exp", "aud", "iss"]},
            )
            return self.draft_08_grants(claims)
        except jwt.InvalidTokenError as exc:
            # 6.2: "a token [...] that fails validation [...] MUST return a 401 status code
            # with error="invalid_token"".
            raise Refused(401, f"invalid token: {exc}", "invalid_token") from exc
        except ValueError as exc:
            # 6.4: "If any Mercure authorization detail fails to parse or validate [...] the hub
            # MUST reject the token the same way and MUST NOT act on the basis of the remaining
            # entries".
            raise Refused(401, f"invalid authorization details: {exc}", "invalid_token") from exc

    def draft_07_grants(self, claims: Mapping[str, Any]) -> Grants:
        mercure = claims.get("mercure")
        mercure = mercure if isinstance(mercure, dict) else {}
        publish, subscribe = mercure.get("publish") or [], mercure.get("subscribe") or []
        return Grants(
            lambda topic: any(matches(topic, s) for s in publish),
            lambda topic: any(matches(topic, s) for s in subscribe),
            claims.get("exp"),
        )

    def draft_08_grants(self, claims: Mapping[str, Any]) -> Grants:
        by_action: dict[str, list[Matcher]] = {"publish": [], "subscribe": []}
        details = claims.get("authorization_details", [])
        if not isinstance(details, list):
            raise ValueError("authorization_details is not an array")
        for entry in details:
            if not isinstance(entry, dict) or entry.get("type") != DETAIL_TYPE:
                if isinstance(entry, dict) and isinstance(entry.get("type"), str):
                    continue  # another type: RFC 9396 lets other APIs' details sit beside ours
                raise ValueError("an authorization detail is not an object with a type")
            # 6.4: actions "a non-empty JSON array of strings"; "Hubs MUST ignore action values
            # they do not recognize"; topics "a non-empty JSON array of topic matcher objects".
            actions, topics = entry.get("actions"), entry.get("topics")
            if not isinstance(actions, list) or not actions:
                raise ValueError("actions is not a non-empty array")
            if not all(isinstance(action, str) for action in actions):
                raise ValueError("a non-string action")
            if not isinstance(topics, list) or not topics:
                raise ValueError("topics is not a non-empty array")
            matchers = []
            for item in topics:
                # 6.7: "MUST be a JSON object with a match property"; "If no match_type key is
                # present, the hub MUST assume the exact matcher type"; an unsupported
                # match_type "MUST cause the token to be rejected".
                if not isinstance(item, dict) or not isinstance(item.get("match"), str):
                    raise ValueError("a topic matcher is not an object with a match")
                kind = item.get("match_type", "exact")
                if not isinstance(kind, str):
                    raise ValueError("match_type is not a string")
                matchers.append(Matcher(item["match"], kind, self.hub_url))
            for action in by_action:
                if action in actions:
                    by_action[action] += matchers
        publish, subscribe = by_action["publish"], by_action["subscribe"]
        return Grants(
            lambda topic: any(m(topic) for m in publish),
            lambda topic: any(m(topic) for m in subscribe),
            claims.get("exp"),
        )

    def presented_token(
        self, headers: Mapping[str, str], query: list[tuple[str, str]]
    ) -> str | None:
        # 6.1: "when an Authorization HTTP header is present, its token MUST be used and any
        # cookie MUST be ignored"; it "MUST contain the string Bearer followed by a space
        # character and by the access token"; "the scheme name is matched case-insensitively".
        header = headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
                raise Refused(400, "malformed Authorization header", "invalid_request")
            return token.strip()
        if self.protocol == "draft-07":
            found = [value for name, value in query if name == "authorization"]
            if found:
                return found[0]
        # draft-08 6.1: the access_token query parameter "is not part of this specification"
        # (and neither is draft-07's `authorization` parameter): it is never read.
        if "cookie" in headers:
            try:
                cookie = SimpleCookie(headers["cookie"]).get(COOKIES[self.protocol])
            except CookieError:
                cookie = None
            if cookie is not None and cookie.value:
                return cookie.value
        return None

    # --- publish (draft-08 section 5) ----------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path != HUB_PATH:
            return text(404, "not the hub's path")
        if request.method != "POST":
            return text(405, "publish with POST")
        if self.fail_next:
            failure = self.fail_next.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return text(failure, "injected failure")
        try:
            update = self.accept(request)
        except Refused as refused:
            return refused.response()
        self.dispatch(update)
        if self.dispatch_then:
            raise self.dispatch_then.pop(0)
        # 5: "the hub MUST return a 200 (OK) HTTP status code, and the response body MUST be
        # the id generated by the hub for the update, served with [...] text/plain; charset=utf-8".
        return text(200, update.id)

    def accept(self, request: httpx.Request) -> Dispatched:
        # 5: "The request MUST be encoded using the application/x-www-form-urlencoded format".
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise Refused(400, "Content-Type must be application/x-www-form-urlencoded")
        body = request.read()
        # 5: maximums on the body, field lengths and topic count: "MUST be rejected with a 413".
        if len(body) > self.max_body:
            raise Refused(413, "request body too large")
        try:
            # "Field names and values MUST be UTF-8".
            form = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict"
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(400, "body is not form-encoded UTF-8") from exc
        topics = [value for name, value in form if name == "topic"]
        fields = {name: value for name, value in reversed(form)}  # first occurrence wins
        if not topics:
            raise Refused(400, 'Missing "topic" parameter')
        if len(topics) > self.max_topics:
            raise Refused(413, "too many topics")
        if self.protocol == "draft-08":
            for topic in topics:
                # 5: topics conform to section 2; "Every topic value MUST NOT be exactly `*`";
                # reserved namespace: "hubs MUST reject publish requests violating them, for
                # any topic value, with a 400".
                if bad_chars(topic) or topic == "*" or reserved(topic, self.hub_url):
                    raise Refused(400, f'Invalid "topic" parameter: {topic!r}')
        token = self.presented_token(request.headers, [])
        if token is None:
            # 6.2: "If no access token is presented and the requested operation requires one
            # [...] MUST return a 401 [...] and MUST NOT include an error code".
            raise Refused(401, "no publisher token", bearer=True)
        grants = self.grants(token, self.publisher_key)
        # 6.5: "If the token is not authorized for every topic of the update, the hub MUST NOT
        # dispatch the update [...] and MUST return a 403 status code with
        # error="insufficient_scope"" (draft-07: "MUST return a 403 HTTP status code").
        if not all(grants.publish(topic) for topic in topics):
            error = "insufficient_scope" if self.protocol == "draft-08" else None
            raise Refused(403, "the token does not grant publish on every topic", error)
        update_id = fields.get("id")
        if update_id is not None:
            # 5: "MUST NOT start with the # character, MUST NOT be the reserved value earliest,
            # and MUST NOT contain control characters [...] or Unicode format characters".
            invalid = not update_id or update_id.startswith("#")
            if self.protocol == "draft-08":
                invalid = invalid or update_id == "earliest" or bad_chars(update_id)
            if invalid:
                raise Refused(400, 'Invalid "id" parameter')
        event_type = fields.get("type")
        # 5: type: no control or format characters; "hubs MUST reject a publish request whose
        # type is mercure with a 400".
        draft_08 = self.protocol == "draft-08"
        if (
            event_type is not None
            and draft_08
            and (bad_chars(event_type) or event_type == "mercure")
        ):
            raise Refused(400, 'Invalid "type" parameter')
        retry = fields.get("retry")
        # 5: retry "MUST consist solely of ASCII digits (U+0030-U+0039)".
        if retry is not None and not re.fullmatch("[0-9]+", retry):
            raise Refused(400, 'Invalid "retry" parameter')
        # 5: "If omitted, the hub MUST generate either a valid IRI [...] A UUID [...] MAY be used."
        # A reused id is stored again: ids are recommended unique, not enforced (section 7 says
        # how a Last-Event-ID naming a reused id resolves).
        return Dispatched(
            topics=topics,
            data=fields.get("data", ""),
            # "The presence of the field name marks the update as private regardless of its
            # value [...] hubs MUST NOT interpret the field's value".
            private="private" in fields,
            id=update_id or f"urn:uuid:{uuid.uuid4()}",
            type=event_type,
            retry=int(retry) if retry is not None else None,
        )

    def dispatch(self, update: Dispatched) -> None:
        self.history.append(update)
        for queue in self._queues:
            queue.put_nowait(update)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # --- subscribe (draft-08 sections 3 and 7) ------------------------------------------------

    def routing(self, query: list[tuple[str, str]]) -> Callable[[str], bool]:
        """The subscriber's topic matchers from the query; Refused(400) for a bad one."""
        if self.protocol == "draft-07":
            selectors = [value for name, value in query if name == "topic"]
            if not selectors:
                raise Refused(400, 'Missing "topic" parameter')
            return lambda topic: any(matches(topic, s) for s in selectors)
        found: list[Matcher] = []
        for name, value in query:
            # 3: "A request using a parameter name in the reserved match namespace (a name equal
            # to match, or beginning with match under an ASCII case-insensitive comparison)
            # that does not correspond to a matcher type supported by the hub MUST be rejected
            # with a 400"; matcher names are case-sensitive.
            if not name.lower().startswith("match"):
                continue
            kinds = {"match": "exact", "match_exact": "exact", "match_urlpattern": "urlpattern"}
            if name not in kinds:
                raise Refused(400, f"unsupported matcher parameter {name!r}")
            try:
                found.append(Matcher(value, kinds[name], self.hub_url))
            except ValueError as exc:
                # 3: values with control/format characters, or not valid for their type: 400.
                raise Refused(400, f"invalid {name} value") from exc
        if not found:
            raise Refused(400, 'Missing "match" parameter')
        return lambda topic: any(matcher(topic) for matcher in found)

    def may_receive(
        self, update: Dispatched, wanted: Callable[[str], bool], grants: Grants
    ) -> bool:
        # 3: "The hub sends updates to the subscriber for topics matching the provided topic
        # matchers"; 6.6: a private update needs a subscribe grant matching "at least one topic
        # of the update (canonical or alternate)"; the routing matchers "never widen what it
        # may read".
        selected = any(wanted(topic) for topic in update.topics)
        allowed = not update.private or any(grants.subscribe(t) for t in update.topics)
        return selected and allowed

    def subscriber_grants(self, headers: Mapping[str, str], query: list[tuple[str, str]]) -> Grants:
        token = self.presented_token(headers, query)
        if token is None:
            if not self.anonymous:
                raise Refused(401, "a token is required to subscribe", bearer=True)
            return NOTHING  # anonymous: public updates only
        return self.grants(token, self.subscriber_key or self.publisher_key)

    def replay(self, last_id: str | None) -> tuple[list[Dispatched], str | None]:
        """The history to send after `last_id`, and the Mercure-Last-Event-ID value."""
        if last_id is None:
            return [], None
        ids = [done.id for done in self.history]
        if last_id == "earliest" or last_id not in ids:
            # 7: `earliest` "requests that the hub send all updates it has"; the response field
            # is "earliest if there is no preceding event (for example, when the hub history is
            # empty, when the subscriber requests the earliest event, or when the requested
            # event does not exist or has been discarded)".
            return list(self.history), "earliest"
        # 7: "a Last-Event-ID bearing that value MUST resolve to the earliest such update [...]
        # The hub MUST then send all updates published after that one, including any later
        # update carrying the same, reused ID."
        start = ids.index(last_id)
        return self.history[start + 1 :], last_id

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cors = self.cors_headers(headers.get("origin"))
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            url = f"http://hub{scope['path']}"
            response = self.handle(httpx.Request("POST", url, headers=headers, content=body))
            raw = [(k.encode(), v.encode()) for k, v in response.headers.items()]
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": raw + cors,
                }
            )
            await send({"type": "http.response.body", "body": response.content})
            return
        self.subscribe_urls.append(scope["query_string"].decode())
        try:
            if scope["path"] != HUB_PATH:
                raise Refused(404, "not the hub's path")
            try:
                query = parse_qsl(
                    scope["query_string"].decode("ascii"),
                    keep_blank_values=True,
                    encoding="utf-8",
                    errors="strict",
                )
            except (UnicodeDecodeError, ValueError) as exc:
                raise Refused(400, "query is not form-encoded UTF-8") from exc
            wanted = self.routing(query)
            grants = self.subscriber_grants(headers, query)
        except Refused as refused:
            response = refused.response()
            raw = [(k.encode(), v.encode()) for k, v in response.headers.items()]
            await send(
                {"type": "http.response.start", "status": refused.status, "headers": raw + cors}
            )
            await send({"type": "http.response.body", "body": response.content})
            return
        param = "last_event_id" if self.protocol == "draft-08" else "lastEventID"
        # 7: "If both the Last-Event-ID HTTP header and the last_event_id query parameter are
        # present, the HTTP header MUST take precedence."
        last_id = headers.get("last-event-id") or dict(query).get(param)
        replayed, cursor = self.replay(last_id)
        await self.stream(receive, send, wanted, grants, replayed, cursor, cors)

    def cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        # 3: with credentials, Access-Control-Allow-Origin "MUST NOT be the * wildcard and MUST
        # NOT be reflected from arbitrary request origins" and Allow-Credentials is "true".
        if origin is None or origin not in self.cors_origins:
            return []
        return [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-headers", b"authorization, last-event-id, cache-control"),
            (b"access-control-expose-headers", b"mercure-last-event-id, last-event-id"),
            (b"vary", b"Origin"),
        ]

    async def stream(
        self,
        receive: Receive,
        send: Send,
        wanted: Callable[[str], bool],
        grants: Grants,
        replayed: list[Dispatched],
        cursor: str | None,
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        queue: asyncio.Queue[Dispatched] = asyncio.Queue()
        self._queues.add(queue)
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"private, no-store"),
            *cors,
        ]
        if cursor is not None:
            # 7: "the hub MUST set a Mercure-Last-Event-ID field on the HTTP response"
            # (draft-07 hubs answered with Last-Event-ID).
            name = b"mercure-last-event-id" if self.protocol == "draft-08" else b"last-event-id"
            headers.append((name, cursor.encode()))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": comment(), "more_body": True})
            for done in replayed:
                # 7: "The authorization rules [...] apply to replayed events identically to live
                # events: the hub MUST re-evaluate each candidate replayed event against the
                # current access token".
                queue.put_nowait(done)
            disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
            while True:
                # 6.6: "the hub MUST close the connection no later than the token's exp time".
                timeout = self.heartbeat
                if grants.expires_at is not None:
                    left = grants.expires_at - time.time()
                    if left <= 0:
                        break
                    timeout = min(timeout, left) if timeout else left
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait(
                    {getter, disconnected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if disconnected.done():
                    getter.cancel()
                    break
                if not getter.done():
                    getter.cancel()
                    # 3: "hubs SHOULD send an SSE comment line [...] as a keep-alive".
                    await send({"type": "http.response.body", "body": comment(), "more_body": True})
                    continue
                update = getter.result()
                if self.may_receive(update, wanted, grants):
                    chunk = encode(update.event())
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self._queues.discard(queue)


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def text(status: int, body: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        text=body,
        headers={"content-type": "text/plain; charset=utf-8", **(headers or {})},
    )
