"""Fan-out from one service process: latency, loss, deliveries per server CPU-second, memory.

Not a test. Needs a real Redis at REDIS_URL (default redis://127.0.0.1:6379/0); everything runs on
loopback. Writes bench/results/fanout.json, which the docs include as it is.

    .venv/bin/python bench/fanout.py                 # the full run (about two minutes)
    .venv/bin/python bench/fanout.py --subscribers 1000 --designs sidestream --no-memory

Method, per design and subscriber count:

1. Start the server in its own process: one uvicorn worker (`--loop uvloop --http httptools`
   when installed, no access log). `sidestream` is `create_app` (bench/fanout_service.py);
   `naive` is the seed's design, one Redis pub/sub connection per client
   (bench/naive_service.py).
2. Open N streams from this one asyncio process with raw sockets (an `asyncio.Protocol` per
   connection, a hand-written GET, a regex over the bytes): the load generator shares the two
   cores, so it must cost little per delivery.
3. Publish `rate` events per second through Redis (the bus's publish script), each carrying its
   publish time; every client records receive time minus publish time and the sequence numbers
   it got (loss = expected deliveries minus distinct ones received).
4. Read the server process's CPU time (utime + stime in /proc/<pid>/stat) before the first
   publish and after the last delivery: deliveries per server CPU-second is the fair figure when
   the generator competes for the same cores.

Memory: open N idle streams and divide the server's RSS growth by N (after a warm-up of 50
streams, so imports and first-use allocations are not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from array import array
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis

from sidestream.bus import AsyncBus, connect_async
from sidestream.testing import free_port

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "fanout.json"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
MODULES = {
    "sidestream": "fanout_service",
    "naive": "naive_service",
    "bare": "bare_service",
    "bare-asgi": "bare_asgi_service",  # bench/peers.py's lower floor: uvicorn alone
}
CHANNEL = "bench"
EVENT = re.compile(rb"data: (\d+) (\d+\.\d+)\n")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> int:
    """Lift this process's open-file limit to the hard limit; subprocesses inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Server:
    """One server process: uvicorn, or `sidestream.streamserver` (`server="streamserver"`)."""

    def __init__(
        self,
        design: str,
        prefix: str,
        redis_url: str | None = None,
        extra_env: dict[str, str] | None = None,
        wrap: list[str] | None = None,
        server: str = "uvicorn",
    ) -> None:
        """`wrap` goes before the command (a profiler); `extra_env` is added to the server's."""
        self.port = free_port()
        if server == "streamserver":
            command = [
                *(wrap or []), sys.executable, "-m", "sidestream.streamserver",
                f"{MODULES[design]}:app", "--app-dir", str(BENCH), "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning", "--backlog", "4096",
            ]  # fmt: skip
        else:
            command = self._uvicorn(design, wrap)
        env = {**os.environ, "REDIS_URL": redis_url or REDIS_URL, "BENCH_PREFIX": prefix}
        env.update(extra_env or {})
        self.process = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{design} server did not start") from None
                time.sleep(0.05)

    def _uvicorn(self, design: str, wrap: list[str] | None) -> list[str]:
        command = [
            *(wrap or []), sys.executable, "-m", "uvicorn", f"{MODULES[design]}:app",
            "--app-dir", str(BENCH),
            "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
            "--log-level", "warning", "--timeout-graceful-shutdown", "3", "--backlog", "4096",
        ]  # fmt: skip
        if installed("uvloop"):
            command += ["--loop", "uvloop"]
        if installed("httptools"):
            command += ["--http", "httptools"]
        return command

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Stream(asyncio.Protocol):
    """One event-stream client: a raw socket and a regex over the bytes (no HTTP library)."""

    def __init__(self, clients: Clients, request: bytes) -> None:
        self.clients = clients
        self.request = request
        self.seen: set[int] = set()
        self.buffer = b""
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer + data
        if not self.head.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.head.set_result(buffer[:end])
            buffer = buffer[end + 4 :]
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self.buffer = buffer
            return
        clients, seen = self.clients, self.seen
        for match in EVENT.finditer(buffer, 0, cut + 1):
            sequence = int(match[1])
            if sequence in seen:
                clients.duplicates += 1
                continue
            seen.add(sequence)
            clients.received += 1
            clients.latencies.append(now - float(match[2]))
        self.buffer = buffer[cut + 2 :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionError("closed before the response head"))


