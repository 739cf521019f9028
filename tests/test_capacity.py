"""bench/capacity.py: the scaling-out model is derived from the benchmark results, exactly.

The model is checked on small made-up inputs whose answers can be worked out by hand, and
bench/results/capacity.json is checked against what the model derives from the committed results,
so the page's tables cannot drift from the measurements.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import capacity  # noqa: E402
import tables  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def fanout(at_1000: int, idle_bytes: int) -> dict[str, Any]:
    return {
        "fanout": [
            {"design": "naive", "subscribers": 5000, "deliveries_per_cpu_s": 1},
            {"design": "sidestream", "subscribers": 100, "deliveries_per_cpu_s": 40_000},
            {
                "design": "sidestream",
                "subscribers": 1000,
                "deliveries_per_cpu_s": at_1000,
            },
        ],
        "memory": [
            {"design": "sidestream", "streams": 1000, "bytes_per_stream": idle_bytes - 1000},
            {"design": "sidestream", "streams": 10000, "bytes_per_stream": idle_bytes},
            {"design": "naive", "streams": 1000, "bytes_per_stream": 10 * idle_bytes},
        ],
    }


def redis_shard(unpipelined: int) -> dict[str, Any]:
    def case(rate: int) -> dict[str, Any]:
        return {"per_server_cpu_s_median": rate}

    return {
        "event_bytes": 200,
        "stream_maxlen": 1000,
        "cases": {
            "publish_script_1_subscriber": case(4 * unpipelined),
            "publish_script_4_subscribers": case(3 * unpipelined),
            "publish_script_4_subscribers_unpipelined": case(unpipelined),
        },
        "stream_memory": {"bytes_per_event": 250},
    }


def processes(one: int, two: int) -> dict[str, Any]:
    """processes.json's summary: deliveries per server CPU-second of 1 and of 2 processes."""
    return {
        "summary": [
            {"processes": n, "subscribers_per_process": 1000, "deliveries_per_server_cpu_s": rate}
            for n, rate in [(1, one), (2, two)]
        ]
    }


def cluster_publish(one: int, three: int) -> dict[str, Any]:
    """cluster_publish.json's summary: publishes per second with a core per shard."""
    return {
        "summary": [
            {"shards": n, "publishes_per_s_core_each": rate} for n, rate in [(1, one), (3, three)]
        ]
    }


def inputs() -> dict[str, dict[str, Any]]:
    """Five made-up results whose model can be worked out by hand (see the tests below)."""
    return {
        "fanout.json": fanout(50_000, 16_000),
        "channels.json": {"run": {"events_per_cpu_s": 5_000}},
        "redis_shard.json": redis_shard(2_000),
        "processes.json": processes(100_000, 70_000),
        "cluster_publish.json": cluster_publish(4_000, 10_800),
    }


def test_the_fit_reproduces_both_service_benchmarks() -> None:
    # One reader per channel: 5,000 events/CPU-s, i.e. per_event + per_delivery = 200 us.
    # 1,000 readers: 50,000 deliveries/CPU-s, i.e. per_event / 1000 + per_delivery = 20 us.
    service = capacity.fit_service(fanout(50_000, 16_000), {"run": {"events_per_cpu_s": 5_000}})
    per_event = 180e-6 / (1 - 1 / 1000)
    assert service["cpu_us_per_event"] == round(per_event * 1e6, 1) == 180.2
    assert service["cpu_us_per_delivery"] == round((200e-6 - per_event) * 1e6, 1) == 19.8
    check = {row["subscribers"]: row for row in service["model_check"]}
    assert check[1000]["model_deliveries_per_cpu_s"] == 50_000  # fitted there
    assert check[100]["measured_deliveries_per_cpu_s"] == 40_000
    assert service["bytes_per_idle_stream"] == 16_000  # the largest sidestream row
    assert service["streams_by_memory"] == 2**30 // 16_000
    assert service["events_per_s_unshared"] == 2_500  # half a core at 200 us each


