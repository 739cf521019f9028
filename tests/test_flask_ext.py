"""sidestream.flask: the extension on fakeredis and real Redis, through Flask's test client."""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import redis

from sidestream.errors import (
    Forbidden,
    InvalidArgument,
    InvalidChannel,
    InvalidConfig,
    InvalidToken,
    NotInitialized,
    Unauthorized,
)
from sidestream.flask import (
    CONFIG_KEYS,
    Settings,
    Sidestream,
    State,
    allow_everyone,
    bus,
    get_state,
)
from sidestream.tokens import StreamTokens

KEY = "flask-extension-test-key-of-32-bytes"
OTHER_KEY = "another-flask-extension-key-32-bytes"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "flask-extension.md"

MakeApp = Callable[..., flask.Flask]


@pytest.fixture
def make_app(
    backend_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeApp]:
    """Apps on the test's backend and key prefix; their Redis pools are closed afterwards."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SIDESTREAM_TOKEN_KEY", raising=False)
    made: list[flask.Flask] = []

    def make(
        ext: Sidestream | None = None,
        authorize_read: Callable[[str], bool] | str | None = "public",
        **config: Any,
    ) -> flask.Flask:
        if authorize_read == "public":  # no hook on the extension: these channels are public
            authorize_read = None if ext is not None and ext.read_hook else allow_everyone
        assert not isinstance(authorize_read, str)
        app = flask.Flask(f"app{len(made)}")
        app.config.update(SIDESTREAM_REDIS_URL=backend_url, SIDESTREAM_KEY_PREFIX=key_prefix)
        app.config.update(config)
        (ext or Sidestream()).init_app(app, authorize_read=authorize_read)
        made.append(app)
        return app

    yield make
    for app in made:
        get_state(app).close()


def poll(app: flask.Flask, path: str) -> flask.Response:
    return app.test_client().get(path)


def publish_later(app: flask.Flask, ext: Sidestream, channel: str, data: str) -> threading.Thread:
    def run() -> None:
        time.sleep(0.3)
        with app.app_context():
            ext.publish(channel, data)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --- configuration -------------------------------------------------------------------------------


def test_settings_come_from_app_config(make_app: MakeApp, key_prefix: str) -> None:
    app = make_app(
        SIDESTREAM_HISTORY_MAXLEN=7,
        SIDESTREAM_MAX_DATA_BYTES=10,
        SIDESTREAM_TOKEN_KEY=KEY,
        SIDESTREAM_TOKEN_AUDIENCE="stream.example",
        SIDESTREAM_TOKEN_TTL=42,
        SIDESTREAM_STREAM_URL="/events",
        SIDESTREAM_LONGPOLL_PREFIX="/api/live",
        SIDESTREAM_LONGPOLL_LIMIT=2,
    )
    state = app.extensions["sidestream"]
    assert isinstance(state, State)
    assert (state.bus.prefix, state.bus.maxlen, state.bus.max_data_bytes) == (key_prefix, 7, 10)
    assert state.tokens is not None
    assert (state.tokens.audience, state.tokens.lifetime) == ("stream.example", 42.0)
    assert state.settings.stream_url == "/events"
    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    assert rules["/api/live/<path:channel>"] == "sidestream.poll"
    assert not any(rule.startswith("/poll") for rule in rules)
    with app.app_context():
        for data in "abc":
            bus().publish("c", data)
    reply = poll(app, "/api/live/c?last_id=0-0&timeout=1")
    assert [e["data"] for e in reply.json["events"]] == ["a", "b"]  # SIDESTREAM_LONGPOLL_LIMIT


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SIDESTREAM_TOKEN_KEY", raising=False)
    settings = Settings.from_config({"SIDESTREAM_REDIS_URL": "memory://"})
    assert settings == Settings(redis_url="memory://")
    assert (settings.key_prefix, settings.longpoll_prefix, settings.token_ttl) == (
        "sidestream:",
        "/poll",
        300.0,
    )
    assert settings.token_key is None and settings.stream_url is None and settings.json_errors


@pytest.mark.parametrize("unset", [None, ""])
def test_no_redis_url_anywhere_is_an_error_naming_both_choices(
    monkeypatch: pytest.MonkeyPatch, unset: str | None
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = flask.Flask(__name__)
    if unset is not None:
        app.config["SIDESTREAM_REDIS_URL"] = unset
    with pytest.raises(InvalidConfig, match=r"(?s)SIDESTREAM_REDIS_URL.*redis://.*memory://"):
        Sidestream(app, authorize_read=allow_everyone)
    assert "sidestream" not in app.extensions


def test_redis_url_and_token_key_default_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/2")
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    settings = Settings.from_config({})
    assert (settings.redis_url, settings.token_key) == ("redis://redis.internal:6379/2", KEY)
    # app.config wins over the environment.
    settings = Settings.from_config({"SIDESTREAM_REDIS_URL": "memory://"})
    assert settings.redis_url == "memory://"


def test_no_blueprint_and_no_error_handlers_when_switched_off(make_app: MakeApp) -> None:
    app = make_app(SIDESTREAM_LONGPOLL_PREFIX=None, SIDESTREAM_JSON_ERRORS=False)
    assert not any(rule.endpoint.startswith("sidestream.") for rule in app.url_map.iter_rules())
    assert app.error_handler_spec == {}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"SIDESTREAM_REDIS_URL": "http://localhost:6379"}, "SIDESTREAM_REDIS_URL .* not a Redis"),
        ({"SIDESTREAM_REDIS_URL": 6379}, "SIDESTREAM_REDIS_URL must be a str"),
        ({"SIDESTREAM_KEY_PREFIX": 1}, "SIDESTREAM_KEY_PREFIX must be a str"),
        ({"SIDESTREAM_HISTORY_MAXLEN": 0}, "SIDESTREAM_HISTORY_MAXLEN must be an int >= 1"),
        ({"SIDESTREAM_HISTORY_MAXLEN": "1000"}, "SIDESTREAM_HISTORY_MAXLEN must be an int"),
        ({"SIDESTREAM_MAX_DATA_BYTES": True}, "SIDESTREAM_MAX_DATA_BYTES must be an int"),
        ({"SIDESTREAM_TOKEN_KEY": "short"}, "SIDESTREAM_TOKEN_KEY: HS256 key is 5 bytes"),
        ({"SIDESTREAM_TOKEN_KEY": 123}, "SIDESTREAM_TOKEN_KEY must be a str"),
        ({"SIDESTREAM_TOKEN_AUDIENCE": ""}, "SIDESTREAM_TOKEN_AUDIENCE must be a non-empty"),
        ({"SIDESTREAM_TOKEN_TTL": 0}, "SIDESTREAM_TOKEN_TTL must be a number of seconds"),
        ({"SIDESTREAM_STREAM_URL": "events"}, "SIDESTREAM_STREAM_URL must be the service's"),
        ({"SIDESTREAM_LONGPOLL_PREFIX": "/poll/"}, "SIDESTREAM_LONGPOLL_PREFIX must be a path"),
        ({"SIDESTREAM_LONGPOLL_PREFIX": "poll"}, "SIDESTREAM_LONGPOLL_PREFIX must be a path"),
        ({"SIDESTREAM_LONGPOLL_LIMIT": 10_001}, "SIDESTREAM_LONGPOLL_LIMIT must be an int >= 1"),
        ({"SIDESTREAM_JSON_ERRORS": "yes"}, "SIDESTREAM_JSON_ERRORS must be True or False"),
        ({"SIDESTREAM_REDIS_UR": "memory://"}, "did you mean SIDESTREAM_REDIS_URL\\?"),
        ({"SIDESTREAM_PREFIX": "app:"}, "did you mean SIDESTREAM_KEY_PREFIX\\?"),
        ({"SIDESTREAM_COLOUR": "blue"}, "COLOUR is not a sidestream setting: the settings are SI"),
    ],
)
def test_bad_config_raises_at_init_app_naming_the_key(
    config: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIDESTREAM_TOKEN_KEY", raising=False)
    monkeypatch.setenv("REDIS_URL", "memory://")
    app = flask.Flask(__name__)
    app.config.update(config)
    with pytest.raises(InvalidConfig, match=message):
        Sidestream(app)
    assert "sidestream" not in app.extensions
    assert not any(rule.endpoint.startswith("sidestream.") for rule in app.url_map.iter_rules())


def test_init_app_twice_is_refused(make_app: MakeApp) -> None:
    app = make_app()
    with pytest.raises(InvalidConfig, match="already initialized on app 'app0'"):
        Sidestream().init_app(app)


def test_used_without_an_initialized_app(make_app: MakeApp) -> None:
    ext = Sidestream()
    with pytest.raises(NotInitialized, match=r"app\.app_context"):
        ext.publish("c", "x")
    with (
        pytest.raises(NotInitialized, match="not initialized on app 'bare'"),
        flask.Flask("bare").app_context(),
    ):
        bus()


def test_the_page_lists_every_config_key_and_only_those() -> None:
    page = PAGE.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(SIDESTREAM_[A-Z_]+)` \| (.+?) \| (.+?) \|$", page, re.MULTILINE)
    assert [(name, default, meaning) for name, default, meaning in rows] == [
        (key.name, key.default, key.meaning) for key in CONFIG_KEYS
    ]
    mentioned = set(re.findall(r"\bSIDESTREAM_[A-Z_]+[A-Z]\b", page))
    typo = "SIDESTREAM_REDIS_UR"  # the page's example of a misspelt key
    assert mentioned - {typo} <= {key.name for key in CONFIG_KEYS}, "a key the code lacks"


# --- several apps in one process -------------------------------------------------------------


def test_two_apps_with_one_extension_are_isolated(make_app: MakeApp, key_prefix: str) -> None:
    ext = Sidestream()
    first = make_app(ext, SIDESTREAM_TOKEN_KEY=KEY)
    second = make_app(ext, SIDESTREAM_KEY_PREFIX=key_prefix + "b:", SIDESTREAM_TOKEN_KEY=OTHER_KEY)
    assert get_state(first).bus.redis is not get_state(second).bus.redis  # a pool per app
    with first.app_context():
        event_id = ext.publish("news", "for the first app")
        token = ext.issue_token("ann", ["news"])
    assert poll(first, "/poll/news?last_id=0-0&timeout=1").json["last_id"] == event_id
    assert poll(second, "/poll/news").json["last_id"] == "0-0"  # its own keys: nothing there
    assert StreamTokens(KEY).verify(token).subject == "ann"
    with pytest.raises(InvalidToken, match="signature"):
        StreamTokens(OTHER_KEY).verify(token)


def test_a_read_hook_per_app_overrides_the_extensions(make_app: MakeApp) -> None:
    ext = Sidestream(authorize_read=lambda channel: channel == "public")
    default = make_app(ext, authorize_read=None)
    own = make_app(ext, authorize_read=lambda channel: channel == "mine")
    assert poll(default, "/poll/public").status_code == 200
    assert poll(default, "/poll/mine").status_code == 403
    assert poll(own, "/poll/mine").status_code == 200
    assert poll(own, "/poll/public").status_code == 403


# --- publish and long poll -----------------------------------------------------------------------


def test_a_long_poll_through_the_blueprint_gets_a_published_event(make_app: MakeApp) -> None:
    ext = Sidestream()
    app = make_app(ext)
    first = poll(app, "/poll/orders:7")  # no last_id: the cursor to wait after
    assert (first.status_code, first.json) == (
        200,
        {"events": [], "last_id": "0-0", "reset": False},
    )
    assert first.headers["Cache-Control"] == "no-store"
    publisher = publish_later(app, ext, "orders:7", '{"status": "paid"}')
    reply = poll(app, f"/poll/orders:7?last_id={first.json['last_id']}&timeout=10")
    publisher.join()
    assert reply.status_code == 200
    assert [(e["data"], e["event"]) for e in reply.json["events"]] == [('{"status": "paid"}', None)]
    assert reply.json["last_id"] == reply.json["events"][0]["id"]
    # Nothing new: the next poll waits out its (clamped) timeout and keeps the cursor.
    empty = poll(app, f"/poll/orders:7?last_id={reply.json['last_id']}&timeout=0")
    assert empty.json == {"events": [], "last_id": reply.json["last_id"], "reset": False}


def test_channels_with_slashes_reach_the_blueprint(make_app: MakeApp) -> None:
    app = make_app()
    with app.app_context():
        event_id = bus().publish("tenant/7/orders", "x", event="created")
    reply = poll(app, "/poll/tenant/7/orders?last_id=0-0&timeout=1")
    assert reply.json["events"] == [{"id": event_id, "event": "created", "data": "x"}]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/poll/", "channel"),
        ("/poll/-starts-with-a-dash", "channel"),
        (f"/poll/{'x' * 129}", "channel"),
        ("/poll/news?last_id=yesterday", "last_id"),
        ("/poll/news?last_id=0-0&timeout=soon", "timeout"),
    ],
)
def test_bad_input_is_a_400_json_naming_the_parameter(
    make_app: MakeApp, path: str, parameter: str
) -> None:
    reply = poll(make_app(), path)
    assert reply.status_code == 400
    assert reply.json["error"] == "invalid_parameter"
    assert reply.json["parameter"] == parameter
    assert reply.json["detail"]


def test_redis_down_is_a_503_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDESTREAM_TOKEN_KEY", raising=False)
    app = flask.Flask(__name__)
    app.config["SIDESTREAM_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    Sidestream(app, authorize_read=allow_everyone)  # connects lazily: the app starts
    try:
        reply = poll(app, "/poll/news?last_id=0-0&timeout=1")
        assert (reply.status_code, reply.json["error"]) == (503, "unavailable")
        assert reply.headers["Retry-After"] == "2"
    finally:
        get_state(app).close()


# --- the read hook -------------------------------------------------------------------------------


def test_the_read_hook_decides_per_request(make_app: MakeApp) -> None:
    ext = Sidestream()
    calls: list[tuple[str, str | None]] = []

    @ext.authorize_read
    def may_read(channel: str) -> bool:
        user = flask.request.headers.get("X-User")
        calls.append((channel, user))
        if user is None:
            raise Unauthorized("log in first")
        if channel == "admin":
            raise Forbidden("admins only")
        return channel == f"user:{user}"

    app = make_app(ext)
    client = app.test_client()
    assert client.get("/poll/user:ann", headers={"X-User": "ann"}).status_code == 200
    refused = client.get("/poll/user:bob", headers={"X-User": "ann"})
    assert (refused.status_code, refused.json) == (
        403,
        {"error": "forbidden", "detail": "you may not read channel 'user:bob'"},
    )
    anonymous = client.get("/poll/user:ann")
    assert (anonymous.status_code, anonymous.json) == (
        401,
        {"error": "unauthorized", "detail": "log in first"},
    )
    admin = client.get("/poll/admin", headers={"X-User": "ann"})
    assert (admin.status_code, admin.json["detail"]) == (403, "admins only")
    assert client.get("/poll/bad name", headers={"X-User": "ann"}).status_code == 400
    assert calls == [("user:ann", "ann"), ("user:bob", "ann"), ("user:ann", None), ("admin", "ann")]


def test_reads_are_closed_without_a_hook(make_app: MakeApp) -> None:
    reply = poll(make_app(authorize_read=None), "/poll/news?last_id=0-0&timeout=1")
    assert reply.status_code == 403
    assert reply.json["error"] == "forbidden"
    assert "@sidestream.authorize_read" in reply.json["detail"]
    assert "allow_everyone" in reply.json["detail"]


def test_allow_everyone_is_said_by_name_and_logged(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sidestream.flask"):
        app = make_app(authorize_read=allow_everyone)
    assert [r.getMessage()[:36] for r in caplog.records] == ["authorize_read=allow_everyone: every"]
    assert poll(app, "/poll/anything?last_id=0-0&timeout=1").status_code == 200


def test_the_services_async_authorizers_are_refused_as_read_hooks() -> None:
    from sidestream.access import allow_everyone as service_allow_everyone

    with pytest.raises(InvalidConfig, match=r"sidestream\.flask\.allow_everyone"):
        Sidestream(authorize_read=service_allow_everyone)  # type: ignore[arg-type]


def test_a_hook_that_returns_nothing_refuses(make_app: MakeApp) -> None:
    ext = Sidestream(authorize_read=lambda channel: None)  # type: ignore[arg-type,return-value]
    assert poll(make_app(ext), "/poll/news").status_code == 403


# --- JSON errors in the app's own views ----------------------------------------------------------


def add_publish_view(app: flask.Flask, ext: Sidestream) -> None:
    @app.post("/channels/<path:channel>")
    def publish(channel: str) -> tuple[dict[str, str], int]:
        body = flask.request.get_json()
        return {"id": ext.publish(channel, body["data"], event=body.get("type"))}, 201


@pytest.mark.parametrize(
    ("channel", "body", "status", "error"),
    [
        ("news", {"data": "ok"}, 201, None),
        ("bad name", {"data": "x"}, 400, "invalid_channel"),
        ("news", {"data": 7}, 400, "invalid_event"),
        ("news", {"data": "x", "type": "a\nb"}, 400, "invalid_event"),
        ("news", {"data": "x" * 65}, 413, "payload_too_large"),
    ],
)
def test_library_errors_in_views_become_json(
    make_app: MakeApp, channel: str, body: dict[str, Any], status: int, error: str | None
) -> None:
    ext = Sidestream()
    app = make_app(ext, SIDESTREAM_MAX_DATA_BYTES=64)
    add_publish_view(app, ext)
    reply = app.test_client().post(f"/channels/{channel}", json=body)
    assert reply.status_code == status
    if error is None:
        assert re.fullmatch(r"\d+-\d+", reply.json["id"])
    else:
        assert reply.json["error"] == error and reply.json["detail"]


def test_without_json_errors_the_exception_reaches_flask(make_app: MakeApp) -> None:
    ext = Sidestream()
    app = make_app(ext, SIDESTREAM_JSON_ERRORS=False)
    add_publish_view(app, ext)
    assert app.test_client().post("/channels/bad name", json={"data": "x"}).status_code == 500
    app.testing = True  # let it through to see which
    with pytest.raises(InvalidChannel):
        app.test_client().post("/channels/bad name", json={"data": "x"})


# --- tokens --------------------------------------------------------------------------------------


def add_token_view(app: flask.Flask, ext: Sidestream) -> None:
    @app.get("/stream-token/<room>")
    @ext.token_endpoint
    def stream_token(room: str) -> tuple[str | None, list[str]]:
        user = flask.request.headers.get("X-User")
        if user is None:
            raise Unauthorized("log in first")
        if room == "secret":
            raise Forbidden(f"{user} may not join {room}")
        return user, [f"room:{room}", f"user:{user}"]


def test_issued_tokens_verify_with_the_services_verifier(make_app: MakeApp) -> None:
    ext = Sidestream()
    app = make_app(ext, SIDESTREAM_TOKEN_KEY=KEY, SIDESTREAM_TOKEN_TTL=60)
    with app.app_context():
        token = ext.issue_token("ann", ["user:ann"])
        short = ext.issue_token(None, ["news"], lifetime=5)
    claims = StreamTokens(KEY).verify(token)
    assert (claims.subject, claims.subscribe, claims.publish) == ("ann", ("user:ann",), ())
    assert 55 <= claims.expires_at - time.time() <= 60
    assert claims.may_read("user:ann") and not claims.may_read("user:bob")
    assert StreamTokens(KEY).verify(short).expires_at - time.time() <= 5
    with pytest.raises(InvalidToken, match="audience"):
        StreamTokens(KEY, audience="elsewhere").verify(token)


def test_the_token_endpoint(make_app: MakeApp) -> None:
    ext = Sidestream()
    app = make_app(
        ext,
        SIDESTREAM_TOKEN_KEY=KEY,
        SIDESTREAM_TOKEN_AUDIENCE="stream.example",
        SIDESTREAM_TOKEN_TTL=90,
        SIDESTREAM_STREAM_URL="https://stream.example/events",
    )
    add_token_view(app, ext)
    client = app.test_client()
    reply = client.get("/stream-token/lobby", headers={"X-User": "ann"})
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "no-store"
    body = reply.json
    assert (body["channels"], body["expires_in"]) == (["room:lobby", "user:ann"], 90)
    claims = StreamTokens(KEY, audience="stream.example").verify(body["token"])
    assert (claims.subject, claims.subscribe) == ("ann", ("room:lobby", "user:ann"))
    assert body["url"] == (
        "https://stream.example/events?channel=room%3Alobby&channel=user%3Aann&token="
        + body["token"]
    )
    assert client.get("/stream-token/lobby").json == {
        "error": "unauthorized",
        "detail": "log in first",
    }
    refused = client.get("/stream-token/secret", headers={"X-User": "ann"})
    assert (refused.status_code, refused.json["detail"]) == (403, "ann may not join secret")


def test_no_url_without_a_stream_url(make_app: MakeApp) -> None:
    ext = Sidestream()
    app = make_app(ext, SIDESTREAM_TOKEN_KEY=KEY)
    add_token_view(app, ext)
    body = app.test_client().get("/stream-token/lobby", headers={"X-User": "ann"}).json
    assert set(body) == {"token", "channels", "expires_in"}


def test_one_channel_name_is_not_taken_for_a_list(make_app: MakeApp) -> None:
    ext = Sidestream()
    app = make_app(ext, SIDESTREAM_TOKEN_KEY=KEY, SIDESTREAM_STREAM_URL="/events")

    @app.get("/wrong-token")
    @ext.token_endpoint
    def wrong_token() -> tuple[str, Any]:
        return "ann", "user:ann"

    with app.app_context():
        for call in (lambda: ext.issue_token("ann", "news"), lambda: ext.stream_url("news", "t")):
            with pytest.raises(InvalidArgument, match=r"like \['news'\], not a str"):
                call()
    app.testing = True  # let the exception through: a bug in the view is a 500, not a 4xx
    with pytest.raises(InvalidArgument, match="not a str"):
        app.test_client().get("/wrong-token")


def test_issuing_without_a_key_says_what_to_set(make_app: MakeApp) -> None:
    ext = Sidestream()
    app = make_app(ext)
    with app.app_context(), pytest.raises(InvalidConfig, match="SIDESTREAM_TOKEN_KEY is not set"):
        ext.issue_token("ann", ["news"])
    with app.app_context(), pytest.raises(InvalidConfig, match="SIDESTREAM_STREAM_URL is not set"):
        ext.stream_url(["news"], "t")


# --- connections (real Redis: the server counts them) --------------------------------------------


def connections_named(name: str, redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as admin:
        return sum(1 for client in admin.client_list() if client.get("name") == name)


@pytest.mark.redis
def test_one_pool_per_app_not_a_connection_per_request(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"sidestream-ext-{uuid.uuid4().hex[:8]}"
    app = flask.Flask(__name__)
    app.config.update(
        SIDESTREAM_REDIS_URL=f"{redis_url}?client_name={name}", SIDESTREAM_KEY_PREFIX=key_prefix
    )
    ext = Sidestream(app, authorize_read=allow_everyone)
    add_publish_view(app, ext)
    client = app.test_client()
    try:
        for n in range(20):
            assert client.post("/channels/c", json={"data": str(n)}).status_code == 201
            assert client.get("/poll/c?last_id=0-0&timeout=1").status_code == 200
        assert connections_named(name, redis_url) == 1  # 40 sequential requests, one connection
        ext.close(app)
        assert connections_named(name, redis_url) == 0
        # A second app closes its pool when it is garbage-collected.
        other = flask.Flask("other")
        other.config.update(app.config)
        Sidestream(other, authorize_read=allow_everyone)
        assert poll(other, "/poll/c").status_code == 200
        assert connections_named(name, redis_url) == 1
        del other
        gc.collect()
        assert connections_named(name, redis_url) == 0
    finally:
        get_state(app).close()


@pytest.mark.parametrize("accept", ["text/event-stream", "text/html", "*/*"])
def test_refusals_carry_their_json_body_whatever_the_accept_header(
    make_app: MakeApp, accept: str
) -> None:
    def hook(channel: str) -> bool:
        if channel == "anonymous":
            raise Unauthorized("log in first")
        return channel == "public"

    client = make_app(authorize_read=hook).test_client()
    for path, status, names in (
        ("/poll/private", 403, "may not read channel 'private'"),
        ("/poll/anonymous", 401, "log in first"),
        ("/poll/bad name", 400, "not valid"),
        ("/poll/public?last_id=yesterday", 400, "is not an event id"),
        ("/poll/", 400, "name the channel"),
    ):
        reply = client.get(path, headers={"Accept": accept})
        assert (reply.status_code, reply.mimetype) == (status, "application/json"), path
        assert names in reply.json["detail"], (path, reply.json)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_another_method_on_the_long_poll_route_is_a_json_405(
    make_app: MakeApp, method: str
) -> None:
    client = make_app().test_client()
    for path in ("/poll/news", "/poll/"):
        reply = client.open(path, method=method, headers={"Accept": "text/event-stream"})
        assert (reply.status_code, reply.mimetype) == (405, "application/json"), path
        assert reply.json["error"] == "method_not_allowed"
        assert "GET" in reply.json["detail"]
        assert set(reply.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
