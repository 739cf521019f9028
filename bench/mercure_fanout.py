"""Fan-out through the Mercure route next to `/events`, from one process and from two.

Not a test. Needs a real Redis at REDIS_URL (default redis://127.0.0.1:6379/0); everything runs on
loopback. Writes bench/results/mercure.json, which docs/mercure.md renders as a table.

    .venv/bin/python bench/mercure_fanout.py
    .venv/bin/python bench/mercure_fanout.py --subscribers 200 --events 50

Method (the same as bench/fanout.py, whose server processes, clients and CPU accounting it reuses):
start the service (bench/mercure_service.py: `create_app` plus the Mercure route) in one or two
uvicorn processes; open N streams from this one asyncio process with raw sockets, split evenly
across the processes, either `GET /events?channel=bench` or `GET /.well-known/mercure?match=bench`
(anonymous: public updates); publish `rate` updates per second, each carrying its publish time,
`/events` ones through the bus's script, Mercure ones as `POST /.well-known/mercure` to the
processes in turn (so the Mercure figures include the publish requests); count distinct deliveries
and the latency; divide deliveries by the server processes' CPU time.
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

import httpx
import jwt

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from fanout import (  # noqa: E402
    MODULES,
    REDIS_URL,
    Clients,
    Server,
    cleanup,
    cpu_seconds,
    machine,
    percentile,
    raise_fd_limit,
    rss_bytes,
)

from sidestream.bus import AsyncBus, connect_async  # noqa: E402

RESULTS = BENCH / "results" / "mercure.json"
KEY = "bench-mercure-publisher-key-32-bytes!"
HUB_URL = "https://hub.example.com/.well-known/mercure"
ISSUER = "https://bench.example.com"
PATHS = {"events": "/events?channel=bench", "mercure": "/.well-known/mercure?match=bench"}
MODULES["mercure"] = "mercure_service"  # create_app plus the Mercure route


def publisher_token() -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": HUB_URL, "sub": ISSUER, "client_id": ISSUER, "iat": now,
        "exp": now + 3600, "jti": str(uuid.uuid4()),
        "authorization_details": [
            {"type": "https://mercure.rocks/authorization-detail", "actions": ["publish"],
             "topics": [{"match": "bench"}]}
        ],
    }  # fmt: skip
    return jwt.encode(claims, KEY, algorithm="HS256", headers={"typ": "at+jwt"})


async def run(route: str, processes: int, subscribers: int, events: int, rate: float) -> dict:
    prefix = f"bench-mercure:{uuid.uuid4().hex[:8]}:"
    servers = [
        Server("mercure", prefix, extra_env={"BENCH_MERCURE_KEY": KEY}) for _ in range(processes)
    ]
    client = connect_async(REDIS_URL)
    bus = AsyncBus(client, prefix=prefix)
    groups = [Clients(server.port) for server in servers]
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "authorization": f"Bearer {publisher_token()}",
    }
    try:
        for index, clients in enumerate(groups):
            share = subscribers // processes + (index < subscribers % processes)
            await clients.open(share, PATHS[route])
        await asyncio.sleep(0.5)
        load = os.getloadavg()[0]
        cpu_before = [cpu_seconds(server.process.pid) for server in servers]
        async with httpx.AsyncClient() as http:
            begin = time.perf_counter()
            for n in range(events):
                data = f"{n} {time.time():.6f}"
                if route == "events":
                    await bus.publish("bench", data)
                else:
                    port = servers[n % processes].port
                    answer = await http.post(
                        f"http://127.0.0.1:{port}/.well-known/mercure",
                        content=f"topic=bench&data={data.replace(' ', '+')}".encode(),
                        headers=headers,
                    )
                    answer.raise_for_status()
                await asyncio.sleep(max(0.0, begin + (n + 1) / rate - time.perf_counter()))
        expected = subscribers * events
        deadline = time.monotonic() + 30
        while sum(c.received for c in groups) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        cpu = sum(cpu_seconds(s.process.pid) - b for s, b in zip(servers, cpu_before, strict=True))
        received = sum(c.received for c in groups)
        latencies = sorted(x for c in groups for x in c.latencies)
        return {
            "route": route,
            "processes": processes,
            "subscribers": subscribers,
            "events": events,
            "rate_per_s": rate,
            "expected_deliveries": expected,
            "received": received,
            "lost": expected - received,
            "duplicates": sum(c.duplicates for c in groups),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 2) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
            "server_cpu_s": round(cpu, 2),
            "deliveries_per_cpu_s": round(received / cpu) if cpu > 0 else None,
            "load_average_1min": round(load, 2),
            "server_rss_mb": [round(rss_bytes(s.process.pid) / 2**20, 1) for s in servers],
        }
    finally:
        for clients in groups:
            await clients.close()
        for server in servers:
            server.stop()
        await cleanup(client, prefix)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    raise_fd_limit()
    runs = []
    for route, processes in (("events", 1), ("mercure", 1), ("mercure", 2)):
        result = await run(route, processes, args.subscribers, args.events, args.rate)
        print(json.dumps(result), flush=True)
        runs.append(result)
    document = {
        "benchmark": "bench/mercure_fanout.py",
        "parameters": vars(args),
        "machine": machine(),
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