def test_plan_for_shared_and_per_user_channels() -> None:
    assert (capacity.CPU_BUDGET, capacity.HEARTBEAT_S) == (0.5, 15.0)
    service = {"cpu_us_per_event": 100.0, "cpu_us_per_delivery": 10.0, "streams_by_memory": 1000}
    redis = capacity.shard(redis_shard(unpipelined=2_000))
    assert redis["publishes_per_s"] == 1_000 and redis["publishes_per_s_pipelined"] == 3_000
    assert redis["history_bytes_per_full_channel"] == 250_000
    # Processes and shards that add up exactly: the planning is the single-process one.
    linear = capacity.fit_processes(processes(100_000, 100_000))
    cluster = capacity.fit_cluster(redis_shard(2_000), cluster_publish(8_000, 24_000))
    assert (linear["per_cpu_ratio_used"], cluster["shard_scaling_used"]) == (1.0, 1.0)

    # 100,000 streams on 10 channels, 1 event/s each: every process gets all 10 events/s, and
    # writes (100,000 deliveries + 100,000 / 15 heartbeats) / P per second at 10 us each:
    # 0.001 + 1.0667 / P <= 0.5 needs P = 3.
    shared = {"name": "shared", "streams": 100_000, "channels": 10, "events_per_s_per_channel": 1}
    planned = capacity.plan(shared, service, redis, linear, cluster)
    assert (planned["publishes_per_s"], planned["deliveries_per_s"]) == (10, 100_000)
    assert planned["service_processes_by_cpu"] == 3
    assert planned["service_processes_by_memory"] == 100
    assert planned["redis_shards_by_cpu"] == 1
    assert planned["history_bytes_when_full"] == 10 * 250_000

    # 1,000 streams, each on its own channel, 10 events/s: each event reaches one process:
    # (10,000 * 100 us + (10,000 + 1,000 / 15) * 10 us) / P = 1.1007 / P <= 0.5 needs P = 3.
    own = {"name": "own", "streams": 1000, "channels": 1000, "events_per_s_per_channel": 10}
    planned = capacity.plan(own, service, redis, linear, cluster)
    assert planned["service_processes_by_cpu"] == 3
    # 10,000 publishes/s is more than one Redis's 1,000: a cluster, whose node does what one
    # Redis does here (8,000 = 4 x 2,000, the same script pipelined), so 1,000 per shard.
    assert planned["redis_shards_by_cpu"] == 10
    assert planned["redis_shards"] == 10 and planned["service_processes"] == 3


def test_main_writes_what_derive_returns(tmp_path: Path) -> None:
    for name, data in inputs().items():
        (tmp_path / name).write_text(json.dumps(data))
    model = capacity.main(tmp_path)
    assert json.loads((tmp_path / "capacity.json").read_text()) == model
    assert [w["name"] for w in model["workloads"]] == [w["name"] for w in capacity.WORKLOADS]
    assert model["from"] == list(inputs())


def test_process_and_shard_scaling_come_from_their_runs() -> None:
    # Two processes each delivered 70,000 per CPU-second against one process's 100,000.
    scaling = capacity.fit_processes(processes(100_000, 70_000))
    assert scaling == {"measured_processes": 2, "per_cpu_ratio": 0.7, "per_cpu_ratio_used": 0.7}
    assert capacity.process_efficiency(1, scaling) == 1.0
    assert capacity.process_efficiency(5, scaling) == 0.7  # held beyond the largest run
    # More processes measured doing more each is noise, not a plan: never above 1.
    assert capacity.fit_processes(processes(100_000, 120_000))["per_cpu_ratio_used"] == 1.0

    # A one-master cluster: 4,000 per CPU-s; one Redis, same script pipelined: 8,000, so a
    # cluster node does half; three shards did 10,800, 0.9 of three times one.
    cluster = capacity.fit_cluster(redis_shard(2_000), cluster_publish(4_000, 10_800))
    assert (cluster["cluster_node_ratio"], cluster["shard_scaling"]) == (0.5, 0.9)
    assert cluster["publishes_per_s"] == 500  # half a core x 2,000 unpipelined x 0.5
    assert cluster["publishes_per_s_pipelined"] == 2_000
    assert (
        capacity.fit_cluster(redis_shard(2_000), cluster_publish(4_000, 13_200))[
            "shard_scaling_used"
        ]
        == 1.0
    )

    service = {"cpu_us_per_event": 100.0, "cpu_us_per_delivery": 10.0, "streams_by_memory": 1000}
    redis = capacity.shard(redis_shard(2_000))
    # The shared workload of the test above needed 3 processes when they add up; at 0.7 each,
    # 3 would be at (0.001 + 1.0667 / 3) / 0.7 = 0.509 of a core: 4.
    shared = {"name": "shared", "streams": 100_000, "channels": 10, "events_per_s_per_channel": 1}
    assert capacity.plan(shared, service, redis, scaling, cluster)["service_processes_by_cpu"] == 4
    # 10,000 publishes/s on cluster shards of 500 each, at 0.9: ceil(22.2) = 23.
    own = {"name": "own", "streams": 1000, "channels": 1000, "events_per_s_per_channel": 10}
    assert capacity.plan(own, service, redis, scaling, cluster)["redis_shards_by_cpu"] == 23
    # What one Redis holds stays one Redis: no cluster factor below its ceiling.
    few = {"name": "few", "streams": 1000, "channels": 1000, "events_per_s_per_channel": 1}
    assert capacity.plan(few, service, redis, scaling, cluster)["redis_shards_by_cpu"] == 1


