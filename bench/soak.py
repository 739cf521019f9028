"""Soak: many streams held open for minutes; does the service's footprint stay flat?

Not a test. Needs a real Redis at REDIS_URL (default redis://127.0.0.1:6379/0); everything runs on
loopback. Writes bench/results/soak.json, which docs/guarantees.md renders through the bench hook.

    .venv/bin/python bench/soak.py                          # the full run: 1,000 streams, 10 min
    .venv/bin/python bench/soak.py --streams 50 --minutes 1 --output /tmp/soak.json

Method:

1. Start the auth example's stream service (examples/auth/service.py, as its docstring runs it:
   one uvicorn worker, `SIDESTREAM_TOKEN_KEY` and `REDIS_URL`) in its own process. Its Redis URL
   carries `client_name=`, a name unique to this run, so `CLIENT LIST` tells its connections
   from everyone else's on the shared Redis. The channels are this run's own
   (`user:soak-<run>-<n>`).
2. Open `streams` event streams from this one asyncio process (raw sockets, a regex over the
   bytes, as bench/fanout.py does), each with a token of its own for one of `channels` channels,
   spread evenly, and wait until every one has its response head.
3. Hold them for `minutes` while a publisher sends `rate` events per second (the bus's publish
   script, round robin over the channels) and every `interval` seconds sample the service
   process's RSS and open file descriptors (/proc/<pid>) and the Redis connections named for it.
4. Fit a least-squares slope per minute to each series, over the samples after the first
   `warmup` seconds (allocator pools and the first Redis connections settle then); report first,
   last, min and max too. Then stop publishing, wait for the last deliveries, and count per stream
   events lost, duplicated and out of order against the ids the publisher was acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis

from sidestream.bus import AsyncBus, connect_async
from sidestream.testing import free_port, stop_process
from sidestream.tokens import StreamTokens

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import machine, raise_fd_limit, rss_bytes  # the fan-out bench's /proc helpers

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "soak.json"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
EVENT = re.compile(rb"data: (\d+) (\d+)\n")


class Stream(asyncio.Protocol):
    """One event-stream client on a raw socket: the sequence numbers it got, in order."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.got: list[int] = []
        self.buffer = b""
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.transport: Any = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
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
        self.got += [int(match[2]) for match in EVENT.finditer(buffer, 0, cut + 1)]
        self.buffer = buffer[cut + 2 :]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.head.done():
            self.head.set_exception(ConnectionError("closed before the response head"))


def start_service(key: str, client_name: str, log_path: Path) -> subprocess.Popen[bytes]:
    port = free_port()
    env = {
        **os.environ,
        "SIDESTREAM_TOKEN_KEY": key,
        "REDIS_URL": f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}client_name={client_name}",
    }
    command = [
        sys.executable, "-m", "uvicorn", "service:app", "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--timeout-graceful-shutdown", "3", "--backlog", "4096",
    ]  # fmt: skip
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=ROOT / "examples" / "auth", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    process.port = port  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start:\n{log_path.read_text()}") from None
            time.sleep(0.1)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def redis_connections(admin: redis.Redis, client_name: str) -> int:
    return sum(1 for client in admin.client_list() if client.get("name") == client_name)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60 if var else 0.0


