"""examples/anti_patterns/: each anti-pattern failing, and its fix working, over real sockets.

Counts, not timings: connections the server holds (from /proc/net/tcp), requests the API
answers, Redis connections by client name (CLIENT LIST), subscriptions (PUBSUB NUMSUB).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback import EXAMPLES, load_example
from proxy_servers import free_port, run_nginx
from redis.exceptions import MaxConnectionsError

from sidestream.bus import Bus, connect, connect_async
from sidestream.sse import Event, EventStreamParser
from sidestream.testing import serve_asgi, serve_gunicorn, serve_uvicorn, serve_wsgi, wait_until

# The examples' module-level apps read REDIS_URL when imported; each test passes its own client,
# so importing them asks for the embedded server by name.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("memory_url")]

ANTI_PATTERNS = EXAMPLES / "anti_patterns"


# --- helpers ------------------------------------------------------------------------------------


class RawStream:
    """One event-stream client on a bare socket: hundreds of them cost little."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.sock = socket.create_connection((parsed.host, parsed.port), timeout=10)
        self.sock.sendall(
            f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self.parser = EventStreamParser()
        self.events: list[Event] = []
        self.payload = b""  # the body so far, de-chunked
        self.pending = b""  # received bytes not yet de-chunked
        while b"\r\n\r\n" not in self.pending:
            self._receive()
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        self.status = int(head.split()[1])
        if self.status == 200:
            self._dechunk()

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the server closed the stream: {self.payload!r}"
        self.pending += chunk

    def _dechunk(self) -> None:
        """Move every complete HTTP/1.1 chunk from `pending` to the payload and the parser."""
        while True:
            size_line, found, rest = self.pending.partition(b"\r\n")
            size = int(size_line, 16) if found else -1
            if size < 0 or len(rest) < size + 2:
                return
            data, self.pending = rest[:size], rest[size + 2 :]
            self.payload += data
            self.events += self.parser.feed(data)

    def read_until(self, marker: bytes) -> None:
        while marker not in self.payload:
            self._receive()
            self._dechunk()

    def read_events(self, count: int) -> list[Event]:
        """The next `count` events."""
        while len(self.events) < count:
            self._receive()
            self._dechunk()
        taken, self.events = self.events[:count], self.events[count:]
        return taken

    def close(self) -> None:
        self.sock.close()


def established(port: int) -> int:
    """Server-side TCP connections on `port` in state ESTABLISHED (Linux /proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _, state = line.split()[1:4]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                count += 1
    return count


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextmanager
def channel_on(redis_url: str) -> Iterator[tuple[str, Bus]]:
    """A fresh channel name on real Redis (default prefix, like the examples); deleted after."""
    bus = Bus(connect(redis_url))
    channel = f"anti-{uuid.uuid4().hex[:10]}"
    try:
        yield channel, bus
    finally:
        bus.redis.delete(bus.stream_key(channel))
        bus.redis.close()


def named(url: str, name: str) -> str:
    """`url` with a client name, which every connection of its client sets (CLIENT SETNAME)."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


def numsub(bus: Bus, channel: str) -> int:
    return int(bus.redis.pubsub_numsub(bus.live_channel(channel))[0][1])


def connections_named(bus: Bus, name: str) -> int:
    return sum(1 for client in bus.redis.client_list() if client.get("name") == name)


# --- 1. streaming from the API's sync workers: the fix (the failure is in test_why_beside.py) ---

WORKERS = 2


@pytest.mark.redis
def test_1_fixed_streams_beside_the_api_leave_its_sync_workers_free(redis_url: str) -> None:
    service = load_example("anti_patterns/service_on_redis.py")
    with (
        channel_on(redis_url) as (channel, bus),
        serve_gunicorn(
            "publish_endpoint:create_app()",
            "--workers",
            str(WORKERS),
            "--worker-class",
            "sync",
            cwd=EXAMPLES / "redis_pattern",
            env={"REDIS_URL": redis_url},
        ) as api,
        serve_asgi(service.create_service(connect_async(redis_url))) as streams_url,
        ExitStack() as stack,
    ):
        # Twice as many open streams as the API has workers: on the API, that starved it.
        streams = [RawStream(f"{streams_url}/events?channel={channel}") for _ in range(2 * WORKERS)]
        for stream in streams:
            stack.callback(stream.close)
        assert [stream.status for stream in streams] == [200] * 2 * WORKERS
        ids = []
        for n in range(3):
            reply = httpx.post(f"{api}/channels/{channel}/events", json={"data": n}, timeout=5)
            assert reply.status_code == 201  # a sync worker answered at once
            ids.append(reply.json()["id"])
        for stream in streams:
            assert [event.id for event in stream.read_events(3)] == ids
        assert numsub(bus, channel) == 1  # one subscription for all four streams


# --- 2. SSE for a dashboard refreshed every 10 s -------------------------------------------------

VIEWERS, REFRESHES = 20, 6


def test_2_failing_a_streamed_dashboard_holds_a_connection_per_viewer() -> None:
    stats = {"orders_today": 41}
    # The same code with a 10 s period; shortened so the test sees several refreshes.
    app = load_example("anti_patterns/dashboard_stream.py").create_app(lambda: stats, every=0.05)
    with serve_asgi(app, graceful_timeout=1) as base, ExitStack() as stack:
        viewers = [RawStream(f"{base}/dashboard/stream") for _ in range(VIEWERS)]
        for viewer in viewers:
            stack.callback(viewer.close)
        for viewer in viewers:
            events = viewer.read_events(3)
            assert [json.loads(e.data) for e in events] == [stats] * 3  # the same body, again
        # Between two updates every viewer still holds its connection, doing nothing.
        assert established(port_of(base)) == VIEWERS


def test_2_fixed_a_polled_dashboard_holds_nothing_and_unchanged_data_costs_a_304() -> None:
    stats = {"orders_today": 41}
    app = load_example("anti_patterns/dashboard_poll.py").create_app(lambda: dict(stats))
    statuses: Counter[int] = Counter()
    with serve_wsgi(app) as base:
        etags = [""] * VIEWERS
        for refresh in range(REFRESHES):
            if refresh == 3:
                stats["orders_today"] = 42  # the numbers change once in this minute
            for viewer in range(VIEWERS):
                conditional = {"If-None-Match": etags[viewer]} if etags[viewer] else {}
                reply = httpx.get(f"{base}/dashboard", headers=conditional)
                statuses[reply.status_code] += 1
                assert reply.headers["cache-control"] == "public, max-age=10"
                if reply.status_code == 200:
                    assert reply.json() == stats
                    etags[viewer] = reply.headers["etag"]
                else:
                    assert reply.content == b""  # 304: nothing but headers
            # Between two refreshes the server holds no connection at all.
            wait_until(lambda: established(port_of(base)) == 0)
    # A body only when the numbers are new to that viewer: at the first refresh and after the
    # change; every other refresh is an empty 304.
    assert statuses == {200: 2 * VIEWERS, 304: (REFRESHES - 2) * VIEWERS}


@contextmanager
def counting(app: Any) -> Iterator[tuple[Any, list[tuple[str | None, int]]]]:
    """Wrap a WSGI app to record (If-None-Match, status) of each request it answers."""
    seen: list[tuple[str | None, int]] = []

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def record(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen.append((environ.get("HTTP_IF_NONE_MATCH"), int(status.split()[0])))
            return start_response(status, headers, exc_info)

        return app(environ, record)

    yield wrapped, seen


@pytest.fixture
def cache_dir() -> Iterator[Path]:
    """A directory nginx's worker (user nobody when started as root) can write its cache to."""
    path = Path(tempfile.mkdtemp(prefix="dashboard-cache-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_2_fixed_a_shared_cache_answers_every_viewer_with_one_request_to_the_api(
    cache_dir: Path,
) -> None:
    module = load_example("anti_patterns/dashboard_poll.py")
    # The example's 10 s period, shortened so the cache expires soon, and long enough that 50
    # requests fit in one period on a loaded machine.
    module.REFRESH_SECONDS = 5
    stats = {"orders_today": 41}
    port = free_port()
    with counting(module.create_app(lambda: dict(stats))) as (app, seen), serve_wsgi(app) as api:
        config = (EXAMPLES / "anti_patterns/dashboard_cache.conf").read_text()
        config = config.replace("/var/cache/nginx/dashboard", str(cache_dir))
        config = config.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        config = config.replace("http://127.0.0.1:5000", api)
        with run_nginx(config, port):
            url = f"http://127.0.0.1:{port}/dashboard"
            cache = Counter()
            for _ in range(50):
                reply = httpx.get(url)
                assert reply.json() == stats
                cache[reply.headers["x-cache-status"]] += 1
            assert cache == {"MISS": 1, "HIT": 49}
            assert seen == [(None, 200)]  # 50 viewers, one request to the API
            wait_until(lambda: httpx.get(url).headers["x-cache-status"] == "REVALIDATED")
            # Once stale, nginx asked the API "changed since this ETag?" and got an empty 304.
            [(etag, status)] = seen[1:]
            assert (etag is not None, status) == (True, 304)


# --- 3. in-memory connection lists on several servers --------------------------------------------


@contextmanager
def two_processes(app: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    options = ("--timeout-graceful-shutdown", "1", "--no-access-log")
    with (
        serve_uvicorn(app, *options, cwd=ANTI_PATTERNS, env=env, ready_path="/nowhere") as one,
        serve_uvicorn(app, *options, cwd=ANTI_PATTERNS, env=env, ready_path="/nowhere") as two,
    ):
        yield one, two


def test_3_failing_an_event_published_on_one_process_never_reaches_the_other() -> None:
    """anti_patterns/memory_subscribers.py, run as two uvicorn processes."""
    with two_processes("memory_subscribers:app") as (a, b), ExitStack() as stack:
        on_a, on_b = RawStream(f"{a}/events"), RawStream(f"{b}/events")
        stack.callback(on_a.close)
        stack.callback(on_b.close)
        on_a.read_until(b": connected")
        on_b.read_until(b": connected")
        # Each process "delivers to everyone": to the one client it holds.
        assert httpx.post(f"{a}/publish", json={"from": "A"}).json() == {"delivered": 1}
        assert httpx.post(f"{b}/publish", json={"from": "B"}).json() == {"delivered": 1}
        assert [json.loads(e.data) for e in on_a.read_events(1)] == [{"from": "A"}]
        # A's event was published first; had it reached B's client, it would come first.
        assert [json.loads(e.data) for e in on_b.read_events(1)] == [{"from": "B"}]


@pytest.mark.redis
def test_3_fixed_through_redis_both_processes_get_every_event(redis_url: str) -> None:
    """anti_patterns/service_on_redis.py, run as two uvicorn processes on one Redis."""
    with (
        channel_on(redis_url) as (channel, _),
        two_processes("service_on_redis:app", {"REDIS_URL": redis_url}) as (a, b),
        ExitStack() as stack,
    ):
        on_a = RawStream(f"{a}/events?channel={channel}")
        on_b = RawStream(f"{b}/events?channel={channel}")
        stack.callback(on_a.close)
        stack.callback(on_b.close)
        assert (on_a.status, on_b.status) == (200, 200)  # subscribed: the stream has started
        for process, name in ((a, "A"), (b, "B")):
            reply = httpx.post(f"{process}/publish?channel={channel}", json={"from": name})
            assert reply.status_code == 201
        for client in (on_a, on_b):
            assert [json.loads(e.data) for e in client.read_events(2)] == [
                {"from": "A"},
                {"from": "B"},
            ]


def test_3_fixed_a_bad_channel_is_a_400_naming_it() -> None:
    service = load_example("anti_patterns/service_on_redis.py")
    with serve_asgi(service.create_service(connect_async("memory://"))) as base:
        reply = httpx.post(f"{base}/publish?channel=no%20spaces", json={"x": 1})
    assert reply.status_code == 400
    assert "channel" in reply.json()["description"]


# --- 4. per-client Redis subscriptions ----------------------------------------------------------

POOL_CAP = 100  # redis.asyncio.ConnectionPool: `max_connections or 100`


@pytest.mark.redis
def test_4_failing_client_101_fails_and_closed_clients_keep_their_subscriptions(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"anti-naive-{uuid.uuid4().hex[:8]}"
    shared = connect_async(named(redis_url, name))  # ONE client, with its default pool
    assert shared.connection_pool.max_connections == POOL_CAP
    app = load_example("anti_patterns/per_client_subscription.py").create_app(shared)
    caplog.set_level(logging.ERROR, logger="falcon")
    with channel_on(redis_url) as (channel, bus):
        try:
            with serve_asgi(app, graceful_timeout=1) as base, ExitStack() as stack:
                url = f"{base}/events?channel={channel}"
                clients = [RawStream(url) for _ in range(POOL_CAP)]
                for client in clients:
                    stack.callback(client.close)
                assert [client.status for client in clients] == [200] * POOL_CAP
                assert connections_named(bus, name) == POOL_CAP  # one per client

                refused = RawStream(url)
                stack.callback(refused.close)
                assert refused.status == 500
                [record] = [r for r in caplog.records if r.exc_info]
                assert record.exc_info is not None
                assert type(record.exc_info[1]) is MaxConnectionsError
                assert str(record.exc_info[1]) == "Too many connections"

                for client in clients:
                    client.close()
                bus.publish(channel, "anyone there?")  # each stream writes it to nobody, silently
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:  # every client is gone, every subscription stays
                    assert numsub(bus, channel) == POOL_CAP
                    time.sleep(0.1)
                assert connections_named(bus, name) == POOL_CAP
            # Only stopping the server ends those streams and their subscriptions.
            wait_until(lambda: numsub(bus, channel) == 0)
        finally:  # the pool's loop is gone with the server: close its connections from here
            for client in bus.redis.client_list():
                if client.get("name") == name:
                    bus.redis.client_kill_filter(_id=client["id"])


STREAMS = 500


@pytest.mark.redis
def test_4_fixed_the_hub_holds_two_connections_for_500_clients_and_lets_go(
    redis_url: str,
) -> None:
    name = f"anti-hub-{uuid.uuid4().hex[:8]}"
    service = load_example("anti_patterns/service_on_redis.py")
    app = service.create_service(connect_async(named(redis_url, name)), heartbeat=0.2)
    with (
        channel_on(redis_url) as (channel, bus),
        serve_asgi(app) as base,
        ExitStack() as stack,
    ):
        clients = [RawStream(f"{base}/events?channel={channel}") for _ in range(STREAMS)]
        for client in clients:
            stack.callback(client.close)
        assert [client.status for client in clients] == [200] * STREAMS
        assert connections_named(bus, name) <= 2  # one pub/sub connection + one for commands
        assert numsub(bus, channel) == 1  # one subscription for all 500
        event_id = bus.publish(channel, "to all")
        for client in clients:
            assert [event.id for event in client.read_events(1)] == [event_id]

        for client in clients:
            client.close()
        # The hub notices gone clients at its heartbeat, and leaves the channel after the last.
        wait_until(lambda: numsub(bus, channel) == 0 and app.hub.open_streams == 0)
        assert connections_named(bus, name) <= 2
