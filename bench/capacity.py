"""A capacity model for scaling out, derived from the measured figures in bench/results/.

Reads three results and writes bench/results/capacity.json:

- fanout.json (one service process, one channel, many streams): CPU per delivery;
- channels.json (one service process, one stream per channel): CPU per unshared event;
- redis_shard.json (one Redis process): publishes per CPU-second, memory per retained event.

The service's cost is modelled as `events_in * cpu_per_event + deliveries * cpu_per_delivery`
(an event arriving from Redis is decoded and encoded once per process, then written to each of
its streams), with both constants fitted to the two service benchmarks; `model_check` compares
the fit with every fan-out run. The planning assumptions (how much of a core to plan for, memory
per process, the two example workloads) are the constants below: nothing else is typed here.

    .venv/bin/python bench/capacity.py    # writes bench/results/capacity.json
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

from sidestream.service import create_app

RESULTS = Path(__file__).resolve().parent / "results"
CPU_BUDGET = 0.5  # of one core per process or shard: headroom for bursts and for a restart
MEMORY_PER_PROCESS = 1 << 30  # bytes of streams one service process may hold
HEARTBEAT_S = float(inspect.signature(create_app).parameters["heartbeat"].default)
WORKLOADS = [
    # A page everyone watches: few channels, each read by many streams.
    {"name": "shared dashboard", "streams": 200_000, "channels": 20, "events_per_s_per_channel": 2},
    # Notifications: every stream reads its user's own channel, one event per 10 s.
    {"name": "per-user channels", "streams": 500_000, "channels": 500_000,
     "events_per_s_per_channel": 0.1},
]  # fmt: skip


def fit_service(fanout: dict[str, Any], channels: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per event and per delivery, from the unshared run and the widest fan-out."""
    runs = [run for run in fanout["fanout"] if run["design"] == "sidestream"]
    widest = max(runs, key=lambda run: run["subscribers"])
    n = widest["subscribers"]
    unshared = 1 / channels["run"]["events_per_cpu_s"]  # = per_event + per_delivery
    shared = 1 / widest["deliveries_per_cpu_s"]  # = per_event / n + per_delivery
    per_event = (unshared - shared) / (1 - 1 / n)
    per_delivery = unshared - per_event
    check = [
        {
            "subscribers": run["subscribers"],
            "measured_deliveries_per_cpu_s": run["deliveries_per_cpu_s"],
            "model_deliveries_per_cpu_s": round(
                1 / (per_event / run["subscribers"] + per_delivery)
            ),
        }
        for run in runs
    ]
    idle = max(m["bytes_per_stream"] for m in fanout["memory"] if m["design"] == "sidestream")
    return {
        "cpu_us_per_event": round(per_event * 1e6, 1),
        "cpu_us_per_delivery": round(per_delivery * 1e6, 1),
        "model_check": check,
        "bytes_per_idle_stream": idle,
        "streams_by_memory": MEMORY_PER_PROCESS // idle,
        "deliveries_per_s_shared": round(CPU_BUDGET / per_delivery),
        "events_per_s_unshared": round(CPU_BUDGET / unshared),
    }


def shard(redis_shard: dict[str, Any]) -> dict[str, Any]:
    cases, memory = redis_shard["cases"], redis_shard["stream_memory"]
    api_like = cases["publish_script_4_subscribers_unpipelined"]["per_server_cpu_s_median"]
    pipelined = cases["publish_script_4_subscribers"]["per_server_cpu_s_median"]
    return {
        "publishes_per_s": round(CPU_BUDGET * api_like),
        "publishes_per_s_pipelined": round(CPU_BUDGET * pipelined),
        "bytes_per_retained_event": memory["bytes_per_event"],
        "event_bytes": redis_shard["event_bytes"],
        "history_bytes_per_full_channel": memory["bytes_per_event"] * redis_shard["stream_maxlen"],
    }


def plan(
    workload: dict[str, Any], service: dict[str, Any], redis: dict[str, Any]
) -> dict[str, Any]:
    """Processes and shards for a workload where each stream reads one channel."""
    streams, channels = workload["streams"], workload["channels"]
    publishes = channels * workload["events_per_s_per_channel"]
    fan_out = streams / channels
    deliveries = publishes * fan_out
    per_event, per_delivery = (
        service["cpu_us_per_event"] / 1e6,
        service["cpu_us_per_delivery"] / 1e6,
    )

    def cpu_per_process(processes: int) -> float:
        # A channel read by at least as many streams as there are processes reaches every
        # process; a channel read by one stream reaches one.
        events_in = publishes if fan_out >= processes else publishes * fan_out / processes
        writes = (deliveries + streams / HEARTBEAT_S) / processes  # events and heartbeats
        return float(events_in * per_event + writes * per_delivery)

    by_cpu = 1
    while cpu_per_process(by_cpu) > CPU_BUDGET:
        by_cpu += 1
    return {
        **workload,
        "events_per_s_per_channel": round(workload["events_per_s_per_channel"], 4),
        "publishes_per_s": round(publishes),
        "deliveries_per_s": round(deliveries),
        "service_processes_by_cpu": by_cpu,
        "service_processes_by_memory": math.ceil(streams / service["streams_by_memory"]),
        "redis_shards_by_cpu": math.ceil(publishes / redis["publishes_per_s"]),
        "history_bytes_when_full": channels * redis["history_bytes_per_full_channel"],
    }


def derive(
    fanout: dict[str, Any], channels: dict[str, Any], redis_shard: dict[str, Any]
) -> dict[str, Any]:
    """The whole model from the three benchmark results (what capacity.json holds)."""
    service, redis = fit_service(fanout, channels), shard(redis_shard)
    return {
        "what": "capacity per service process and per Redis shard, and two example workloads",
        "command": "python bench/capacity.py",
        "from": ["fanout.json", "channels.json", "redis_shard.json"],
        "assumptions": {
            "cpu_budget": CPU_BUDGET,
            "memory_per_process_bytes": MEMORY_PER_PROCESS,
            "heartbeat_s": HEARTBEAT_S,
        },
        "service_process": service,
        "redis_shard": redis,
        "workloads": [plan(workload, service, redis) for workload in WORKLOADS],
    }


def load(name: str, results: Path = RESULTS) -> dict[str, Any]:
    return dict(json.loads((results / name).read_text()))


def main(results: Path = RESULTS) -> dict[str, Any]:
    model = derive(
        *(load(name, results) for name in ("fanout.json", "channels.json", "redis_shard.json"))
    )
    (results / "capacity.json").write_text(json.dumps(model, indent=2) + "\n")
    return model


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
