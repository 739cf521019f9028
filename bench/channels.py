"""One reader per channel: what an event costs the service when it is not shared.

Not a test. bench/fanout.py measures one channel read by many streams: each event is read from
Redis once and written many times. A per-user channel is the other end: each event is read from
Redis, decoded and encoded for a single stream. This run opens `--channels` streams, each on its
own channel, in one service process (bench/fanout.py's server and raw-socket clients), publishes
`--rate` events per second spread over the channels, and reports loss, latency and events per
second of the server's CPU time. Needs a real Redis at REDIS_URL (default 127.0.0.1:6379).

    .venv/bin/python bench/channels.py    # about 20 s; writes bench/results/channels.json
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

from fanout import REDIS_URL, Clients, Server, cleanup, cpu_seconds, percentile, raise_fd_limit

from sidestream.bus import AsyncBus, connect_async

RESULTS = Path(__file__).resolve().parent / "results" / "channels.json"


async def run(channels: int, rate: float, seconds: float) -> dict[str, object]:
    prefix = f"bench-channels:{uuid.uuid4().hex[:8]}:"
    server = Server("sidestream", prefix)
    client = connect_async(REDIS_URL)
    bus = AsyncBus(client, prefix=prefix)
    clients = Clients(server.port)
    try:
        await asyncio.gather(*(clients.open(1, f"/events?channel=c{n}") for n in range(channels)))
        await asyncio.sleep(0.5)
        events = round(rate * seconds)
        cpu_before, begin = cpu_seconds(server.pid), time.perf_counter()
        for n in range(events):
            await bus.publish(f"c{n % channels}", f"{n} {time.time():.6f}")
            await asyncio.sleep(max(0.0, begin + (n + 1) / rate - time.perf_counter()))
        deadline = time.monotonic() + 30
        while clients.received < events and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        cpu = cpu_seconds(server.pid) - cpu_before
        latencies = sorted(clients.latencies)
        return {
            "channels": channels,
            "streams_per_channel": 1,
            "events": events,
            "rate_per_s": rate,
            "received": clients.received,
            "lost": events - clients.received,
            "duplicates": clients.duplicates,
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "server_cpu_s": round(cpu, 2),
            "events_per_cpu_s": round(clients.received / cpu),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
    finally:
        await clients.close()
        server.stop()
        await cleanup(client, prefix)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second, in all")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    raise_fd_limit()
    result = await run(args.channels, args.rate, args.seconds)
    report = {
        "what": "one service process, one stream per channel: events per second of server CPU",
        "command": "python bench/channels.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "run": result,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
