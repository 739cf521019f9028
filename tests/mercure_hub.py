"""A Mercure hub double written from the draft-07 spec text (Publication, Authorization, Topic
Selectors, Reconciliation), for the publisher tests and for Chromium to subscribe to.

- `MercureHub.handle(request)` is the publish endpoint as an `httpx` handler (wrap it in
  `httpx.MockTransport`); every rule it checks quotes the spec in a comment.
- `MercureHub.asgi` serves the same publish endpoint plus the SSE subscription (`GET` with `topic`
  selectors, `lastEventID`, private updates only for a JWT whose `mercure.subscribe` matches) so
  a browser can use it on a loopback port.

It is a double, not a hub: one process, in-memory history, URI templates of level 1 and `{+var}`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt

from sidestream.sse import Event, comment, encode

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HUB_PATH = "/.well-known/mercure"


def uri_template_regex(template: str) -> re.Pattern[str] | None:
    """RFC 6570 `{var}` (no `/`) and `{+var}` (anything) as a regex; None if not a template."""
    if "{" not in template:
        return None
    pattern, pos = "", 0
    for match in re.finditer(r"\{(\+?)[A-Za-z0-9_.]+\}", template):
        pattern += re.escape(template[pos : match.start()])
        pattern += ".+" if match[1] else r"[A-Za-z0-9\-._~%!$&'()*+,;=:@]+"
        pos = match.end()
    return re.compile(pattern + re.escape(template[pos:]))


def matches(topic: str, selector: str) -> bool:
    # "1. If the topic selector is `*`, then the string matches the selector.
    #  2. If the topic selector and the string are exactly the same, the string matches [...]
    #  3. If the topic selector is a valid URI Template, and the string matches this URI
    #     Template, the string matches the selector. 4. Otherwise, [it does] not match."
    if selector == "*" or topic == selector:
        return True
    regex = uri_template_regex(selector)
    return bool(regex and regex.fullmatch(topic))


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
class MercureHub:
    """The double. `fail_next` queues failures to inject before a publish is handled: an HTTP
    status (answered with that status, nothing dispatched) or an exception (raised, as httpx
    transports do, e.g. `httpx.ReadTimeout`; `dispatch_then` raises it *after* dispatching, the
    case where a retry must not duplicate)."""

    publisher_key: str
    subscriber_key: str | None = None
    algorithm: str = "HS256"
    audience: str | None = None
    max_body: int = 64 * 1024
    cors_origins: tuple[str, ...] = ()
    fail_next: list[int | Exception] = field(default_factory=list)
    dispatch_then: list[Exception] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    history: list[Dispatched] = field(default_factory=list)
    subscribe_urls: list[str] = field(default_factory=list)  # query strings, in arrival order
    _queues: set[asyncio.Queue[Dispatched]] = field(default_factory=set)

    # --- JWT ----------------------------------------------------------------------------------

    def claims(self, token: str, key: str) -> dict[str, Any] | None:
        # Authorization: "both publishers and subscribers must present a valid JWS".
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                options={"verify_aud": self.audience is not None},
            )
        except jwt.InvalidTokenError:
            return None

    # --- publish ------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path != HUB_PATH:
            # "The URL of the hub MUST be the "well-known" fixed path /.well-known/mercure."
            return text(404, "not the hub's path")
        if request.method != "POST":
            return text(405, "publish with POST")
        if self.fail_next:
            failure = self.fail_next.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return text(failure, "injected failure")
        # "The request MUST be encoded using the application/x-www-form-urlencoded format".
        if (
            request.headers.get("content-type", "").split(";")[0]
            != "application/x-www-form-urlencoded"
        ):
            return text(400, "Content-Type must be application/x-www-form-urlencoded")
        body = request.read()
        if len(body) > self.max_body:
            return text(413, "request body too large")
        # "If an Authorization HTTP header is presented by the client, the JWS it contains MUST
        #  be used." The header "MUST contain the string Bearer followed by a space character
        #  and by the JWS."
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return text(401, "no publisher JWT")
        claims = self.claims(header[len("Bearer ") :], self.publisher_key)
        if claims is None:
            return text(401, "invalid publisher JWT")
        mercure = claims.get("mercure")
        publish = mercure.get("publish") if isinstance(mercure, dict) else None
        # "If mercure.publish is not defined, or contains an empty array, then the publisher
        #  MUST NOT be authorized to dispatch any update."
        if not isinstance(publish, list) or not publish:
            return text(403, "mercure.publish is missing or empty")
        try:
            form = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return text(400, "body is not form-encoded")
        topics = [value for name, value in form if name == "topic"]
        fields = {name: value for name, value in reversed(form)}  # first occurrence wins
        if not topics:
            return text(400, 'Missing "topic" parameter')
        # "the hub MUST check that every topic of the update to dispatch matches at least one of
        #  the topic selectors contained in mercure.publish [...] If the publisher is not
        #  authorized for all the topics of an update, the hub MUST NOT dispatch the update
        #  (even if some topics in the list are allowed) and MUST return a 403 HTTP status code."
        if not all(any(matches(t, s) for s in publish) for t in topics):
            return text(403, "mercure.publish does not cover every topic")
        update_id = fields.get("id")
        # "The provided ID MUST NOT start with the # character."
        if update_id is not None and (not update_id or update_id.startswith("#")):
            return text(400, 'Invalid "id" parameter')
        retry = fields.get("retry")
        if retry is not None and not retry.isdigit():
            return text(400, 'Invalid "retry" parameter')
        # "If omitted, the hub MUST generate a valid IRI. A UUID [...] MAY be used."
        update_id = update_id or f"urn:uuid:{uuid.uuid4()}"
        # A hub that checks the unique id for replays dispatches an id once.
        if not any(done.id == update_id for done in self.history):
            self.dispatch(
                Dispatched(
                    topics=topics,
                    data=fields.get("data", ""),
                    private="private" in fields,  # "If this name is set" (any value)
                    id=update_id,
                    type=fields.get("type"),
                    retry=int(retry) if retry is not None else None,
                )
            )
        if self.dispatch_then:
            raise self.dispatch_then.pop(0)
        # "On success, the HTTP response body MUST be the id associated with this update
        #  generated by the hub, and a success HTTP status code MUST be returned."
        return text(200, update_id)

    def dispatch(self, update: Dispatched) -> None:
        self.history.append(update)
        for queue in self._queues:
            queue.put_nowait(update)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # --- subscribe ----------------------------------------------------------------------------

    def may_receive(self, update: Dispatched, selectors: list[str], granted: list[str]) -> bool:
        # "The hub sends updates to the subscriber for topics matching the provided topic
        #  selectors." Private: "The hub MUST check that at least one topic of the update to
        #  dispatch (canonical or alternate) matches at least one topic selector provided in
        #  mercure.subscribe."
        wanted = any(matches(t, s) for t in update.topics for s in selectors)
        allowed = not update.private or any(matches(t, s) for t in update.topics for s in granted)
        return wanted and allowed

    def subscriber_grants(self, headers: dict[str, str], query: list[tuple[str, str]]) -> list[str]:
        # Header first, then the `authorization` query parameter, then the cookie.
        token = None
        if headers.get("authorization", "").startswith("Bearer "):
            token = headers["authorization"][len("Bearer ") :]
        elif any(name == "authorization" for name, _ in query):
            token = next(value for name, value in query if name == "authorization")
        elif "cookie" in headers:
            cookie = SimpleCookie(headers["cookie"]).get("mercureAuthorization")
            token = cookie.value if cookie else None
        claims = self.claims(token, self.subscriber_key or self.publisher_key) if token else None
        mercure = (claims or {}).get("mercure") or {}
        return list(mercure.get("subscribe", [])) if isinstance(mercure, dict) else []

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
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
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), *cors],
                }
            )
            await send({"type": "http.response.body", "body": response.content})
            return
        query = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
        await self.subscribe(scope, receive, send, headers, query, cors)

    def cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if origin is None or origin not in self.cors_origins:
            return []
        return [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-headers", b"authorization, last-event-id, cache-control"),
            (b"vary", b"Origin"),
        ]

    async def subscribe(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        query: list[tuple[str, str]],
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        self.subscribe_urls.append(scope["query_string"].decode())
        selectors = [value for name, value in query if name == "topic"]
        if scope["path"] != HUB_PATH or not selectors:
            await send({"type": "http.response.start", "status": 400, "headers": cors})
            await send({"type": "http.response.body", "body": b'Missing "topic" parameter'})
            return
        granted = self.subscriber_grants(headers, query)
        # "If both the Last-Event-ID HTTP header and the lastEventID query parameter are
        #  present, the HTTP header MUST take precedence."
        last_id = headers.get("last-event-id") or dict(query).get("lastEventID")
        queue: asyncio.Queue[Dispatched] = asyncio.Queue()
        self._queues.add(queue)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"private, no-store"),
                        *cors,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": comment(), "more_body": True})
            if last_id is not None:
                ids = [done.id for done in self.history]
                # "the hub SHOULD send all events published after the one with this identifier"
                start = ids.index(last_id) + 1 if last_id in ids else 0
                for done in self.history[start:]:
                    queue.put_nowait(done)
            disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                update = getter.result()
                if self.may_receive(update, selectors, granted):
                    chunk = encode(update.event())
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self._queues.discard(queue)


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def text(status: int, body: str) -> httpx.Response:
    return httpx.Response(status, text=body, headers={"content-type": "text/plain; charset=utf-8"})
