"""A capacity model for scaling out, derived from the measured figures in bench/results/.

Reads five results and writes bench/results/capacity.json:

- fanout.json (one service process, one channel, many streams): CPU per delivery;
- channels.json (one service process, one stream per channel): CPU per unshared event;
- processes.json (1 and 2 service processes on one Redis): how each process's deliveries per
  CPU-second change when there are more processes;
- redis_shard.json (one Redis process): publishes per CPU-second, memory per retained event;
- cluster_publish.json (the bus's cluster publish script on 1 and 3 masters): what a cluster
  node publishes per CPU-second against one Redis, and how publishes add up over shards.

The service's cost is modelled as `events_in * cpu_per_event + deliveries * cpu_per_delivery`
(an event arriving from Redis is decoded and encoded once per process, then written to each of
its streams), with both constants fitted to the two service benchmarks. With more than one
process, each process's CPU per unit of work is divided by the ratio processes.json measured
(deliveries per CPU-second of each of N processes over those of one), never taken above 1, and
held beyond the largest N measured. A Redis shard's publishes are one Redis's (one publish per
round trip, as a Flask view sends them) times the ratio of a one-master cluster's publishes per
CPU-second to one Redis's (same script, pipelined); more shards add up linearly times the ratio
cluster_publish.json measured at 3 (never above 1). `model_check` compares the model with every
measured run of the five results, and says which constant was fitted to which run. The planning
assumptions (how much of a core to plan for, memory per process and per shard, the two example
workloads) are the constants below: nothing else is typed here.

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
MEMORY_PER_SHARD = 8 << 30  # bytes of Stream history one Redis shard may hold (its maxmemory)
INPUTS = ("fanout.json", "channels.json", "redis_shard.json", "processes.json",
          "cluster_publish.json")  # fmt: skip
HEARTBEAT_S = float(inspect.signature(create_app).parameters["heartbeat"].default)
WORKLOADS = [
    # A page everyone watches: few channels, each read by many streams.
    {"name": "shared dashboard", "streams": 200_000, "channels": 20, "events_per_s_per_channel": 2},
    # Notifications: every stream reads its user's own channel, one event per 10 s.
    {"name": "per-user channels", "streams": 500_000, "channels": 500_000,
     "events_per_s_per_channel": 0.1},
]  # fmt: skip


def costs(fanout: dict[str, Any], channels: dict[str, Any]) -> tuple[float, float]:
    """CPU seconds per event and per delivery, from the unshared run and the widest fan-out."""
    runs = [run for run in fanout["fanout"] if run["design"] == "sidestream"]
    widest = max(runs, key=lambda run: run["subscribers"])
    n = widest["subscribers"]
    unshared = 1 / channels["run"]["events_per_cpu_s"]  # = per_event + per_delivery
    shared = 1 / widest["deliveries_per_cpu_s"]  # = per_event / n + per_delivery
    per_event = (unshared - shared) / (1 - 1 / n)
    return per_event, unshared - per_event


def fit_service(fanout: dict[str, Any], channels: dict[str, Any]) -> dict[str, Any]:
    """The service process's costs, the fan-out runs beside the fit, and its capacity."""
    runs = [run for run in fanout["fanout"] if run["design"] == "sidestream"]
    per_event, per_delivery = costs(fanout, channels)
    unshared = per_event + per_delivery
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


def fit_processes(processes: dict[str, Any]) -> dict[str, Any]:
    """Each process's deliveries per CPU-second with the most processes measured, over one's."""
    runs = {run["processes"]: run for run in processes["summary"]}
    most = max(runs)
    ratio = runs[most]["deliveries_per_server_cpu_s"] / runs[1]["deliveries_per_server_cpu_s"]
    return {
        "measured_processes": most,
        "per_cpu_ratio": round(ratio, 3),
        "per_cpu_ratio_used": round(min(1.0, ratio), 3),
    }


def process_efficiency(processes: int, scaling: dict[str, Any]) -> float:
    """Work per CPU-second of each of `processes` processes, relative to a single process."""
    return 1.0 if processes == 1 else float(scaling["per_cpu_ratio_used"])


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


def fit_cluster(redis_shard: dict[str, Any], cluster_publish: dict[str, Any]) -> dict[str, Any]:
    """A cluster shard's publishes: one Redis's, scaled by what the cluster runs measured.

    The one-master cluster ran the bus's cluster script pipelined, without subscribers; the
    nearest single-Redis case is the same script pipelined with one subscriber. Their ratio
    (slot checks, SPUBLISH, a keyspace of many Streams) scales one Redis's unpipelined figure,
    the one a Flask view's publishes cost. The widest cluster run gives how shards add up.
    """
    cases = redis_shard["cases"]
    single = cases["publish_script_1_subscriber"]["per_server_cpu_s_median"]
    api_like = cases["publish_script_4_subscribers_unpipelined"]["per_server_cpu_s_median"]
    runs = {run["shards"]: run for run in cluster_publish["summary"]}
    one = runs[1]["publishes_per_s_core_each"]
    most = max(runs)
    scaling = runs[most]["publishes_per_s_core_each"] / (most * one)
    node = one / single
    return {
        "cluster_node_ratio": round(node, 3),
        "measured_shards": most,
        "shard_scaling": round(scaling, 3),
        "shard_scaling_used": round(min(1.0, scaling), 3),
        "publishes_per_s": round(CPU_BUDGET * api_like * node),
        "publishes_per_s_pipelined": round(CPU_BUDGET * one),
    }


