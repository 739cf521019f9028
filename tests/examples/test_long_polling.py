"""examples/long_polling/: the page "Polling and long polling", run as the reader would run it.

Each Flask app runs through Flask's test client; the Redis one on fakeredis and on real Redis.
The JS clients run in headless Chromium against the apps served on loopback, and the gunicorn
configuration runs under real gunicorn.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis

from sidestream.bus import SOCKET_TIMEOUT, Bus, connect
from sidestream.testing import free_port, serve_wsgi

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHAPTER = EXAMPLES / "long_polling"
MODULES = ("notifications_db", "short_polling", "naive", "blocking")


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """Import `examples/long_polling/<file>` fresh, with its own SQLite database file."""
    monkeypatch.setenv("NOTIFICATIONS_DB", str(tmp_path / "notifications.sqlite3"))
    monkeypatch.setenv("REDIS_URL", "memory://")  # the module-level apps: the embedded server
    monkeypatch.syspath_prepend(str(CHAPTER))
    for name in MODULES:
        sys.modules.pop(name, None)

    def load(relative: str) -> ModuleType:
        assert (EXAMPLES / relative).is_file(), relative
        return importlib.import_module(Path(relative).stem)

    yield load
    for name in MODULES:
        sys.modules.pop(name, None)


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


# --- short polling ------------------------------------------------------------------------------


def test_notifications_table_stores_and_lists_in_order(example: Callable[[str], Any]) -> None:
    db = example("long_polling/notifications_db.py")
    client = example("long_polling/short_polling.py").app.test_client()
    assert client.post("/notifications", json={"data": "a"}).json == {"id": 1}
    assert client.post("/notifications", json={"data": "b"}).status_code == 201
    assert db.notifications_after(0) == [{"id": 1, "data": "a"}, {"id": 2, "data": "b"}]
    bad = client.post("/notifications", json={"message": "wrong field"})
    assert (bad.status_code, bad.json["error"]) == (400, "invalid_body")


def test_short_polling_answers_at_once(example: Callable[[str], Any]) -> None:
    client = example("long_polling/short_polling.py").app.test_client()
    assert client.get("/notifications").json == {"notifications": []}
    client.post("/notifications", json={"data": "a"})
    client.post("/notifications", json={"data": "b"})
    assert [n["data"] for n in client.get("/notifications?after=1").json["notifications"]] == ["b"]
    assert client.get("/notifications?after=2").json == {"notifications": []}


# --- naive long polling -------------------------------------------------------------------------


def test_naive_poll_returns_what_is_there(example: Callable[[str], Any]) -> None:
    client = example("long_polling/naive.py").app.test_client()
    client.post("/notifications", json={"data": "a"})
    assert client.get("/notifications/poll?last_id=0").json == {
        "events": [{"id": 1, "data": "a"}],
        "last_id": 1,
    }


def test_naive_poll_times_out_with_the_same_cursor(example: Callable[[str], Any]) -> None:
    client = example("long_polling/naive.py").app.test_client()
    client.post("/notifications", json={"data": "a"})
    assert client.get("/notifications/poll?last_id=1&timeout=1").json == {
        "events": [],
        "last_id": 1,
    }


def test_naive_poll_notices_a_new_row_on_its_next_look(example: Callable[[str], Any]) -> None:
    naive = example("long_polling/naive.py")
    looks = 0
    real_lookup = naive.notifications_after

    def counting_lookup(last_id: int) -> list[dict[str, Any]]:
        nonlocal looks
        looks += 1
        return real_lookup(last_id)

    naive.notifications_after = counting_lookup
    writer = naive.app.test_client()
    thread = later(0.7, lambda: writer.post("/notifications", json={"data": "news"}))
    body = naive.app.test_client().get("/notifications/poll?last_id=0&timeout=10").json
    thread.join()
    assert [e["data"] for e in body["events"]] == ["news"]
    assert looks >= 2  # it found nothing at first, slept, and looked again


# --- long polling that blocks on Redis ----------------------------------------------------------


@pytest.fixture
def blocking(example: Callable[[str], Any], backend_url: str, key_prefix: str) -> Any:
    bus = Bus(connect(backend_url), prefix=key_prefix)
    return example("long_polling/blocking.py").create_app(bus)


def test_blocking_poll_gives_a_cursor_then_the_events_after_it(blocking: Any) -> None:
    client = blocking.test_client()
    first = client.get("/notifications/poll")
    assert first.json == {"events": [], "last_id": "0-0", "reset": False}
    posted = client.post("/notifications", json={"data": "hello"})
    assert posted.status_code == 201
    body = client.get("/notifications/poll?last_id=0-0&timeout=5").json
    assert body == {
        "events": [{"id": posted.json["id"], "event": None, "data": "hello"}],
        "last_id": posted.json["id"],
        "reset": False,
    }


def test_blocking_poll_times_out_with_the_same_cursor(blocking: Any) -> None:
    client = blocking.test_client()
    cursor = client.post("/notifications", json={"data": "old"}).json["id"]
    reply = client.get(f"/notifications/poll?last_id={cursor}&timeout=1")
    assert reply.json == {"events": [], "last_id": cursor, "reset": False}


def test_blocking_poll_wakes_up_when_a_notification_is_posted(blocking: Any) -> None:
    cursor = blocking.test_client().get("/notifications/poll").json["last_id"]
    writer = blocking.test_client()
    thread = later(0.3, lambda: writer.post("/notifications", json={"data": "news"}))
    body = blocking.test_client().get(f"/notifications/poll?last_id={cursor}&timeout=10").json
    thread.join()
    assert [e["data"] for e in body["events"]] == ["news"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("last_id=0-0&timeout=soon", "timeout"), ("last_id=yesterday", "last_id")],
)
def test_blocking_poll_refuses_bad_input(blocking: Any, query: str, parameter: str) -> None:
    reply = blocking.test_client().get(f"/notifications/poll?{query}")
    assert reply.status_code == 400
    assert reply.json["parameter"] == parameter
    bad_post = blocking.test_client().post("/notifications", data="not json")
    assert bad_post.status_code == 400


def test_blocking_poll_tells_a_client_that_missed_events(
    example: Callable[[str], Any], backend_url: str, key_prefix: str
) -> None:
    bus = Bus(connect(backend_url), prefix=key_prefix, maxlen=1)
    client = example("long_polling/blocking.py").create_app(bus).test_client()
    ids = [client.post("/notifications", json={"data": str(n)}).json["id"] for n in range(250)]
    body = client.get(f"/notifications/poll?last_id={ids[0]}").json
    assert body["reset"] is True
    assert body["last_id"] == ids[-1]
    assert body["events"] == []


def test_blocking_module_reads_redis_url(
    example: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch, backend_url: str
) -> None:
    monkeypatch.setenv("REDIS_URL", backend_url)
    client = example("long_polling/blocking.py").app.test_client()
    assert client.get("/health").json == {"ok": True}
    assert client.get("/notifications/poll").status_code == 200


# --- the JavaScript clients in a real browser ---------------------------------------------------


async def open_page(browser: Any, base_url: str, script: str) -> Any:
    """A page on the app's origin (its 404 page will do) with the example script loaded."""
    page = await browser.new_page()
    await page.goto(f"{base_url}/")
    await page.add_script_tag(path=str(EXAMPLES / script))
    await page.evaluate("window.got = []; window.resets = 0;")
    return page


