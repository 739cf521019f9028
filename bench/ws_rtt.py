"""WebSocket round trip: a client's message → the service → Redis → every socket in the room.

Not a test. Needs a real Redis at REDIS_URL (default redis://127.0.0.1:6379/0); everything runs on
loopback. Writes bench/results/websocket.json, which the docs include as it is.

    .venv/bin/python bench/ws_rtt.py                       # the full run (under a minute)
    .venv/bin/python bench/ws_rtt.py --sockets 100 --memory 200

Method, per socket count N and per-message compression on or off:

1. Start one uvicorn worker in its own process (as bench/fanout.py does: uvloop and httptools
   when installed, no access log) serving `create_app` (bench/ws_service.py), with
   `--ws-per-message-deflate` as given.
2. Open N sockets to `/ws?channel=bench` from this one asyncio process with the `websockets`
   client (one connection object per socket), and wait for each one's `ready` frame.
3. One socket sends `rate` messages per second; each goes through the service's publish into
   Redis and back through the hub to all N sockets. Every receiver records receive time minus
   send time (one clock: the same process). Loss = N * messages minus distinct deliveries.
4. Read the server's CPU time from /proc before the first message and after the last delivery.

Memory: open N idle sockets and divide the server's RSS growth by N (after a warm-up of 50), for
sidestream with compression off and on, and for a bare ASGI app that only accepts and waits
(bench/bare_asgi_service.py: the floor that uvicorn and websockets set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fanout import (  # the fan-out bench's process and /proc helpers
    MODULES,
    Server,
    cpu_seconds,
    machine,
    percentile,
    raise_fd_limit,
    rss_bytes,
)
from websockets.asyncio.client import ClientConnection, connect

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "websocket.json"
CHANNEL = "bench"
MODULES["websocket"] = "ws_service"
MODULES["websocket-bare"] = "bare_asgi_service"  # the floor: uvicorn + websockets alone


class Room:
    """N sockets in one channel, all in this process, and what they received."""

    def __init__(self, url: str, compression: str | None) -> None:
        self.url = url
        self.compression = compression
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.seen: set[tuple[int, int]] = set()
        self.duplicates = 0

    async def open(self, count: int) -> None:
        gate = asyncio.Semaphore(100)  # connect in waves: the listen backlog is finite

        async def one() -> None:
            async with gate:
                ws = await connect(self.url, compression=self.compression, proxy=None,
                                   ping_interval=None, max_queue=None)  # fmt: skip
                ready = json.loads(await ws.recv())
                assert ready["type"] == "ready", ready
            self.sockets.append(ws)

        await asyncio.gather(*(one() for _ in range(count)))

    def listen(self) -> None:
        for index, ws in enumerate(self.sockets):
            self.readers.append(asyncio.create_task(self.read(index, ws)))

    async def read(self, index: int, ws: ClientConnection) -> None:
        async for text in ws:
            now = time.perf_counter()
            frame = json.loads(text)
            if frame["type"] != "event":
                continue  # the sender's ack
            sequence = int(frame["data"])
            key = (index, sequence)
            if key in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(key)
            self.latencies.append(now - self.sent[sequence])

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


def start(deflate: bool, prefix: str, design: str = "websocket") -> tuple[Server, str]:
    os.environ["UVICORN_WS_PER_MESSAGE_DEFLATE"] = "true" if deflate else "false"
    server = Server(design, prefix)
    return server, f"ws://127.0.0.1:{server.port}/ws?channel={CHANNEL}"


async def rtt(sockets: int, deflate: bool, messages: int, rate: float) -> dict[str, Any]:
    server, url = start(deflate, f"bench-ws:{uuid.uuid4().hex[:8]}:")
    room = Room(url, "deflate" if deflate else None)
    try:
        await room.open(sockets)
        room.listen()
        sender = room.sockets[0]
        load = os.getloadavg()[0]
        cpu_before = cpu_seconds(server.pid)
        for sequence in range(messages):
            room.sent[sequence] = time.perf_counter()
            await sender.send(json.dumps({"channel": CHANNEL, "data": str(sequence)}))
            await asyncio.sleep(1 / rate)
        expected = sockets * messages
        deadline = time.monotonic() + 10
        while len(room.seen) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        await room.close()
        server.stop()
    latencies = sorted(room.latencies)
    return {
        "sockets": sockets,
        "per_message_deflate": deflate,
        "messages": messages,
        "deliveries_expected": expected,
        "delivered": len(room.seen),
        "loss": expected - len(room.seen),
        "duplicates": room.duplicates,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "server_cpu_s": round(cpu, 2),
        "load_average": round(load, 2),
    }


async def memory(sockets: int, deflate: bool, design: str) -> dict[str, Any]:
    server, url = start(deflate, f"bench-ws:{uuid.uuid4().hex[:8]}:", design)
    warm, room = Room(url, None), Room(url, "deflate" if deflate else None)
    try:
        await warm.open(50)
        await asyncio.sleep(0.5)
        before = rss_bytes(server.pid)
        await room.open(sockets)
        await asyncio.sleep(1.0)
        growth = rss_bytes(server.pid) - before
    finally:
        await room.close()
        await warm.close()
        server.stop()
    return {
        "design": "sidestream" if design == "websocket" else "bare",
        "sockets": sockets,
        "per_message_deflate": deflate,
        "rss_growth_mb": round(growth / 2**20, 1),
        "bytes_per_socket": round(growth / sockets),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", default="100,1000")
    parser.add_argument("--deflate", default="off,on", help="per-message compression runs")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to send")
    parser.add_argument("--memory", default="1000", help="idle sockets for RSS")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    fd_limit = raise_fd_limit()
    messages = round(args.rate * args.seconds)
    modes = [mode == "on" for mode in args.deflate.split(",")]
    runs, memory_runs = [], []
    for count in (int(n) for n in args.sockets.split(",")):
        for deflate in modes:
            result = await rtt(count, deflate, messages, args.rate)
            print(json.dumps(result), flush=True)
            runs.append(result)
    for count in (int(n) for n in args.memory.split(",") if n):
        for design, deflate in [("websocket", mode) for mode in modes] + [
            ("websocket-bare", False)
        ]:
            result = await memory(count, deflate, design)
            print(json.dumps(result), flush=True)
            memory_runs.append(result)
    report = {
        "command": "python bench/ws_rtt.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "fd_limit": fd_limit,
        "rate_per_s": args.rate,
        "messages_per_run": messages,
        "round_trip": runs,
        "memory": memory_runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    asyncio.run(main())
