"""Real processes for the reliability suite: servers we can kill by PID, a private Redis with AOF,
and a client that reconnects the way a browser's EventSource does.

Every process here logs to a file of its own (never a pipe nobody reads) so that a test can read
what the server printed since a given moment and assert that no traceback is in it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx

from sidestream.bus import parse_cursor
from sidestream.sse import EventStreamParser
from sidestream.testing import free_port, wait_until
from sidestream.tokens import StreamTokens

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Process:
    """One server process on a fixed loopback port: started, killed and restarted by PID.

    The port stays the same across restarts (clients come back to the same address, as behind a
    load balancer); the log file accumulates every run.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        log: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.log = log
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.ready = ready or (lambda: _port_open(port))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Process:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already runs"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill(signal.SIGKILL)
                raise RuntimeError(f"{self.name} did not start:\n{self.log_text()[-4000:]}")
            time.sleep(0.05)
        return self

    def kill(self, signum: int = signal.SIGKILL, timeout: float = 20.0) -> None:
        """Send `signum` to the process (by its PID) and wait for it to exit."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signum)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_text(self, since: int = 0) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")


def uvicorn_service(
    tmp: Path, name: str, env: Mapping[str, str], *, app: str = "service:app", cwd: Path
) -> Process:
    """The stream service as its example runs it: `uvicorn service:app`, one worker."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "info", "--no-access-log", "--timeout-graceful-shutdown", "3",
    ]  # fmt: skip
    return Process(name, command, port=port, log=tmp / f"{name}.log", cwd=cwd, env=env)


def gunicorn_api(tmp: Path, name: str, app: str, env: Mapping[str, str], *, cwd: Path) -> Process:
    """A Flask app under gunicorn with threads (long polls hold a thread each)."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
        "--worker-class", "gthread", "--threads", "16", "--workers", "1",
        "--graceful-timeout", "2", "--log-level", "info", "--no-control-socket", app,
    ]  # fmt: skip
    return Process(name, command, port=port, log=tmp / f"{name}.log", cwd=cwd, env=env)


class PrivateRedis(Process):
    """A redis-server of the test's own on a free port: AOF on, fsync on every write.

    With `--appendfsync always` Redis answers a write only once it is on disk, so a write the
    publisher was acknowledged survives a SIGKILL of Redis.
    """

    def __init__(self, tmp: Path) -> None:
        port = free_port()
        data = tmp / f"redis-{port}"
        data.mkdir()
        command = [
            REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--protected-mode", "no", "--loglevel", "warning",
        ]  # fmt: skip
        super().__init__("redis", command, port=port, log=tmp / f"redis-{port}.log")
        self.ready = self._answers

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        import redis

        try:
            client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False


@dataclass
class Stack:
    """The three servers of the bad-input matrix and what they share."""

    tag: str  # unique to this run: in every channel and key it writes
    key: str  # SIDESTREAM_TOKEN_KEY of the service and both APIs
    tokens: StreamTokens
    service: Process
    api: Process
    ext: Process
    ext_prefix: str
    redis_url: str

    def logs(self) -> dict[str, int]:
        """Where each server's log ends now (to read only what a case adds)."""
        return {p.name: p.log_size() for p in (self.service, self.api, self.ext)}

    def log_since(self, marks: dict[str, int]) -> str:
        return "".join(p.log_text(marks[p.name]) for p in (self.service, self.api, self.ext))


# ---------------------------------------------------------------------------------------------
# A client that reconnects like a browser's EventSource, and the ledger that checks it
# ---------------------------------------------------------------------------------------------


@dataclass
class Follower:
    """An event-stream client: reconnects after any end or error, sending `Last-Event-ID`.

    Like `EventSource`: the last `id:` it saw (including the stream's first `id:` block, which
    carries its position before any event) goes back as `Last-Event-ID`. Unlike a browser it
    waits a fixed short `delay` instead of the server's `retry:`, so that tests stay short, and it
    moves to the next base URL in `bases` after each end or failure (a load balancer's job).
    """

    bases: Sequence[str]
    channels: Sequence[str]
    token: Callable[[], str]
    delay: float = 0.2
    start: int = 0
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, id, data)
    resets: list[str] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connects: int = 0
    last_id: str = ""

    def url(self, base: str) -> str:
        query = urlencode({"channel": list(self.channels), "token": self.token()}, doseq=True)
        return f"{base}/events?{query}"

    async def run(self) -> None:
        turn = self.start
        timeout = httpx.Timeout(30.0, connect=2.0)
        async with httpx.AsyncClient(timeout=timeout) as client:
            while True:
                base = self.bases[turn % len(self.bases)]
                turn += 1
                headers = {"Accept": "text/event-stream"}
                if self.last_id:
                    headers["Last-Event-ID"] = self.last_id
                try:
                    async with client.stream("GET", self.url(base), headers=headers) as response:
                        self.statuses.append(response.status_code)
                        if response.status_code != 200:
                            self.bodies.append(await response.aread())
                        else:
                            self.connects += 1
                            await self._read(response)
                except (httpx.TransportError, httpx.StreamError):
                    pass
                await asyncio.sleep(self.delay)

    async def _read(self, response: httpx.Response) -> None:
        parser = EventStreamParser()
        (channel,) = self.channels  # one channel per stream: its ids are plain stream ids
        async for chunk in response.aiter_raw():
            for event in parser.feed(chunk):
                if event.event == "close":
                    self.closes.append(event.data)
                elif event.event == "reset":
                    self.resets.append(event.data)
                else:
                    self.events.append((channel, event.id or "", event.data))
            if parser.last_event_id:
                self.last_id = parser.last_event_id


@dataclass
class Ledger:
    """What the publisher was acknowledged, per channel, in order: (id, data)."""

    acked: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    failures: int = 0

    def add(self, channel: str, event_id: str, data: str) -> None:
        self.acked.setdefault(channel, []).append((event_id, data))

    def count(self) -> int:
        return sum(len(v) for v in self.acked.values())

    def check(self, follower: Follower) -> dict[str, int]:
        """Events lost, duplicated and out of order for one follower, against the acks.

        Compared by data (each published payload is unique): a publish whose answer was lost
        in a Redis restart may be retried under a new id, and that retry is what was acked.
        """
        expected = [data for ch in follower.channels for _, data in self.acked.get(ch, [])]
        got = [data for _, _, data in follower.events]
        got_set = set(got)
        lost = sum(1 for data in expected if data not in got_set)
        duplicated = len(got) - len(got_set)
        out_of_order = 0
        for channel in follower.channels:
            keys = [parse_cursor(i) for ch, i, _ in follower.events if ch == channel and i]
            out_of_order += sum(1 for a, b in itertools.pairwise(keys) if b <= a)
        return {"lost": lost, "duplicated": duplicated, "out_of_order": out_of_order}


async def run_followers(followers: Iterable[Follower]) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(f.run()) for f in followers]


async def stop_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def wait_port_free(port: int, timeout: float = 10.0) -> None:
    wait_until(lambda: not _port_open(port), timeout=timeout)
