"""sidestream.longpoll: the reply for every kind of request, on fakeredis and real Redis."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

import flask
import pytest
import redis

from sidestream.bus import Bus, connect
from sidestream.flask import flask_long_poll
from sidestream.longpoll import MAX_TIMEOUT, MIN_TIMEOUT, long_poll, parse_timeout
from sidestream.testing import serve_wsgi


@pytest.fixture
def bus(sync_bus: Bus) -> Bus:
    return sync_bus


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (None, 25.0),
        ("", 25.0),
        ("5", 5.0),
        ("2.5", 2.5),
        ("0", 1.0),
        ("-3", 1.0),
        ("999", 30.0),
        (0.2, 1.0),
        (12, 12.0),
        ("1e1", 10.0),
    ],
)
def test_timeout_is_clamped_to_one_to_thirty_seconds(raw: Any, seconds: float) -> None:
    assert parse_timeout(raw) == seconds
    assert MIN_TIMEOUT <= parse_timeout(raw) <= MAX_TIMEOUT


@pytest.mark.parametrize("raw", ["soon", "5s", "nan", "inf", "-inf", "1,5", True])
def test_timeout_that_is_not_a_finite_number_is_refused(raw: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be"):
        parse_timeout(raw)


def test_no_cursor_answers_at_once_with_the_newest_id(bus: Bus) -> None:
    assert long_poll(bus, "c", None).body == {"events": [], "last_id": "0-0", "reset": False}
    newest = bus.publish("c", "x")
    reply = long_poll(bus, "c", "")
    assert (reply.status, reply.body) == (200, {"events": [], "last_id": newest, "reset": False})
    assert reply.headers["Cache-Control"] == "no-store"


def test_events_after_the_cursor_come_back_with_the_new_cursor(bus: Bus) -> None:
    first = bus.publish("c", "a")
    second = bus.publish("c", '{"n": 2}', event="note")
    reply = long_poll(bus, "c", first, "5")
    assert reply.status == 200
    assert reply.body == {
        "events": [{"id": second, "event": "note", "data": '{"n": 2}'}],
        "last_id": second,
        "reset": False,
    }


def test_limit_caps_one_answer_and_the_next_poll_gets_the_rest(bus: Bus) -> None:
    ids = [bus.publish("c", str(n)) for n in range(5)]
    first = long_poll(bus, "c", "0", limit=3).body
    assert [e["id"] for e in first["events"]] == ids[:3]
    rest = long_poll(bus, "c", first["last_id"], limit=3).body
    assert [e["id"] for e in rest["events"]] == ids[3:]


def test_timeout_returns_an_empty_list_and_the_same_cursor(bus: Bus) -> None:
    cursor = bus.publish("c", "old")
    reply = long_poll(bus, "c", cursor, "0.1")  # clamped up to 1 s
    assert reply.body == {"events": [], "last_id": cursor, "reset": False}


def test_a_waiting_poll_wakes_up_on_publish(bus: Bus) -> None:
    cursor = bus.latest_id("c")
    publisher = threading.Timer(0.2, lambda: bus.publish("c", "news"))
    publisher.start()
    reply = long_poll(bus, "c", cursor, "10")
    # The poll wakes once the entry is written, maybe before the publish has read its reply:
    # let it finish before the fixture closes the client under it.
    publisher.join(5)
    assert [e["data"] for e in reply.body["events"]] == ["news"]


@pytest.mark.parametrize(
    ("channel", "last_id", "timeout", "parameter"),
    [
        ("bad channel", "0", "5", "channel"),
        ("", "0", "5", "channel"),
        ("c", "yesterday", "5", "last_id"),
        ("c", "1-2-3", "5", "last_id"),
        ("c", "0", "soon", "timeout"),
        ("bad channel", None, "5", "channel"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    bus: Bus, channel: str, last_id: str | None, timeout: str, parameter: str
) -> None:
    reply = long_poll(bus, channel, last_id, timeout)
    assert reply.status == 400
    assert reply.body["error"] == "invalid_parameter"
    assert reply.body["parameter"] == parameter
    assert reply.body["detail"]


def test_a_cursor_older_than_history_gets_a_reset(backend_url: str, key_prefix: str) -> None:
    small = Bus(connect(backend_url), prefix=key_prefix, maxlen=1)
    ids = [small.publish("c", str(n)) for n in range(250)]
    reply = long_poll(small, "c", ids[0], "5")
    assert reply.status == 200
    assert reply.body["reset"] is True
    assert reply.body["events"] == []
    assert reply.body["last_id"] == ids[-1]
    assert "reload state" in reply.body["detail"]
    # Polling from the new cursor works normally.
    assert long_poll(small, "c", reply.body["last_id"], "1").body["reset"] is False


def test_redis_down_is_a_503_with_retry_after() -> None:
    unreachable = Bus(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    reply = long_poll(unreachable, "c", "0", "1")
    assert reply.status == 503
    assert reply.body["error"] == "unavailable"
    assert "same last_id" in reply.body["detail"]
    assert reply.headers["Retry-After"] == "2"


def test_flask_helper_reads_the_query_and_keeps_status_and_headers(bus: Bus) -> None:
    app = flask.Flask(__name__)
    app.add_url_rule("/poll", "poll", lambda: flask_long_poll(bus))
    app.add_url_rule("/mine", "mine", lambda: flask_long_poll(bus, channel="user:1"))
    client = app.test_client()
    newest = bus.publish("user:1", "hello")
    assert client.get("/mine").json == {"events": [], "last_id": newest, "reset": False}
    bad = client.get("/poll?channel=user:1&last_id=nope")
    assert (bad.status_code, bad.json["parameter"]) == (400, "last_id")
    assert bad.headers["Cache-Control"] == "no-store"
    ok = client.get("/poll?channel=user:1&last_id=0&timeout=1")
    assert [e["data"] for e in ok.json["events"]] == ["hello"]


def test_plain_wsgi_reply(bus: Bus) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return long_poll(bus, "c", "0-0", "soon").wsgi(start_response)

    with serve_wsgi(app) as base_url:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base_url}/")
        assert caught.value.code == 400
        assert caught.value.headers["Content-Type"] == "application/json"
        assert b'"parameter":"timeout"' in caught.value.read()


def test_serve_wsgi_serves_concurrent_long_polls(bus: Bus) -> None:
    app = flask.Flask(__name__)
    app.get("/poll")(lambda: flask_long_poll(bus, channel="c"))
    cursor = bus.latest_id("c")
    results: list[bytes] = []
    with serve_wsgi(app) as base_url:

        def poll() -> None:
            url = f"{base_url}/poll?last_id={cursor}&timeout=10"
            with urllib.request.urlopen(url) as response:
                results.append(response.read())

        threads = [threading.Thread(target=poll) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        assert results == []  # all four are waiting, each on its own thread
        bus.publish("c", "to everyone")
        for thread in threads:
            thread.join(timeout=10)
    assert len(results) == 4
    assert all(b"to everyone" in body for body in results)


@pytest.mark.parametrize("cursor", ["99999999999999-0", f"{2**64 - 1}-{2**64 - 1}"])
def test_a_cursor_ahead_of_the_stream_gets_a_reset_at_once(bus: Bus, cursor: str) -> None:
    latest = bus.publish("c", "only")
    started = time.monotonic()
    reply = long_poll(bus, "c", cursor, "30")
    assert time.monotonic() - started < 10  # answered, not left waiting for ids that never come
    assert (reply.status, reply.body["reset"], reply.body["events"]) == (200, True, [])
    assert reply.body["last_id"] == latest
    assert "ahead of the stream" in reply.body["detail"]
    nxt = bus.publish("c", "next")
    assert [e["id"] for e in long_poll(bus, "c", latest, "1").body["events"]] == [nxt]


def test_a_cursor_from_before_redis_was_emptied_gets_a_reset(bus: Bus) -> None:
    old = bus.publish("c", "gone")
    bus.redis.delete(bus.stream_key("c"))
    reply = long_poll(bus, "c", old, "30")
    assert (reply.status, reply.body["reset"], reply.body["last_id"]) == (200, True, "0-0")


def test_bad_entries_written_outside_the_bus_are_skipped_not_a_500(bus: Bus) -> None:
    first = bus.publish("c", "first")
    bus.redis.xadd(bus.stream_key("c"), {"data": b"\xff", "event": "x"})
    good = bus.publish("c", "good")
    reply = long_poll(bus, "c", first, "1")
    assert (reply.status, [e["id"] for e in reply.body["events"]]) == (200, [good])