async def test_short_polling_js_receives_notifications(
    browser: Any, example: Callable[[str], Any]
) -> None:
    app = example("long_polling/short_polling.py").app
    with serve_wsgi(app) as base_url:
        page = await open_page(browser, base_url, "long_polling/short_polling.js")
        # (The arrow function keeps Playwright from calling the stop function it returns.)
        await page.evaluate(
            "(url) => { window.stop = startShortPolling(url, (n) => window.got.push(n), 100); }",
            f"{base_url}/notifications",
        )
        for data in ("first", "second"):
            httpx.post(f"{base_url}/notifications", json={"data": data}).raise_for_status()
        await page.wait_for_function("window.got.length >= 2", timeout=10_000)
        assert await page.evaluate("window.got") == [
            {"id": 1, "data": "first"},
            {"id": 2, "data": "second"},
        ]


async def test_poll_notifications_js_against_the_naive_endpoint(
    browser: Any, example: Callable[[str], Any]
) -> None:
    app = example("long_polling/naive.py").app
    with serve_wsgi(app) as base_url:
        page = await open_page(browser, base_url, "long_polling/poll_notifications.js")
        # No cursor: the naive endpoint reads that as 0 and waits for the first row.
        await page.evaluate(
            "(url) => { pollNotifications(url, (e) => window.got.push(e.data)); }",
            f"{base_url}/notifications/poll",
        )
        for data in ("first", "second"):
            httpx.post(f"{base_url}/notifications", json={"data": data}).raise_for_status()
            await page.wait_for_function(f"window.got.includes('{data}')", timeout=10_000)
        assert await page.evaluate("window.got") == ["first", "second"]


