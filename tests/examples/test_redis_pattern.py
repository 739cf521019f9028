"""examples/redis_pattern/: the page "The Redis pattern", on fakeredis and on real Redis."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import flask.cli
import pytest

from sidestream.bus import Bus, connect, decode_live
from sidestream.errors import InvalidConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(relative: str) -> ModuleType:
    """Import `examples/<relative>` by path, under a name of its own."""
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bus(backend_url: str, key_prefix: str) -> Bus:
    return Bus(connect(backend_url), prefix=key_prefix)


def printed(main: Any, bus: Bus) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(bus)
    return out.getvalue()


# --- publishing from a Flask endpoint -----------------------------------------------------------


@pytest.fixture
def client(bus: Bus) -> Any:
    return load("redis_pattern/publish_endpoint.py").create_app(bus).test_client()


def test_a_post_publishes_one_event_with_its_type(client: Any, bus: Bus) -> None:
    reply = client.post("/channels/orders/events", json={"type": "created", "data": {"order": 7}})
    assert reply.status_code == 201
    [event] = bus.history("orders")
    assert event.id == reply.json["id"]
    assert (event.event, json.loads(event.data)) == ("created", {"order": 7})


def test_the_event_reaches_live_listeners_too(client: Any, bus: Bus) -> None:
    listener = bus.redis.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(bus.live_channel("orders"))
    listener.get_message(timeout=1)
    reply = client.post("/channels/orders/events", json={"data": "plain"})
    message = None
    for _ in range(50):
        message = listener.get_message(timeout=0.1)
        if message is not None:
            break
    listener.close()
    assert message is not None
    assert decode_live(message["data"]).id == reply.json["id"]
    assert decode_live(message["data"]).event is None


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/channels/orders/events", None, 400, "invalid_body"),
        ("/channels/orders/events", ["not", "an", "object"], 400, "invalid_body"),
        ("/channels/orders/events", {"type": "created"}, 400, "invalid_body"),
        ("/channels/bad%20name/events", {"data": 1}, 400, "invalid_channel"),
        ("/channels/orders/events", {"type": "two\nlines", "data": 1}, 400, "invalid_type"),
        ("/channels/orders/events", {"data": "x" * 70_000}, 413, "payload_too_large"),
    ],
)
def test_bad_requests_get_a_4xx_that_names_the_problem(
    client: Any, bus: Bus, path: str, body: Any, status: int, error: str
) -> None:
    reply = client.post(path, json=body) if body is not None else client.post(path, data="{")
    assert (reply.status_code, reply.json["error"]) == (status, error)
    assert reply.json["detail"]
    assert bus.history("orders") == []  # nothing was published


def test_the_app_is_made_when_asked_and_reads_redis_url_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    module = load("redis_pattern/publish_endpoint.py")  # importing it needs no Redis
    assert not hasattr(module, "app")
    with pytest.raises(InvalidConfig, match="memory://"):
        module.create_app()  # no bus given, and REDIS_URL unset: named, not guessed
    monkeypatch.setenv("REDIS_URL", "memory://")
    app = flask.cli.find_best_app(module)  # what `flask --app publish_endpoint run` does
    reply = app.test_client().post("/channels/orders/events", json={"data": 1})
    assert reply.status_code == 201


def test_publish_event_logic_works_without_flask(bus: Bus, memory_url: str) -> None:
    logic = load("redis_pattern/publish_endpoint.py").PublishEventLogic(bus)
    body, status = logic.execute("orders", {"type": "paid", "data": [1, 2]})
    assert status == 201
    assert bus.history("orders")[0].id == body["id"]
    assert bus.history("orders")[0].data == "[1, 2]"


# --- pub/sub vs streams, and a restart ----------------------------------------------------------


def test_pubsub_forgets_and_the_stream_resumes(bus: Bus) -> None:
    main = load("redis_pattern/pubsub_vs_streams.py").main
    expected = (EXAMPLES / "redis_pattern/pubsub_vs_streams.output.txt").read_text()
    assert printed(main, bus) == expected


def test_after_a_restart_the_client_is_told_to_reload(bus: Bus) -> None:
    main = load("redis_pattern/after_restart.py").main
    expected = (EXAMPLES / "redis_pattern/after_restart.output.txt").read_text()
    assert printed(main, bus) == expected


@pytest.mark.parametrize("script", ["pubsub_vs_streams.py", "after_restart.py"])
def test_scripts_print_what_the_page_shows(script: str) -> None:
    # Run as the page says, on the embedded server: `REDIS_URL=memory:// python <script>`.
    env = {**os.environ, "REDIS_URL": "memory://"}
    result = subprocess.run(
        [sys.executable, script],
        cwd=EXAMPLES / "redis_pattern",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = (EXAMPLES / "redis_pattern" / script.replace(".py", ".output.txt")).read_text()
    assert result.stdout == expected
