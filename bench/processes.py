"""Every core: the stream service on 1 and on 2 processes, 1,000 subscribers per process.

Not a test. Needs a real Redis at REDIS_URL (default redis://127.0.0.1:6379/0); everything runs on
loopback. Writes bench/results/processes.json, which the Scaling-out page renders.

    .venv/bin/python bench/processes.py                       # 1 and 2 processes, 3 rounds each
    .venv/bin/python bench/processes.py --processes 1,2 --subscribers 1000 --events 200

Method (the load generator, server process and helpers are bench/fanout.py's, imported):

1. Start N service processes (each `uvicorn fanout_service:app`, one worker, its own hub and its
   own one pub/sub connection), each on its own port as behind a load balancer, and open
   `subscribers` streams to each from this one asyncio process (raw sockets, a regex over the
   bytes), all on one channel.
2. Publish `events` events through Redis as fast as the bus publishes them (a burst; fewer than
   a subscriber's queue holds, so no one is cut off), each carrying its publish time.
3. Only PROBES streams per process read while the burst is delivered; they were opened last, so
   each server writes every event to them last. The other streams stop reading once open (their
   bytes wait in the kernel's socket buffers) and are read after the burst, to count every
   delivery. On two cores the generator must not compete with the servers for the CPU it
   measures: reading a million deliveries as they arrive costs about what writing them does.
   Deliveries per second = events x subscribers x N / (the probes' last event - first publish);
   p50/p99 are the probes' (the end of each fan-out), receive time minus publish time; lost =
   expected minus distinct received, over every stream.
4. Around each round: the servers' CPU seconds (utime + stime from /proc), this generator's own
   CPU seconds, and the 1-minute load average, because the cores are shared with the generator,
   Redis and whatever else runs on the machine. Each configuration runs `rounds` times, rounds
   of 1 and N processes alternating; the table reports the median round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fanout import (
    CHANNEL,
    REDIS_URL,
    Clients,
    Server,
    cleanup,
    cpu_seconds,
    machine,
    percentile,
    raise_fd_limit,
)

from sidestream.bus import AsyncBus, connect_async

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "processes.json"


PROBES = 20  # streams per process that read as events arrive (opened last: last in the fan-out)


async def one_round(processes: int, subscribers: int, events: int) -> dict[str, Any]:
    prefix = f"bench-processes:{uuid.uuid4().hex[:8]}:"
    servers = [Server("sidestream", prefix) for _ in range(processes)]
    client = connect_async(REDIS_URL)
    bus = AsyncBus(client, prefix=prefix)
    held = [Clients(server.port) for server in servers]
    probes = [Clients(server.port) for server in servers]
    groups = held + probes
    try:
        for group in held:
            await group.open(subscribers - PROBES)
            for stream in group.streams:  # read after the burst: its bytes wait in the kernel
                stream.transport.pause_reading()
        for group in probes:
            await group.open(PROBES)
        await asyncio.sleep(1.0)
        load = os.getloadavg()[0]
        cpu_before = [cpu_seconds(server.pid) for server in servers]
        own_before = time.process_time()
        begin = time.perf_counter()
        for n in range(events):
            await bus.publish(CHANNEL, f"{n} {time.time():.6f}")
        published = time.perf_counter()
        expected = events * subscribers * processes
        # Each probe is the last stream its server writes an event to: once every probe has every
        # event, the servers have written every delivery.
        deadline = time.monotonic() + 60
        while sum(g.received for g in probes) < events * PROBES * processes:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.002)
        done = time.perf_counter()
        cpu = [round(cpu_seconds(s.pid) - b, 2) for s, b in zip(servers, cpu_before, strict=True)]
        own = time.process_time() - own_before
        for group in held:  # now count (and check) what the held streams were sent
            for stream in group.streams:
                stream.transport.resume_reading()
        deadline = time.monotonic() + 60
        while sum(g.received for g in groups) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        received = sum(g.received for g in groups)
        latencies = sorted(x for g in probes for x in g.latencies)
        return {
            "processes": processes,
            "subscribers_per_process": subscribers,
            "events": events,
            "expected_deliveries": expected,
            "received": received,
            "lost": expected - received,
            "duplicates": sum(g.duplicates for g in groups),
            "seconds": round(done - begin, 3),
            "publish_seconds": round(published - begin, 3),
            "deliveries_per_s": round(received / (done - begin)),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
            "server_cpu_s": cpu,
            "deliveries_per_server_cpu_s": round(received / sum(cpu)) if sum(cpu) else None,
            "generator_cpu_s": round(own, 2),
            # Cores the servers and the generator kept busy (of os.cpu_count()), Redis not counted.
            "cores_busy": round((sum(cpu) + own) / (done - begin), 2),
            "probes_per_process": PROBES,
            "load_average_1min": round(load, 2),
        }
    finally:
        for group in groups:
            await group.close()
        for server in servers:
            server.stop()
        await cleanup(client, prefix)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median deliveries per second (the lower one of an even count)."""
    ordered = sorted(rounds, key=lambda r: r["deliveries_per_s"])
    return ordered[(len(ordered) - 1) // 2]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--subscribers", type=int, default=1000, help="per process")
    parser.add_argument("--events", type=int, default=200, help="per round (< queue size)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    fd_limit = raise_fd_limit()
    counts = [int(n) for n in args.processes.split(",")]
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for _ in range(args.rounds):
        for n in counts:
            result = await one_round(n, args.subscribers, args.events)
            print(json.dumps(result), flush=True)
            rounds[n].append(result)
    summary = [median_round(rounds[n]) for n in counts]
    base = summary[0]["deliveries_per_s"]
    for row in summary:
        row["speedup"] = round(row["deliveries_per_s"] / base, 2)
        row["rounds_deliveries_per_s"] = [r["deliveries_per_s"] for r in rounds[row["processes"]]]
        row["rounds_lost"] = sum(r["lost"] for r in rounds[row["processes"]])
    report = {
        "command": "python bench/processes.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "fd_limit": fd_limit,
        "goals": {"2 processes": ">= 1.8x the deliveries per second of 1, no loss"},
        "load_average_1min": [r["load_average_1min"] for n in counts for r in rounds[n]],
        "summary": summary,
        "rounds": [r for n in counts for r in rounds[n]],
        "median_speedup": summary[-1]["speedup"],
        "per_cpu_ratio": round(
            summary[-1]["deliveries_per_server_cpu_s"] / summary[0]["deliveries_per_server_cpu_s"],
            2,
        ),
        "spread": {
            str(n): round(statistics.pstdev([r["deliveries_per_s"] for r in rounds[n]]))
            for n in counts
        },
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
