"""examples/flask_extension/app.py: the page "A Flask extension", run on fakeredis and real Redis.

The app runs through Flask's test client; its stream token then opens a stream on the hand-off
chapter's service (examples/auth/service.py, unchanged, under uvicorn on loopback), which
replays the event the app published.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from types import ModuleType

import flask
import pytest
from flask.testing import FlaskClient
from loopback import load_example

from sidestream.flask import get_state
from sidestream.testing import read_events, serve_asgi

KEY = "flask-extension-example-key-32-bytes"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    monkeypatch.setenv("REDIS_URL", "memory://")  # the module-level app: the embedded server
    return load_example("flask_extension/app.py")


@pytest.fixture
def make_app(
    example: ModuleType, backend_url: str, key_prefix: str
) -> Iterator[Callable[..., flask.Flask]]:
    """The example's create_app on the test's backend and key prefix (real Redis is shared)."""
    made: list[flask.Flask] = []

    def make(**config: object) -> flask.Flask:
        app = example.create_app(
            {"SIDESTREAM_REDIS_URL": backend_url, "SIDESTREAM_KEY_PREFIX": key_prefix, **config}
        )
        made.append(app)
        return app

    yield make
    for app in made:
        get_state(app).close()


def logged_in(app: flask.Flask, user: str) -> FlaskClient:
    client = app.test_client()
    assert client.post("/login", json={"user": user}).json == {"user": user}
    return client


def test_module_level_app_reads_the_environment(example: ModuleType) -> None:
    settings = get_state(example.app).settings
    assert settings.redis_url == "memory://"  # REDIS_URL
    assert settings.token_key == KEY
    assert (settings.token_ttl, settings.stream_url) == (120, "http://127.0.0.1:8001/events")
    get_state(example.app).close()


def test_publish_then_long_poll(make_app: Callable[..., flask.Flask]) -> None:
    ann = logged_in(make_app(), "ann")
    cursor = ann.get("/poll/news").json["last_id"]
    published = ann.post("/channels/news/events", json={"type": "posted", "data": {"id": 7}})
    assert published.status_code == 201
    reply = ann.get(f"/poll/news?last_id={cursor}&timeout=5").json
    assert reply["events"] == [{"id": published.json["id"], "event": "posted", "data": '{"id": 7}'}]


def test_the_read_hook_keeps_users_to_their_own_channel(
    make_app: Callable[..., flask.Flask],
) -> None:
    app = make_app()
    ann = logged_in(app, "ann")
    assert ann.get("/poll/user:ann").status_code == 200
    assert ann.get("/poll/news").status_code == 200
    refused = ann.get("/poll/user:bob")
    assert (refused.status_code, refused.json["error"]) == (403, "forbidden")
    assert app.test_client().get("/poll/user:ann").status_code == 403  # not logged in


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/channels/bad name/events", {"data": 1}, 400, "invalid_channel"),
        ("/channels/news/events", {"type": "a\nb", "data": 1}, 400, "invalid_event"),
        ("/channels/news/events", {"data": "x" * 100}, 413, "payload_too_large"),
        ("/channels/news/events", {"text": "no data"}, 400, "invalid_body"),
        ("/login", {"user": "Robert'); DROP"}, 400, "invalid_user"),
    ],
)
def test_bad_input_is_a_json_4xx(
    make_app: Callable[..., flask.Flask], path: str, body: object, status: int, error: str
) -> None:
    ann = logged_in(make_app(SIDESTREAM_MAX_DATA_BYTES=64), "ann")
    reply = ann.post(path, json=body)
    assert (reply.status_code, reply.json["error"]) == (status, error)
    assert reply.json["detail"]


def test_anonymous_users_get_401_json(make_app: Callable[..., flask.Flask]) -> None:
    client = make_app().test_client()
    for reply in (
        client.post("/channels/news/events", json={"data": 1}),
        client.get("/stream-token"),
    ):
        assert (reply.status_code, reply.json) == (
            401,
            {"error": "unauthorized", "detail": "log in first"},
        )


def test_the_token_opens_the_stream_on_the_hand_off_service(
    example: ModuleType, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unchanged examples/auth/service.py accepts the extension's tokens and URL."""
    monkeypatch.setenv("REDIS_URL", backend_url)  # both sides; the default key prefix
    service = load_example("auth/service.py")
    user = f"ann-{uuid.uuid4().hex[:8]}"  # real Redis is shared: a channel of this test's own
    with serve_asgi(service.app) as service_url:
        app = example.create_app({"SIDESTREAM_STREAM_URL": f"{service_url}/events"})
        state = get_state(app)
        try:
            client = logged_in(app, user)
            cursor = client.get(f"/poll/user:{user}").json["last_id"]
            sent = client.post(f"/channels/user:{user}/events", json={"data": "hi"}).json["id"]
            token = client.get("/stream-token").json
            assert (token["channels"], token["expires_in"]) == ([f"user:{user}"], 120)
            # What client.js does: open the URL, resuming after the last id it has.
            stream = read_events(f"{token['url']}&last_event_id={cursor}", count=1)
            assert stream.status == 200
            assert [(e.id, e.data) for e in stream.events] == [(sent, '"hi"')]
            other = token["url"].replace(f"user%3A{user}", "user%3Abob")
            assert read_events(other, count=1).status == 403  # not this token's channel
        finally:
            state.bus.redis.delete(state.bus.stream_key(f"user:{user}"))
            state.close()