async def test_poll_notifications_js_against_the_redis_endpoint(
    browser: Any, blocking: Any
) -> None:
    with serve_wsgi(blocking) as base_url:
        page = await open_page(browser, base_url, "long_polling/poll_notifications.js")
        # The first poll answers at once with a cursor; everything posted after it arrives.
        async with page.expect_response(lambda r: "/notifications/poll" in r.url) as first:
            await page.evaluate(
                "(url) => { pollNotifications(url, (e) => window.got.push(e.data),"
                " { onReset: () => window.resets++ }); }",
                f"{base_url}/notifications/poll",
            )
        assert (await (await first.value).json())["events"] == []
        for data in ("first", "second", "third"):
            httpx.post(f"{base_url}/notifications", json={"data": data}).raise_for_status()
        await page.wait_for_function("window.got.length >= 3", timeout=10_000)
        assert await page.evaluate("window.got") == ["first", "second", "third"]
        assert await page.evaluate("window.resets") == 0


# --- real gunicorn with the example configuration -----------------------------------------------

THREADS = 8
WAITERS = THREADS - 2  # long polls held at once, leaving threads for ordinary requests


@pytest.fixture
def gunicorn_api(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """examples/long_polling/blocking.py under gunicorn with long_polling/gunicorn.conf.py."""
    client_name = f"longpoll-{key_prefix.split(':')[1]}"
    # The example's own app, on a bus with this test's key prefix and a named Redis client.
    (tmp_path / "under_test.py").write_text(
        "import redis\n"
        "from blocking import create_app\n"
        "from sidestream.bus import Bus\n"
        f"client = redis.Redis.from_url({redis_url!r}, socket_timeout={SOCKET_TIMEOUT},"
        f" client_name={client_name!r})\n"
        f"app = create_app(Bus(client, prefix={key_prefix!r}))\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "THREADS": str(THREADS),
        "REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join([str(CHAPTER), str(tmp_path)]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(EXAMPLES / "long_polling/gunicorn.conf.py"),
            "under_test:app",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stderr = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"gunicorn did not start:\n{stderr}") from None
                time.sleep(0.1)
        yield base, client_name
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def blocked_on_redis(redis_url: str, client_name: str) -> int:
    """How many of the app's Redis connections are parked in a blocking XREAD right now."""
    admin = redis.Redis.from_url(redis_url)
    try:
        clients = admin.client_list()
    finally:
        admin.close()
    return sum(
        1 for c in clients if c["name"] == client_name and c["cmd"] == "xread" and "b" in c["flags"]
    )


@pytest.mark.slow
@pytest.mark.redis
def test_gunicorn_threads_hold_long_polls_and_still_answer(
    gunicorn_api: tuple[str, str], redis_url: str
) -> None:
    base, client_name = gunicorn_api
    cursor = httpx.get(f"{base}/notifications/poll").json()["last_id"]
    results: list[dict[str, Any]] = []

    def long_poll() -> None:
        url = f"{base}/notifications/poll?last_id={cursor}&timeout=20"
        results.append(httpx.get(url, timeout=30).json())

    pollers = [threading.Thread(target=long_poll) for _ in range(WAITERS)]
    for poller in pollers:
        poller.start()
    deadline = time.monotonic() + 15
    while blocked_on_redis(redis_url, client_name) < WAITERS and time.monotonic() < deadline:
        time.sleep(0.05)
    # Every long poll is a gunicorn thread parked in XREAD BLOCK on Redis...
    assert blocked_on_redis(redis_url, client_name) == WAITERS
    # ...and an ordinary request still gets a free thread and answers, while they all wait.
    assert httpx.get(f"{base}/health", timeout=10).json() == {"ok": True}
    assert results == []
    assert blocked_on_redis(redis_url, client_name) == WAITERS
    # One publish wakes every waiter with the same event.
    posted = httpx.post(f"{base}/notifications", json={"data": "to all"}, timeout=10).json()
    for poller in pollers:
        poller.join(timeout=15)
    assert len(results) == WAITERS
    assert all(
        r["events"] == [{"id": posted["id"], "event": None, "data": "to all"}] for r in results
    )