def summary(samples: list[dict[str, float]], name: str, warmup: float) -> dict[str, float]:
    values = [s[name] for s in samples]
    settled = [(s["t"], s[name]) for s in samples if s["t"] >= warmup]
    return {
        "first": values[0],
        "last": values[-1],
        "min": min(values),
        "max": max(values),
        "slope_per_min": round(slope_per_minute(settled), 3),
        "samples_fitted": len(settled),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:10]
    client_name = f"sidestream-soak-{run_id}"
    key = secrets.token_urlsafe(32)
    tokens = StreamTokens(key)
    channels = [f"user:soak-{run_id}-{n}" for n in range(args.channels)]
    log_path = Path(f"/tmp/sidestream-soak-{run_id}.log")
    admin = redis.Redis.from_url(REDIS_URL)
    load_start = os.getloadavg()
    service = start_service(key, client_name, log_path)
    port: int = service.port  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    streams: list[tuple[int, Stream]] = []
    gate = asyncio.Semaphore(100)
    lifetime = args.minutes * 60 + 600  # the tokens outlive the run: no expiry closes a stream

    async def open_one(number: int) -> None:
        channel = number % args.channels
        token = tokens.issue(f"soak-{number}", subscribe=[channels[channel]], lifetime=lifetime)
        query = urlencode({"channel": channels[channel], "token": token})
        request = (
            f"GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        async with gate:
            _, stream = await loop.create_connection(lambda: Stream(request), "127.0.0.1", port)
            head = await asyncio.wait_for(stream.head, 30)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"stream refused: {head[:300]!r}")
        streams.append((channel, stream))

    bus_client = connect_async(REDIS_URL)
    bus = AsyncBus(bus_client)
    acked: list[list[int]] = [[] for _ in channels]
    publish_errors = 0
    stop = asyncio.Event()

    async def publish() -> None:
        nonlocal publish_errors
        sequence = 0
        period = 1 / args.rate
        next_at = loop.time()
        while not stop.is_set():
            channel = sequence % args.channels
            try:
                await bus.publish(channels[channel], f"{channel} {sequence}")
                acked[channel].append(sequence)
            except (redis.RedisError, OSError):
                publish_errors += 1
            sequence += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    samples: list[dict[str, float]] = []
    try:
        opened_at = time.monotonic()
        await asyncio.gather(*(open_one(n) for n in range(args.streams)))
        open_seconds = time.monotonic() - opened_at
        print(f"{len(streams)} streams open in {open_seconds:.1f} s", flush=True)
        publisher = asyncio.create_task(publish())
        started = time.monotonic()
        end = started + args.minutes * 60
        while True:
            now = time.monotonic()
            sample = {
                "t": round(now - started, 1),
                "rss_kb": rss_bytes(service.pid) / 1024,
                "fds": open_fds(service.pid),
                "redis_connections": redis_connections(admin, client_name),
                "open_client_streams": sum(1 for _, s in streams if not s.closed),
                "load_1m": os.getloadavg()[0],
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if now >= end:
                break
            await asyncio.sleep(min(args.interval, max(0.0, end - time.monotonic())))
        stop.set()
        await publisher
        await asyncio.sleep(5)  # the last deliveries
        lost = duplicated = out_of_order = 0
        for channel, stream in streams:
            expected = acked[channel]
            got = stream.got
            lost += len(set(expected) - set(got))
            duplicated += len(got) - len(set(got))
            out_of_order += sum(1 for a, b in itertools.pairwise(got) if b <= a)
        published = sum(len(ids) for ids in acked)
        delivered = sum(len(stream.got) for _, stream in streams)
        closed_early = sum(1 for _, stream in streams if stream.closed)
    finally:
        for _, stream in streams:
            if stream.transport is not None:
                stream.transport.close()
        stop_process(service, timeout=20)
        for name in channels:
            await bus_client.delete(bus.stream_key(name))
        await bus_client.aclose()
        admin.close()
    log_text = log_path.read_text(errors="replace")
    return {
        "command": " ".join(["bench/soak.py", *sys.argv[1:]]),
        "parameters": {
            "streams": args.streams,
            "channels": args.channels,
            "minutes": args.minutes,
            "sample_interval_s": args.interval,
            "warmup_s": args.warmup,
            "publish_rate_per_s": args.rate,
            "service": "examples/auth/service.py on one uvicorn worker",
        },
        "machine": machine(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "open_seconds": round(open_seconds, 1),
        "rss_kb": summary(samples, "rss_kb", args.warmup),
        "fds": summary(samples, "fds", args.warmup),
        "redis_connections": summary(samples, "redis_connections", args.warmup),
        "delivery": {
            "published": published,
            "publish_errors": publish_errors,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "streams_closed_early": closed_early,
        },
        "service_log_tracebacks": log_text.count("Traceback"),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the fits")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second, in all")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = {"fd_limit": raise_fd_limit(), **asyncio.run(run(args))}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
