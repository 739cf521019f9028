"""Bad input against real processes: the auth example's stream service under uvicorn, its Flask
API and the Flask extension's app under gunicorn, on the shared Redis.

Every case asserts the exact status, a JSON body naming the problem (whatever the `Accept`
header: each HTTP case runs with `*/*` and with `text/event-stream`, what an SSE client sends),
that no stream bytes reach a client that was refused (each channel already holds an event whose
data is a marker, and token cases ask to replay from the start), and that no server logged a
traceback while answering it. WebSocket cases are in test_ws_bad_input.py.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from reliability_helpers import Stack

from sidestream.bus import Bus, connect
from sidestream.tokens import DEFAULT_AUDIENCE, StreamTokens

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.redis]

ACCEPTS = ("*/*", "text/event-stream")


@dataclass(frozen=True)
class Case:
    """One bad request. `path` and header values are templates over `Env.values`."""

    id: str
    target: str  # "service" (the stream service), "api" (auth example), "ext" (extension)
    method: str
    path: str
    status: int
    names: tuple[str, ...]  # the JSON body must contain one of these (case-insensitive)
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    login: bool = False


@dataclass
class Env:
    stack: Stack
    values: dict[str, str]
    marker: str  # the data of the events already in the channels: must never be in a refusal


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _claims(channels: list[str], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": DEFAULT_AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "sub": "mallory",
        "mercure": {"subscribe": channels, "publish": []},
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture(scope="module")
def env(stack: Stack) -> Iterator[Env]:
    a, b = f"user:{stack.tag}-a", f"user:{stack.tag}-b"
    marker = f"MARKER-{stack.tag}"
    bus = Bus(connect(stack.redis_url))  # the auth example's keys: the library's prefix
    ext_bus = Bus(connect(stack.redis_url), prefix=stack.ext_prefix)
    for channel in (a, b):
        bus.publish(channel, marker)
    for channel in ("news", f"user:{stack.tag}-e"):
        ext_bus.publish(channel, marker)
    key = stack.key
    good = StreamTokens(key)
    other = StreamTokens("x" * 32 + stack.tag)
    values = {
        "A": a,
        "B": b,
        "E": f"user:{stack.tag}-e",  # the extension's app: the logged-in user's own channel
        "USER": f"{stack.tag}-e",
        "ok": good.issue("alice", subscribe=[a]),
        "expired": good.issue("alice", subscribe=[a], lifetime=-3600),
        "wrong_key": other.issue("alice", subscribe=[a]),
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims([a]))}.",
        "alg_hs512": jwt.encode(_claims([a]), key, algorithm="HS512"),
        "wrong_aud": jwt.encode(_claims([a], aud="another-service"), key, algorithm="HS256"),
        "no_exp": jwt.encode(_claims([a], exp=None), key, algorithm="HS256"),
        "not_yet": jwt.encode(_claims([a], nbf=int(time.time()) + 3600), key, algorithm="HS256"),
        "bad_sig": good.issue("alice", subscribe=[a])[:-4] + "AAAA",
        "many": ",".join(f"c{n}" for n in range(17)),
        "long": "a" * 129,
    }
    yield Env(stack, values, marker)
    bus.redis.close()
    ext_bus.redis.close()


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


T = "token"
CH = "channel"
CUR = ("cursor", "last-event-id", "last_event_id")
EV = "/events?channel={A}"

CASES = [
    # --- the stream service: tokens ------------------------------------------------------------
    Case("token-missing", "service", "GET", EV, 401, (T,)),
    Case("token-malformed", "service", "GET", EV + "&token=not-a-jwt", 401, (T,)),
    Case("token-three-junk-parts", "service", "GET", EV + "&token=a.b.c", 401, (T,)),
    Case("token-expired", "service", "GET", EV + "&token={expired}", 401, ("expired",)),
    Case("token-wrong-key", "service", "GET", EV + "&token={wrong_key}", 401, ("signature",)),
    Case("token-bad-signature", "service", "GET", EV + "&token={bad_sig}", 401, ("signature",)),
    Case("token-alg-none", "service", "GET", EV + "&token={alg_none}", 401, ("algorithm",)),
    Case("token-alg-hs512", "service", "GET", EV + "&token={alg_hs512}", 401, ("algorithm",)),
    Case("token-wrong-audience", "service", "GET", EV + "&token={wrong_aud}", 401, ("audience",)),
    Case("token-no-exp", "service", "GET", EV + "&token={no_exp}", 401, ("exp",)),
    Case("token-not-yet-valid", "service", "GET", EV + "&token={not_yet}", 401, (T,)),
    Case(
        "token-basic-auth", "service", "GET", EV, 401, ("bearer",), {"Authorization": "Basic eA=="}
    ),
    Case(
        "token-foreign-channel", "service", "GET", "/events?channel={B}&token={ok}", 403, ("{B}",)
    ),
    Case(
        "token-one-channel-foreign",
        "service",
        "GET",
        "/events?channel={A}&channel={B}&token={ok}",
        403,
        ("{B}",),
        {"Last-Event-ID": "{A}=0,{B}=0"},
    ),
    # --- the stream service: channel names ----------------------------------------------------
    Case("channel-missing", "service", "GET", "/events?token={ok}", 400, (CH,)),
    Case("channel-empty", "service", "GET", "/events?channel=&token={ok}", 400, (CH,)),
    Case("channel-too-long", "service", "GET", "/events?channel={long}&token={ok}", 400, (CH,)),
    Case("channel-space", "service", "GET", "/events?channel=a%20b&token={ok}", 400, (CH,)),
    Case("channel-dotdot", "service", "GET", "/events?channel=../x&token={ok}", 400, (CH,)),
    Case("channel-leading-dash", "service", "GET", "/events?channel=-x&token={ok}", 400, (CH,)),
    Case("channel-nul", "service", "GET", "/events?channel=a%00b&token={ok}", 400, (CH,)),
    Case("channel-non-ascii", "service", "GET", "/events?channel=%C3%BC&token={ok}", 400, (CH,)),
    Case("channel-too-many", "service", "GET", "/events?channel={many}&token={ok}", 400, (CH,)),
    # --- the stream service: cursors ----------------------------------------------------------
    Case(
        "cursor-not-an-id", "service", "GET", EV + "&token={ok}", 400, CUR, {"Last-Event-ID": "abc"}
    ),
    Case(
        "cursor-query-not-an-id", "service", "GET", EV + "&token={ok}&last_event_id=x-1", 400, CUR
    ),
    Case(
        "cursor-over-u64",
        "service",
        "GET",
        EV + "&token={ok}",
        400,
        CUR,
        {"Last-Event-ID": "18446744073709551616-0"},
    ),
    Case(
        "cursor-negative", "service", "GET", EV + "&token={ok}", 400, CUR, {"Last-Event-ID": "-1-0"}
    ),
    Case(
        "cursor-too-long",
        "service",
        "GET",
        EV + "&token={ok}",
        400,
        CUR,
        {"Last-Event-ID": "1" * 9000},
    ),
    Case(
        "cursor-single-id-for-two-channels",
        "service",
        "GET",
        "/events?channel={A}&channel={B}&token={ok}",
        400,
        CUR,
        {"Last-Event-ID": "1-0"},
    ),
    Case(
        "cursor-pairs-bad-channel",
        "service",
        "GET",
        EV + "&token={ok}",
        400,
        CUR,
        {"Last-Event-ID": "no such=1-0"},
    ),
    # --- the stream service: methods and paths -------------------------------------------------
    Case("method-post-events", "service", "POST", EV + "&token={ok}", 405, ("method",)),
    Case("method-delete-events", "service", "DELETE", EV + "&token={ok}", 405, ("method",)),
    Case("path-unknown", "service", "GET", "/admin", 404, ("not found",)),
    # --- the Flask extension: long poll --------------------------------------------------------
    Case("poll-no-channel", "ext", "GET", "/poll/", 400, (CH,)),
    Case("poll-bad-channel", "ext", "GET", "/poll/bad%20name", 400, (CH,)),
    Case("poll-long-channel", "ext", "GET", "/poll/{long}", 400, (CH,)),
    Case("poll-bad-cursor", "ext", "GET", "/poll/news?last_id=abc", 400, ("last_id",)),
    Case(
        "poll-cursor-over-u64",
        "ext",
        "GET",
        "/poll/news?last_id=1-18446744073709551616",
        400,
        ("last_id",),
    ),
    Case("poll-bad-timeout", "ext", "GET", "/poll/news?last_id=0&timeout=abc", 400, ("timeout",)),
    Case("poll-nan-timeout", "ext", "GET", "/poll/news?last_id=0&timeout=nan", 400, ("timeout",)),
    Case("poll-foreign-channel", "ext", "GET", "/poll/{B}?last_id=0", 403, ("{B}",)),
    Case(
        "poll-foreign-channel-logged-in",
        "ext",
        "GET",
        "/poll/{A}?last_id=0",
        403,
        ("{A}",),
        login=True,
    ),
    Case("poll-method-post", "ext", "POST", "/poll/news", 405, ("method",)),
    # --- the Flask extension: publish and tokens ------------------------------------------------
    Case(
        "publish-not-logged-in",
        "ext",
        "POST",
        "/channels/{E}/events",
        401,
        ("log in",),
        body='{"data": 1}',
    ),
    Case(
        "publish-not-json",
        "ext",
        "POST",
        "/channels/{E}/events",
        400,
        ("data",),
        body="data=1",
        login=True,
    ),
    Case(
        "publish-no-data",
        "ext",
        "POST",
        "/channels/{E}/events",
        400,
        ("data",),
        body='{"type": "x"}',
        login=True,
    ),
    Case(
        "publish-bad-channel",
        "ext",
        "POST",
        "/channels/bad%20name/events",
        400,
        (CH,),
        body='{"data": 1}',
        login=True,
    ),
    Case(
        "publish-type-with-cr",
        "ext",
        "POST",
        "/channels/{E}/events",
        400,
        ("type",),
        body='{"data": 1, "type": "a\\rb"}',
        login=True,
    ),
    Case(
        "publish-type-with-lf",
        "ext",
        "POST",
        "/channels/{E}/events",
        400,
        ("type",),
        body='{"data": 1, "type": "a\\nb"}',
        login=True,
    ),
    # `close` and `reset` are the service's own events: an SSE client acts on them (the
    # WebSocket route refuses them from clients; a publish endpoint must too).
    Case(
        "publish-reserved-type-close",
        "ext",
        "POST",
        "/channels/{E}/events",
        400,
        ("close",),
        body='{"data": 1, "type": "close"}',
        login=True,
    ),
    Case(
        "publish-reserved-type-reset",
        "ext",
        "POST",
        "/channels/{E}/events",
        400,
        ("reset",),
        body='{"data": 1, "type": "reset"}',
        login=True,
    ),
    Case(
        "publish-too-large",
        "ext",
        "POST",
        "/channels/{E}/events",
        413,
        ("bytes",),
        body=json.dumps({"data": "x" * 70_000}),
        login=True,
    ),
    Case("token-endpoint-not-logged-in", "ext", "GET", "/stream-token", 401, ("log in",)),
    # --- the auth example's API ----------------------------------------------------------------
    Case("api-token-not-logged-in", "api", "GET", "/stream-token", 401, ("log in",)),
    Case("api-login-bad-user", "api", "POST", "/login", 400, ("user",), body='{"user": "A B"}'),
    Case("api-login-not-json", "api", "POST", "/login", 400, ("user",), body="user=alice"),
    # The auth example's publish endpoint: a write is authorized like a read (issue 10), and a
    # body that is not JSON is a 400 with a JSON body, not Flask's HTML page.
    Case(
        "api-notify-not-logged-in",
        "api",
        "POST",
        "/notify/{USER}",
        401,
        ("log in",),
        body='{"n": 1}',
    ),
    Case(
        "api-notify-bad-json", "api", "POST", "/notify/{USER}", 400, ("json",), body="{", login=True
    ),
    Case(
        "api-notify-bad-user",
        "api",
        "POST",
        "/notify/A%20B",
        404,
        ("user",),
        body='{"n": 1}',
        login=True,
    ),
]


def _request(env: Env, case: Case, accept: str) -> httpx.Response:
    stack = env.stack
    base = {"service": stack.service, "api": stack.api, "ext": stack.ext}[case.target].base
    values = env.values
    with httpx.Client(base_url=base, timeout=15) as client:
        if case.login:
            assert client.post("/login", json={"user": values["USER"]}).status_code == 200
        headers = {"Accept": accept, **{k: _fill(v, values) for k, v in case.headers.items()}}
        replay = "Last-Event-ID" not in headers and "last_event_id" not in case.path
        if case.method == "GET" and case.target == "service" and replay:
            headers["Last-Event-ID"] = "0"  # were it let in, it would replay the marker first
        if case.body is not None:
            headers["Content-Type"] = "application/json"
        path = _fill(case.path, values)
        if "{many}" in case.path:
            path = path.replace(values["many"], "&channel=".join(values["many"].split(",")))
        return client.request(case.method, path, headers=headers, content=case.body)


def _assert_refused(env: Env, case: Case, response: httpx.Response, marks: dict[str, int]) -> None:
    body = response.content
    assert response.status_code == case.status, (response.status_code, body[:300])
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("application/json"), content_type
    assert body, f"empty {response.status_code} body (Content-Type {content_type})"
    document = json.loads(body)
    assert isinstance(document, dict)
    text = json.dumps(document).lower()
    wanted = [_fill(name, env.values).lower() for name in case.names]
    assert any(name in text for name in wanted), f"{wanted} not named in {document}"
    # No stream bytes: nothing of the channels' events, nothing shaped like an event.
    assert env.marker.encode() not in body
    assert b"data:" not in body and b"retry:" not in body
    log = env.stack.log_since(marks)
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("accept", ACCEPTS, ids=["any", "event-stream"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_with_json(env: Env, case: Case, accept: str) -> None:
    marks = env.stack.logs()
    response = _request(env, case, accept)
    time.sleep(0.05)  # let the servers write what they log about this request
    _assert_refused(env, case, response, marks)
