"""`python -m sidestream.streamserver` as a real process (uvloop, signal handlers, the CLI's
options) serving the stream service on real Redis, under a key prefix of the test's own.

Each test starts its servers on free loopback ports, waits for /healthz to answer 200, reads
with raw sockets (tests/raw_http.py), and stops every process it started by its PID, however
the test ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from raw_http import Clients, EventStream

from sidestream.bus import AsyncBus, connect_async
from sidestream.testing import free_port, stop_process, wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.redis]

# The service as a deployment would write it, plus /pid: which process answered.
APP = """
import os

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, connect_async
from sidestream.service import create_app

service = create_app(
    AsyncBus(connect_async(os.environ["REDIS_URL"]), prefix=os.environ["KEY_PREFIX"]),
    authorize=allow_everyone,
    retry=1000,
    retry_jitter=0,
)


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/pid":
        body = str(os.getpid()).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await service(scope, receive, send)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "service_app.py").write_text(APP)
    return tmp_path


@pytest.fixture
async def bus(redis_url: str, key_prefix: str) -> AsyncIterator[AsyncBus]:
    """The publisher's side, on the servers' key prefix; the prefix's keys go at the end."""
    client = connect_async(redis_url)
    yield AsyncBus(client, prefix=key_prefix)
    await client.aclose()
    sync = redis.Redis.from_url(redis_url)
    try:
        for key in sync.scan_iter(match=f"{key_prefix}*", count=1000):
            sync.delete(key)
    finally:
        sync.close()


def command(app_dir: Path, port: int, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sidestream.streamserver",
        "service_app:app",
        "--app-dir",
        str(app_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *options,
    ]


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    opened = Clients()
    yield opened
    await opened.close_all()


@contextmanager
def streamserver(
    app_dir: Path, redis_url: str, key_prefix: str, port: int, *options: str, name: str = "server"
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m sidestream.streamserver service_app:app` on `port`, ready (/healthz 200)
    when the block starts and stopped by its PID when it ends; its log is in `name`.log."""
    log = (app_dir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        command(app_dir, port, *options),
        env={**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_for_http(
                f"http://127.0.0.1:{port}/healthz",
                process,
                20,
                ready=lambda r: r.status_code == 200,
            )
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{(app_dir / f'{name}.log').read_text()}") from None
        yield process
    finally:
        stop_process(process, timeout=10)
        log.close()


async def test_events_published_on_redis_reach_a_stream(
    app_dir: Path, redis_url: str, key_prefix: str, bus: AsyncBus, clients: Clients
) -> None:
    """Through the real server process and real Redis: every event, in order, with its id;
    a resume with Last-Event-ID gets exactly the missed ones."""
    port = free_port()
    with streamserver(app_dir, redis_url, key_prefix, port):
        stream = await EventStream.open(await clients.connect(port), "/events?channel=e2e")
        ids = [await bus.publish("e2e", f"n{n}") for n in range(20)]
        events = await stream.wait_events(20)
        assert [(e.data, e.id) for e in events] == [(f"n{n}", ids[n]) for n in range(20)]
        stream.client.close()
        missed = [await bus.publish("e2e", f"m{n}") for n in range(3)]
        resumed = await EventStream.open(
            await clients.connect(port), "/events?channel=e2e", headers={"Last-Event-ID": ids[-1]}
        )
        events = await resumed.wait_events(3)
        assert [(e.data, e.id) for e in events] == [(f"m{n}", missed[n]) for n in range(3)]
        resumed.client.close()


async def test_sigterm_drains_open_streams_and_the_process_exits_0(
    app_dir: Path, redis_url: str, key_prefix: str, bus: AsyncBus, clients: Clients
) -> None:
    """SIGTERM: each open stream gets `event: close` (reason shutdown, the app's retry of
    1000 ms) and its end, and the process exits with status 0 within a few seconds."""
    port = free_port()
    with streamserver(app_dir, redis_url, key_prefix, port) as process:
        streams = [
            await EventStream.open(await clients.connect(port), "/events?channel=bye", version=v)
            for v in ("1.1", "1.0")
        ]
        published = await bus.publish("bye", "last")
        for stream in streams:
            await stream.wait_events(1)
        process.send_signal(signal.SIGTERM)
        for stream in streams:
            events = await stream.until_end()
            assert [e.data for e in events[:-1]] == ["last"]
            assert events[0].id == published
            assert (events[-1].event, json.loads(events[-1].data)) == (
                "close",
                {"reason": "shutdown"},
            )
            assert events[-1].retry == 1000
        assert await asyncio.to_thread(process.wait, 5) == 0
    log = (app_dir / "server.log").read_text()
    assert "Traceback" not in log, log
    assert "draining 2 open streams" in log, log
    assert "http connections are served by the streamserver adapter" in log, log


async def test_reuse_port_lets_two_processes_share_one_port(
    app_dir: Path, redis_url: str, key_prefix: str, bus: AsyncBus, clients: Clients
) -> None:
    """With --reuse-port a second process listens on the same port and the kernel spreads
    new connections over both; without it, the second cannot start. When one stops, the
    other still serves the port."""
    port = free_port()
    with streamserver(app_dir, redis_url, key_prefix, port, "--reuse-port", name="one") as one:
        lone = subprocess.run(
            command(app_dir, port),
            env={**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix},
            capture_output=True,
            timeout=30,
        )
        assert lone.returncode != 0
        assert b"address already in use" in lone.stderr.lower(), lone.stderr[-2000:]
        with streamserver(app_dir, redis_url, key_prefix, port, "--reuse-port", name="two") as two:
            pids: set[int] = set()
            for _ in range(200):  # a new connection each time: the kernel picks a listener
                with httpx.Client() as client:
                    pids.add(int(client.get(f"http://127.0.0.1:{port}/pid", timeout=5).text))
                if len(pids) == 2:
                    break
            assert pids == {one.pid, two.pid}
            stream = await EventStream.open(await clients.connect(port), "/events?channel=rp")
            published = await bus.publish("rp", "to whichever process")
            [event] = await stream.wait_events(1)
            assert (event.data, event.id) == ("to whichever process", published)
            stream.client.close()
        assert two.returncode == 0  # SIGTERM: a drain, then a clean exit
        for _ in range(5):
            response = httpx.get(f"http://127.0.0.1:{port}/pid", timeout=5)
            assert int(response.text) == one.pid
