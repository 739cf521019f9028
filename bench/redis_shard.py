"""Redis's side of scaling out: how many events one Redis shard publishes per second of its CPU.

Not a test. Starts a redis-server of its own on a free loopback port (no persistence; pub/sub
output buffers unlimited, so that a subscriber that falls behind is never dropped) and drives it
with redis-benchmark, the pipelined load generator Redis ships. Around each run it reads the
server's CPU time from /proc/<pid>/stat (utime + stime): commands per second of *server* CPU is
the figure that does not depend on how busy the two cores are with the generator and the
subscribers. Redis runs commands on one thread, so one shard saturates near one CPU-second per
second.

Cases, each with a 200-byte event on one channel:

- `publish_script`: what `Bus.publish` sends, EVALSHA of the bus's own Lua script (XADD MAXLEN ~
  1000, then PUBLISH), with 1 and with 4 subscribed connections (one per service process);
- `publish`: PUBLISH alone (`Bus.publish_live`, no history), 1 subscriber;
- `spublish`: SPUBLISH alone (sharded pub/sub, Redis 7), 1 shard-channel subscriber;
- `xadd`: XADD MAXLEN ~ 1000 alone (the history half of a publish).

Subscribers are raw sockets that count the messages they receive, so each run also checks that
every publish reached every subscriber. The memory one retained event costs in its Stream is
`MEMORY USAGE` of the key divided by its length.

    .venv/bin/python bench/redis_shard.py   # a minute or two; writes bench/results/redis_shard.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from fanout import cpu_seconds
from longpoll_latency import private_redis

from sidestream.bus import _PUBLISH_LUA, Bus  # the exact script Bus.publish runs

RESULTS = Path(__file__).resolve().parent / "results" / "redis_shard.json"
CONNECTIONS = 8  # redis-benchmark's client connections (publishers)
TARGET_CPU_S = (
    1.5  # size each run to about this much server CPU (the clock ticks 100 times a second)
)
DATA = json.dumps({"type": "order.updated", "id": 123456, "status": "shipped", "note": "x" * 120})
MAXLEN = 1000


@dataclass(frozen=True)
class Case:
    name: str
    command: list[str]
    subscribers: int = 1
    subscribe: str = "SUBSCRIBE"
    pipeline: int = 16  # commands per round trip; 1 is one publish per request, as an API sends


class Subscriber(threading.Thread):
    """A raw RESP connection subscribed to one channel, counting the messages it receives."""

    def __init__(self, port: int, command: str, channel: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        kind = {"SUBSCRIBE": b"message", "SSUBSCRIBE": b"smessage"}[command]
        self.marker = b"\r\n" + kind + b"\r\n"
        self.received = 0
        self.sock.sendall(f"{command} {channel}\r\n".encode())
        confirmation = self.sock.recv(4096)
        assert command.lower().encode() in confirmation, confirmation
        self.start()

    def run(self) -> None:
        tail = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 20):
                window = tail + chunk
                self.received += window.count(self.marker)
                tail = window[-(len(self.marker) - 1) :]

    def close(self) -> None:
        self.sock.close()


def benchmark(port: int, requests: int, pipeline: int, *command: str) -> float:
    """Run redis-benchmark; returns its requests per second (wall clock)."""
    output = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests),
         "-c", str(CONNECTIONS), "-P", str(pipeline), "--csv", *command],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    # The last line is "<test>","rps",... and the test name (the command) may hold quotes and
    # commas: the seven numbers are taken from the right.
    return float(output.strip().splitlines()[-1].rsplit(",", 7)[1].strip('"'))


def run_case(port: int, pid: int, requests: int, case: Case) -> dict[str, Any]:
    client = redis.Redis(port=port)
    client.flushall()  # our own private server
    client.config_resetstat()
    listeners = [Subscriber(port, case.subscribe, "live:{orders}") for _ in range(case.subscribers)]
    try:
        before = cpu_seconds(pid)
        wall_rps = benchmark(port, requests, case.pipeline, *case.command)
        # redis-benchmark may send a few more than asked: Redis's own count is the one to use.
        calls = client.info("commandstats")[f"cmdstat_{case.command[0].lower()}"]["calls"]
        deadline = time.monotonic() + 60
        while any(s.received < calls for s in listeners) and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu = cpu_seconds(pid) - before
        received = [s.received for s in listeners]
    finally:
        for listener in listeners:
            listener.close()
        client.close()
    assert all(count == calls for count in received), (received, calls)
    return {
        "commands": calls,
        "wall_rps": round(wall_rps),
        "server_cpu_s": round(cpu, 2),
        "per_server_cpu_s": round(calls / cpu) if cpu > 0 else None,
        "delivered_per_subscriber": received,
    }


def stream_bytes_per_event(port: int) -> dict[str, Any]:
    client = redis.Redis(port=port)
    client.flushall()
    bus = Bus(client, maxlen=MAXLEN)
    for _ in range(MAXLEN):
        bus.publish("orders", DATA)
    key = bus.stream_key("orders")
    length, usage = client.xlen(key), client.memory_usage(key, samples=0)
    client.close()
    assert usage is not None
    return {"events": length, "bytes": usage, "bytes_per_event": round(usage / length)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrate", type=int, default=20_000, help="commands in the sizing run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median kept)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    # Slow subscribers must not be disconnected mid-measurement: no pub/sub output limit.
    with private_redis("--client-output-buffer-limit", "pubsub 0 0 0") as server:
        port, pid = server.port, server.pid
        client = redis.Redis(port=port)
        sha = client.script_load(_PUBLISH_LUA)
        version = client.info("server")["redis_version"]
        client.close()
        script = ["EVALSHA", sha, "1", "stream:{orders}", str(MAXLEN), DATA, "", "live:{orders}"]
        xadd = ["XADD", "stream:{orders}", "MAXLEN", "~", str(MAXLEN), "*", "data", DATA]
        cases = [
            Case("publish_script_1_subscriber", script),
            Case("publish_script_4_subscribers", script, subscribers=4),
            Case("publish_script_4_subscribers_unpipelined", script, subscribers=4, pipeline=1),
            Case("publish_1_subscriber", ["PUBLISH", "live:{orders}", DATA]),
            Case(
                "spublish_1_subscriber", ["SPUBLISH", "live:{orders}", DATA], subscribe="SSUBSCRIBE"
            ),
            Case("xadd", [*xadd, "event", "", "prev", "0-0"], subscribers=0),
        ]
        for case in cases:
            # A short run to find the rate, then runs sized to TARGET_CPU_S of server CPU.
            rate = run_case(port, pid, args.calibrate, case)["per_server_cpu_s"] or args.calibrate
            requests = min(max(args.calibrate, int(rate * TARGET_CPU_S)), 3_000_000)
            runs = [run_case(port, pid, requests, case) for _ in range(args.repeat)]
            rates = [run["per_server_cpu_s"] for run in runs]
            results[case.name] = {
                "command": case.command[0],
                "subscribers": case.subscribers,
                "pipeline": case.pipeline,
                "per_server_cpu_s_median": round(statistics.median(rates)),
                "runs": runs,
            }
            print(case.name, rates, flush=True)
        memory = stream_bytes_per_event(port)
    report = {
        "what": "commands one Redis process runs per second of its own CPU (one shard's ceiling)",
        "command": "python bench/redis_shard.py " + " ".join(sys.argv[1:]),
        "event_bytes": len(DATA),
        "stream_maxlen": MAXLEN,
        "load": f"redis-benchmark -c {CONNECTIONS} on loopback; subscribers count every message",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "redis_server": version,
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "cases": results,
        "stream_memory": memory,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