class Clients:
    """N event-stream clients, all in this one process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: list[Stream] = []
        self.latencies = array("d")
        self.duplicates = 0
        self.received = 0

    async def open(self, count: int, path: str = f"/events?channel={CHANNEL}") -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(200)  # connect in waves: the listen backlog is finite
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

        async def one() -> None:
            async with gate:
                _, stream = await loop.create_connection(
                    lambda: Stream(self, request), "127.0.0.1", self.port
                )
                head = await stream.head
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"stream refused: {head[:200]!r}")
            self.streams.append(stream)

        await asyncio.gather(*(one() for _ in range(count)))

    async def close(self) -> None:
        for stream in self.streams:
            if stream.transport is not None:
                stream.transport.close()
        await asyncio.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank of sorted `values`: the smallest value with `fraction` of them at or below."""
    rank = math.ceil(fraction * len(values) - 1e-9)  # 1e-9: 0.07 * 100 is 7.000000000000001
    return values[min(len(values), max(rank, 1)) - 1]


async def fanout(design: str, subscribers: int, events: int, rate: float) -> dict[str, Any]:
    prefix = f"bench-fanout:{uuid.uuid4().hex[:8]}:"
    server = Server(design, prefix)
    client = connect_async(REDIS_URL)
    bus = AsyncBus(client, prefix=prefix)
    clients = Clients(server.port)
    try:
        started = time.perf_counter()
        await clients.open(subscribers)
        connect_s = time.perf_counter() - started
        await asyncio.sleep(0.5)
        load = os.getloadavg()[0]  # how busy the machine was: other work inflates latency
        cpu_before = cpu_seconds(server.pid)
        begin = time.perf_counter()
        for n in range(events):
            await bus.publish(CHANNEL, f"{n} {time.time():.6f}")
            await asyncio.sleep(max(0.0, begin + (n + 1) / rate - time.perf_counter()))
        expected = subscribers * events
        deadline = time.monotonic() + 30
        while clients.received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        cpu = cpu_seconds(server.pid) - cpu_before
        latencies = sorted(clients.latencies)
        return {
            "design": design,
            "subscribers": subscribers,
            "events": events,
            "expected_deliveries": expected,
            "received": clients.received,
            "lost": expected - clients.received,
            "duplicates": clients.duplicates,
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 2) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
            "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
            "server_cpu_s": round(cpu, 2),
            "deliveries_per_cpu_s": round(clients.received / cpu) if cpu > 0 else None,
            "connect_s": round(connect_s, 2),
            "load_average_1min": round(load, 2),
            "server_rss_mb": round(rss_bytes(server.pid) / 2**20, 1),
        }
    finally:
        await clients.close()
        server.stop()
        await cleanup(client, prefix)


async def memory(design: str, streams: int) -> dict[str, Any]:
    prefix = f"bench-fanout:{uuid.uuid4().hex[:8]}:"
    server = Server(design, prefix)
    client = connect_async(REDIS_URL)
    warm, clients = Clients(server.port), Clients(server.port)
    try:
        await warm.open(50)
        await warm.close()
        await asyncio.sleep(1.0)
        before = rss_bytes(server.pid)
        await clients.open(streams)
        await asyncio.sleep(1.5)
        grown = rss_bytes(server.pid) - before
        return {
            "design": design,
            "streams": streams,
            "rss_growth_mb": round(grown / 2**20, 1),
            "bytes_per_stream": round(grown / streams),
        }
    finally:
        await clients.close()
        server.stop()
        await cleanup(client, prefix)


async def cleanup(client: Any, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis_server": redis.Redis.from_url(REDIS_URL).info("server")["redis_version"],
        "packages": {
            name: installed(name)
            for name in ("falcon", "uvicorn", "uvloop", "httptools", "redis", "hiredis")
        },
        "note": "the load generator and other work share these cores with the server",
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="100,1000,5000")
    parser.add_argument("--designs", default="sidestream,naive")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to publish")
    parser.add_argument("--memory", default="1000,10000", help="idle streams for RSS")
    parser.add_argument(
        "--memory-designs", default="sidestream,naive,bare", help="bare: uvicorn + Falcon alone"
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    fd_limit = raise_fd_limit()
    events = round(args.rate * args.seconds)
    runs = []
    for count in (int(n) for n in args.subscribers.split(",")):
        for design in args.designs.split(","):
            result = await fanout(design, count, events, args.rate)
            print(json.dumps(result), flush=True)
            runs.append(result)
    memory_runs = []
    if not args.no_memory:
        for count in (int(n) for n in args.memory.split(",")):
            for design in args.memory_designs.split(","):
                if design == "naive" and count > 1000:
                    continue  # one Redis connection per stream: past Redis's maxclients
                result = await memory(design, count)
                print(json.dumps(result), flush=True)
                memory_runs.append(result)
    report = {
        "command": "python bench/fanout.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "fd_limit": fd_limit,
        "rate_per_s": args.rate,
        "events_per_run": events,
        "goals": {
            "1000 subscribers": "p99 <= 25 ms and >= 50,000 deliveries per server CPU-second",
            "5000 subscribers": "no loss and p99 <= 150 ms",
            "idle stream": "<= 10 KB of server memory",
        },
        "fanout": runs,
        "memory": memory_runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
