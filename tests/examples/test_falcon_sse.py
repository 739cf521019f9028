"""examples/falcon_sse/service.py through falcon.testing, on fakeredis and on real Redis.

The same example runs over real sockets (run.sh, nginx.conf, client.js in Chromium) in
tests/e2e/test_falcon_sse_e2e.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from types import ModuleType

import falcon.testing
import pytest
from loopback import load_example

from sidestream.bus import AsyncBus, connect_async
from sidestream.testing import read_events_async


@pytest.fixture
async def example(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ModuleType, AsyncBus]]:
    monkeypatch.setenv("REDIS_URL", backend_url)
    monkeypatch.setenv("STREAM_SECRET", "test-secret")
    module = load_example("falcon_sse/service.py")
    client = connect_async(backend_url)
    yield module, AsyncBus(client)
    await client.aclose()


def user() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


async def test_a_valid_token_opens_the_users_stream(example: tuple[ModuleType, AsyncBus]) -> None:
    service, bus = example
    name = user()
    token = service.sign(name, int(time.time()) + 60)
    path = f"/events?channel=user:{name}&token={token}"
    async with (
        falcon.testing.ASGIConductor(service.app) as conductor,
        conductor.simulate_get_stream(path) as result,
    ):
        assert result.status_code == 200
        event_id = await bus.publish(f"user:{name}", json.dumps({"text": "hi"}), event="note")
        [event] = await read_events_async(result.stream.read, count=1)
    assert (event.event, event.id, json.loads(event.data)) == ("note", event_id, {"text": "hi"})


def forge(token: str) -> str:
    """The same token with the signature's last digit changed."""
    return token[:-1] + ("1" if token.endswith("0") else "0")


@pytest.mark.parametrize(
    ("make_token", "status", "reason"),
    [
        (lambda s, u: "", 401, "invalid stream token"),
        (lambda s, u: forge(s.sign(u, int(time.time()) + 60)), 401, "invalid stream token"),
        (lambda s, u: s.sign("mallory", int(time.time()) + 60), 403, "mallory may not read"),
        (lambda s, u: s.sign(u, int(time.time()) - 1), 401, "expired"),
        (lambda s, u: "é.1.x", 401, "invalid stream token"),
    ],
    ids=["missing", "forged", "someone-else", "expired", "not-ascii"],
)
async def test_bad_tokens_are_refused_before_any_stream(
    example: tuple[ModuleType, AsyncBus], make_token: object, status: int, reason: str
) -> None:
    service, _ = example
    name = user()
    token = make_token(service, name)  # type: ignore[operator]
    async with falcon.testing.ASGIConductor(service.app) as conductor:
        result = await conductor.simulate_get(
            "/events", params={"channel": f"user:{name}", "token": token}
        )
        assert result.status_code == status
        assert reason in result.json["description"]
        assert service.app.hub.open_streams == 0


async def test_the_stream_closes_when_the_token_expires(
    example: tuple[ModuleType, AsyncBus],
) -> None:
    service, _ = example
    name = user()
    token = service.sign(name, int(time.time()) + 1)
    path = f"/events?channel=user:{name}&channel=announcements&token={token}"
    async with (
        falcon.testing.ASGIConductor(service.app) as conductor,
        conductor.simulate_get_stream(path) as result,
    ):
        [closing] = await read_events_async(result.stream.read, count=1, timeout=4)
    assert (closing.event, json.loads(closing.data)) == ("close", {"reason": "expired"})