def redis_shards(publishes: float, redis: dict[str, Any], cluster: dict[str, Any]) -> int:
    """Shards for `publishes` per second: one Redis if it holds them, else cluster shards."""
    if publishes <= redis["publishes_per_s"]:
        return 1
    return max(
        2, math.ceil(publishes / (cluster["publishes_per_s"] * cluster["shard_scaling_used"]))
    )


def plan(
    workload: dict[str, Any],
    service: dict[str, Any],
    redis: dict[str, Any],
    scaling: dict[str, Any],
    cluster: dict[str, Any],
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
        work = events_in * per_event + writes * per_delivery
        return float(work / process_efficiency(processes, scaling))

    by_cpu = 1
    while cpu_per_process(by_cpu) > CPU_BUDGET:
        by_cpu += 1
    by_memory = math.ceil(streams / service["streams_by_memory"])
    history = channels * redis["history_bytes_per_full_channel"]
    shards_by_cpu = redis_shards(publishes, redis, cluster)
    shards_by_memory = math.ceil(history / MEMORY_PER_SHARD)
    return {
        **workload,
        "events_per_s_per_channel": round(workload["events_per_s_per_channel"], 4),
        "publishes_per_s": round(publishes),
        "deliveries_per_s": round(deliveries),
        "service_processes_by_cpu": by_cpu,
        "service_processes_by_memory": by_memory,
        "service_processes": max(by_cpu, by_memory),
        "redis_shards_by_cpu": shards_by_cpu,
        "redis_shards_by_memory": shards_by_memory,
        "redis_shards": max(shards_by_cpu, shards_by_memory),
        "history_bytes_when_full": history,
    }


def _check(benchmark: str, run: dict[str, Any], figure: str, measured: float, model: float,
           fitted: str) -> dict[str, Any]:  # fmt: skip
    return {
        "benchmark": benchmark,
        **run,
        "figure": figure,
        "measured": round(measured),
        "model": round(model),
        "error": round(model / measured - 1, 3),
        "fitted_here": fitted,
    }


def check_model(
    fanout: dict[str, Any],
    channels: dict[str, Any],
    processes: dict[str, Any],
    cluster_publish: dict[str, Any],
    scaling: dict[str, Any],
    cluster: dict[str, Any],
) -> list[dict[str, Any]]:
    """The model beside every measured run it can predict, with its error."""
    service = fit_service(fanout, channels)
    per_event, per_delivery = costs(fanout, channels)

    def per_cpu(streams_per_channel: int, processes: int = 1) -> float:
        return process_efficiency(processes, scaling) / (
            per_event / streams_per_channel + per_delivery
        )

    deliveries = "deliveries per server CPU-s"
    fitted_at = max(row["subscribers"] for row in service["model_check"])
    checks = [
        _check("fanout", {"processes": 1, "streams_per_process": row["subscribers"]}, deliveries,
               row["measured_deliveries_per_cpu_s"], row["model_deliveries_per_cpu_s"],
               "CPU per event and per delivery" if row["subscribers"] == fitted_at else "")
        for row in service["model_check"]
    ]  # fmt: skip
    for run in sorted(processes["summary"], key=lambda r: r["processes"]):
        n, streams = run["processes"], run["subscribers_per_process"]
        fitted = "ratio to one process" if n == scaling["measured_processes"] and n > 1 else ""
        checks.append(
            _check("processes", {"processes": n, "streams_per_process": streams}, deliveries,
                   run["deliveries_per_server_cpu_s"], per_cpu(streams, n), fitted)
        )  # fmt: skip
    shards = sorted(cluster_publish["summary"], key=lambda r: r["shards"])
    one = shards[0]["publishes_per_s_core_each"]  # the one-master run
    for run in shards:
        n = run["shards"]
        model = one * n * (cluster["shard_scaling_used"] if n > 1 else 1.0)
        fitted = "a cluster node against one Redis" if n == 1 else ""
        if n == cluster["measured_shards"] and cluster["shard_scaling"] < 1:
            fitted = "ratio to one shard"
        checks.append(
            _check("cluster_publish", {"shards": n}, "publishes per second, a core per shard",
                   run["publishes_per_s_core_each"], model, fitted)
        )  # fmt: skip
    return checks


def derive(
    fanout: dict[str, Any],
    channels: dict[str, Any],
    redis_shard: dict[str, Any],
    processes: dict[str, Any],
    cluster_publish: dict[str, Any],
) -> dict[str, Any]:
    """The whole model from the five benchmark results (what capacity.json holds)."""
    service, redis = fit_service(fanout, channels), shard(redis_shard)
    scaling, cluster = fit_processes(processes), fit_cluster(redis_shard, cluster_publish)
    return {
        "what": "capacity per service process and per Redis shard, and two example workloads",
        "command": "python bench/capacity.py",
        "from": list(INPUTS),
        "assumptions": {
            "cpu_budget": CPU_BUDGET,
            "memory_per_process_bytes": MEMORY_PER_PROCESS,
            "memory_per_shard_bytes": MEMORY_PER_SHARD,
            "heartbeat_s": HEARTBEAT_S,
        },
        "service_process": service,
        "processes": scaling,
        "redis_shard": redis,
        "redis_cluster": cluster,
        "model_check": check_model(fanout, channels, processes, cluster_publish, scaling, cluster),
        "workloads": [plan(workload, service, redis, scaling, cluster) for workload in WORKLOADS],
    }


def load(name: str, results: Path = RESULTS) -> dict[str, Any]:
    return dict(json.loads((results / name).read_text()))


def main(results: Path = RESULTS) -> dict[str, Any]:
    model = derive(*(load(name, results) for name in INPUTS))
    (results / "capacity.json").write_text(json.dumps(model, indent=2) + "\n")
    return model


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
