"""Publishing on Redis Cluster: the bus's publish script on 3 shards against 1 shard.

Not a test. Starts its own clusters (sidestream.cluster_testing.LocalCluster on free loopback
ports: one master holding all 16,384 slots, then three masters) and removes them at the end.
Writes bench/results/cluster_publish.json, which the Scaling-out page renders.

    .venv/bin/python bench/cluster_publish.py                 # about a minute
    .venv/bin/python bench/cluster_publish.py --requests 300000 --rounds 5

Method: the load is what `Bus.publish` sends on a cluster, `EVALSHA` of its script (XADD MAXLEN ~
1000 on the channel's stream, then SPUBLISH on its live channel, both in one slot) with a 200-byte
event, on 100,000 channels spread over every slot. redis-benchmark drives it (`--cluster`: each
command goes to the master of its slot; `-c` connections in all, pipelined `-P`), the C load
generator Redis ships, so that the Python publisher's own cost does not hide Redis's. Redis's own
command counts (INFO commandstats) are the figures; around each run each master's CPU seconds are
read from /proc (utime + stime, bench/fanout.py's helper).

Two figures per configuration, because every shard here shares the same two cores with the
others and with the load generator:

- **publishes per second (wall clock)**: what this machine did;
- **publishes per second if each shard has a core**: each master's publishes per second of its
  own CPU time, added up. Redis runs commands on one thread, so a master with a core of its own
  does at most its figure; the sum is the cluster's when the channels spread evenly over the
  masters (100,000 random channels do; one hot channel would not). It is not the wall-clock
  figure: redis-benchmark here spreads its load over the masters unevenly, as each gets CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from fanout import cpu_seconds, installed

from sidestream.bus import _SPUBLISH_LUA
from sidestream.cluster_testing import LocalCluster

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "cluster_publish.json"
DATA = "x" * 200
CHANNELS = 100_000


def run(cluster: LocalCluster, requests: int, connections: int, pipeline: int) -> dict[str, Any]:
    masters = cluster.masters()
    sha = ""
    for port in masters:
        client = cluster.node(port).client()
        sha = client.script_load(_SPUBLISH_LUA)
        client.config_resetstat()
        client.close()
    pids = {port: cluster.node(port).process.pid for port in masters}
    load = os.getloadavg()[0]
    before = {port: cpu_seconds(pid) for port, pid in pids.items()}
    # redis-benchmark's --cluster mode wants 3 masters or more; one master holds every slot,
    # so there every command is served where it is sent ({tag} stays a literal hash tag).
    cluster_mode = ["--cluster"] if len(masters) > 1 else []
    command = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(masters[0]), *cluster_mode,
        "-c", str(connections), "-P", str(pipeline), "-n", str(requests), "-r", str(CHANNELS),
        "--csv", "EVALSHA", sha, "1", "bench:stream:{tag}:__rand_int__", "1000", DATA, "",
        "bench:live:{tag}:__rand_int__",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr[-500:]}")
    cpu = {port: round(cpu_seconds(pid) - before[port], 2) for port, pid in pids.items()}
    calls: dict[int, int] = {}
    for port in masters:
        client = cluster.node(port).client()
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        calls[port] = int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))
        client.close()
    total = sum(calls.values())
    return {
        "shards": len(masters),
        "publishes": total,
        "per_shard": list(calls.values()),
        "wall_s": round(wall, 2),
        "publishes_per_s": round(total / wall),
        "shard_cpu_s": list(cpu.values()),
        # Each master's publishes per second of its own CPU, added up: the cluster's rate when
        # every master has a core of its own (the generator here spreads unevenly over them).
        "publishes_per_s_core_each": round(
            sum(calls[port] / cpu[port] for port in masters if cpu[port] > 0)
        ),
        "load_average_1min": round(load, 2),
    }


def median(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000, help="publishes per round")
    parser.add_argument("--connections", type=int, default=12, help="redis-benchmark -c")
    parser.add_argument("--pipeline", type=int, default=16, help="redis-benchmark -P")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    rounds: dict[int, list[dict[str, Any]]] = {1: [], 3: []}
    for shards in rounds:
        with LocalCluster(masters=shards) as cluster:
            for _ in range(args.rounds):
                result = run(cluster, args.requests, args.connections, args.pipeline)
                print(json.dumps(result), flush=True)
                rounds[shards].append(result)
    summary = []
    for runs in rounds.values():
        row = dict(median(runs, "publishes_per_s"))
        row["publishes_per_s_core_each"] = median(runs, "publishes_per_s_core_each")[
            "publishes_per_s_core_each"
        ]
        summary.append(row)
    one, three = summary
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    report = {
        "command": "python bench/cluster_publish.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "redis_server": version.split("v=", 1)[1].split()[0] if "v=" in version else "",
            "redis_py": redis.__version__,
            "hiredis": installed("hiredis"),
            "note": "every shard and the load generator share these cores",
        },
        "load": (
            f"redis-benchmark --cluster -c {args.connections} -P {args.pipeline} "
            f"-n {args.requests}: EVALSHA of the bus's cluster publish script, 200-byte events, "
            f"{CHANNELS:,} channels"
        ),
        "channels": CHANNELS,
        "requests_per_round": args.requests,
        "goals": {"3 shards": ">= 2.5x the publishes per second of 1 shard"},
        "summary": summary,
        "speedup_wall": round(three["publishes_per_s"] / one["publishes_per_s"], 2),
        "speedup_core_each": round(
            three["publishes_per_s_core_each"] / one["publishes_per_s_core_each"], 2
        ),
        "load_average_1min": [r["load_average_1min"] for runs in rounds.values() for r in runs],
        "spread": {
            str(s): round(statistics.pstdev([r["publishes_per_s"] for r in runs]))
            for s, runs in rounds.items()
        },
        "rounds": [r for runs in rounds.values() for r in runs],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