def test_history_sets_a_floor_on_shards() -> None:
    service = {"cpu_us_per_event": 100.0, "cpu_us_per_delivery": 10.0, "streams_by_memory": 10**9}
    redis = capacity.shard(redis_shard(2_000))
    scaling = capacity.fit_processes(processes(100_000, 70_000))
    cluster = capacity.fit_cluster(redis_shard(2_000), cluster_publish(4_000, 10_800))
    # 100,000 quiet channels x 1,000 events x 250 B = 25 GB of history: 3 shards of 8 GiB.
    quiet = {"name": "quiet", "streams": 100_000, "channels": 100_000,
             "events_per_s_per_channel": 0.001}  # fmt: skip
    planned = capacity.plan(quiet, service, redis, scaling, cluster)
    assert capacity.MEMORY_PER_SHARD == 8 * 2**30
    assert planned["history_bytes_when_full"] == 25 * 10**9
    assert (planned["redis_shards_by_cpu"], planned["redis_shards_by_memory"]) == (1, 3)
    assert planned["redis_shards"] == 3


def test_the_model_reports_its_error_against_every_measured_run() -> None:
    model = capacity.derive(*inputs().values())
    rows = {(c["benchmark"], c.get("processes"), c.get("shards")): c for c in model["model_check"]}
    assert set(rows) == {
        ("fanout", 1, None),  # two sidestream fan-out runs: 100 and 1,000 streams
        ("processes", 1, None),
        ("processes", 2, None),
        ("cluster_publish", None, 1),
        ("cluster_publish", None, 3),
    }
    fan = [c for c in model["model_check"] if c["benchmark"] == "fanout"]
    assert [(c["streams_per_process"], c["measured"], c["fitted_here"] != "") for c in fan] == [
        (100, 40_000, False),
        (1000, 50_000, True),
    ]
    # The fit says 50,000 deliveries per CPU-s at 1,000 streams; the processes run measured
    # 100,000 with one process and 70,000 each with two (whose ratio the model took).
    one, two = rows["processes", 1, None], rows["processes", 2, None]
    assert (one["measured"], one["model"], one["error"], one["fitted_here"]) == (
        100_000, 50_000, -0.5, ""
    )  # fmt: skip
    assert (two["measured"], two["model"], two["error"]) == (70_000, 35_000, -0.5)
    assert two["fitted_here"] == "ratio to one process"
    shard_1, shard_3 = rows["cluster_publish", None, 1], rows["cluster_publish", None, 3]
    assert (shard_1["model"], shard_1["error"]) == (4_000, 0.0) and shard_1["fitted_here"]
    assert (shard_3["model"], shard_3["error"]) == (10_800, 0.0)  # the 0.9 was taken from it
    # Three shards that did better than three times one: the model keeps linear, and says by
    # how much it is below.
    better = {**inputs(), "cluster_publish.json": cluster_publish(4_000, 13_200)}
    row = capacity.derive(*better.values())["model_check"][-1]
    assert (row["model"], row["error"], row["fitted_here"]) == (12_000, -0.091, "")
    # The page's table shows each error and what the model took from the run.
    table = tables.capacity(model)
    assert "| processes: 2 processes, 1,000 streams each on one channel |" in table
    assert "| 70,000 | 35,000 | -50% | ratio to one process |" in table
    assert "| cluster publish: 3 shards |" in table


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("fanout.json", lambda d: d["fanout"][2].update(deliveries_per_cpu_s=60_000)),
        ("channels.json", lambda d: d["run"].update(events_per_cpu_s=4_000)),
        ("redis_shard.json", lambda d: d["cases"]["publish_script_1_subscriber"].update(
            per_server_cpu_s_median=16_000)),
        ("processes.json", lambda d: d["summary"][1].update(deliveries_per_server_cpu_s=50_000)),
        ("cluster_publish.json", lambda d: d["summary"][0].update(
            publishes_per_s_core_each=2_000)),
    ],
)  # fmt: skip
def test_each_input_changes_the_plan(name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """The fit is computed from the JSON: change one measured number and the answer moves."""
    before = capacity.derive(*inputs().values())
    changed = inputs()
    change(changed[name])
    after = capacity.derive(*changed.values())
    assert after != before
    big = {"name": "big", "streams": 10**6, "channels": 10**5, "events_per_s_per_channel": 1}
    planned = [
        capacity.plan(
            big,
            capacity.fit_service(m["fanout.json"], m["channels.json"]),
            capacity.shard(m["redis_shard.json"]),
            capacity.fit_processes(m["processes.json"]),
            capacity.fit_cluster(m["redis_shard.json"], m["cluster_publish.json"]),
        )
        for m in (inputs(), changed)
    ]
    assert planned[0] != planned[1]


def committed(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / name).read_text()))


