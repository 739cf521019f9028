"""Testing the API's publish and long-poll endpoints with Flask's test client.

Every test runs on the embedded fakeredis; with REDIS_URL set (redis://...), on that
Redis too.
"""

# --8<-- [start:imports]
import os
import threading
import uuid
from collections.abc import Iterator

import pytest
from app import create_app
from flask.testing import FlaskClient

from sidestream.bus import Bus, connect

# --8<-- [end:imports]

# --8<-- [start:backends]
# the embedded fakeredis: nothing to install, one server per process
BACKENDS = ["memory://"]
if os.environ.get("REDIS_URL", "memory://") != "memory://":
    BACKENDS.append(os.environ["REDIS_URL"])  # and a real Redis, when there is one


@pytest.fixture(params=BACKENDS)
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    # Each test its own keys, on a shared server too.
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    bus = Bus(connect(request.param), prefix=prefix)
    yield bus
    for key in bus.redis.scan_iter(match=f"{prefix}*"):
        bus.redis.delete(key)
    bus.redis.close()


@pytest.fixture
def client(bus: Bus) -> FlaskClient:
    return create_app(bus).test_client()


# --8<-- [end:backends]


# --8<-- [start:publish]
def test_a_post_publishes_one_event(client: FlaskClient, bus: Bus) -> None:
    reply = client.post("/channels/orders/events", json={"text": "paid"})
    assert reply.status_code == 201
    [event] = bus.history("orders")  # what a stream or a poll will serve
    assert (event.id, event.data) == (reply.json["id"], "paid")


def test_bad_input_is_a_400_that_names_it_and_publishes_nothing(
    client: FlaskClient, bus: Bus
) -> None:
    reply = client.post("/channels/orders/events", json={"txt": "a typo"})
    assert (reply.status_code, reply.json["error"]) == (400, "invalid_body")
    assert bus.history("orders") == []


# --8<-- [end:publish]


# --8<-- [start:poll]
def test_a_poll_returns_what_was_published_after_its_cursor(
    client: FlaskClient, bus: Bus
) -> None:
    # no cursor yet: at once
    cursor = client.get("/channels/orders/poll").json["last_id"]
    event_id = bus.publish("orders", "shipped")
    reply = client.get(f"/channels/orders/poll?last_id={cursor}&timeout=5")
    assert [event["data"] for event in reply.json["events"]] == ["shipped"]
    assert reply.json["last_id"] == event_id  # the cursor for the next poll


def test_a_waiting_poll_wakes_when_an_event_is_published(
    client: FlaskClient, bus: Bus
) -> None:
    cursor = bus.latest_id("orders")
    # While the poll waits
    later = threading.Timer(0.2, bus.publish, ("orders", "late"))
    later.start()
    reply = client.get(f"/channels/orders/poll?last_id={cursor}&timeout=10")
    later.join()
    assert [event["data"] for event in reply.json["events"]] == ["late"]


def test_a_poll_with_nothing_new_answers_empty_at_its_timeout(
    client: FlaskClient,
) -> None:
    # 1 s: the shortest
    reply = client.get("/channels/orders/poll?last_id=0-0&timeout=1")
    assert reply.json == {"events": [], "last_id": "0-0", "reset": False}


# --8<-- [end:poll]