def test_capacity_json_is_derived_from_the_committed_results() -> None:
    derived = capacity.derive(*(committed(name) for name in capacity.INPUTS))
    assert committed("capacity.json") == derived, (
        "bench/results/capacity.json is stale: run `python bench/capacity.py` after a benchmark"
    )


@pytest.mark.parametrize("name", ["capacity", "redis_shard", "channels"])
def test_tables_show_the_results_number_for_number(name: str) -> None:
    table = tables.render(name)
    data = committed(f"{name}.json")
    if name == "capacity":
        service = data["service_process"]
        assert f"| {service['cpu_us_per_event']} µs |" in table
        assert f"| {service['deliveries_per_s_shared']:,} |" in table
        assert f"| {data['redis_shard']['publishes_per_s']:,} |" in table
        first, second = data["workloads"]
        assert f"| workload | {first['name']} | {second['name']} |" in table
        assert f"| streams | {first['streams']:,} | {second['streams']:,} |" in table
        for key, label in [
            ("service_processes_by_cpu", "service processes for the CPU"),
            ("service_processes_by_memory", "service processes for the memory"),
            ("redis_shards_by_cpu", "Redis shards for the publishes"),
        ]:
            assert f"| {label} | {first[key]} | {second[key]} |" in table
        for key, label in [
            ("service_processes", "service processes needed"),
            ("redis_shards", "Redis shards needed"),
        ]:
            assert f"| **{label}** | **{first[key]}** | **{second[key]}** |" in table
        for check in data["model_check"]:
            error = f"{check['model'] / check['measured'] - 1:+.0%}"
            assert f"| {check['measured']:,} | {check['model']:,} | {error} |" in table
    elif name == "redis_shard":
        for case in data["cases"].values():
            assert f"| {case['per_server_cpu_s_median']:,} |" in table
    else:
        assert f"| {data['run']['events_per_cpu_s']:,} |" in table


def test_a_channels_stream_and_live_channel_share_a_cluster_slot() -> None:
    # The premise of sharding: one script may XADD the stream and (S)PUBLISH the live channel
    # only if both hash to the same slot, and different channels spread over the slots.
    from redis.crc import key_slot

    from sidestream.bus import Bus, connect

    bus = Bus(connect("memory://"), prefix="myapp:")
    names = [f"user:{n}" for n in range(1000)] + ["orders", "news.eu/sports"]
    slots = {name: key_slot(bus.stream_key(name).encode()) for name in names}
    assert all(key_slot(bus.live_channel(name).encode()) == slots[name] for name in names)
    assert all(slots[name] == key_slot(name.encode()) for name in names)  # the channel decides
    assert len(set(slots.values())) > 900  # 1,002 channels over 16,384 slots: few collide
