"""bench/capacity.py: the scaling-out model is derived from the benchmark results, exactly.

The model is checked on small made-up inputs whose answers can be worked out by hand, and
bench/results/capacity.json is checked against what the model derives from the committed results,
so the page's tables cannot drift from the measurements.
"""

from __future__ import annotations

import json
import sys
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
            "publish_script_4_subscribers": case(3 * unpipelined),
            "publish_script_4_subscribers_unpipelined": case(unpipelined),
        },
        "stream_memory": {"bytes_per_event": 250},
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

    # 100,000 streams on 10 channels, 1 event/s each: every process gets all 10 events/s, and
    # writes (100,000 deliveries + 100,000 / 15 heartbeats) / P per second at 10 us each:
    # 0.001 + 1.0667 / P <= 0.5 needs P = 3.
    shared = {"name": "shared", "streams": 100_000, "channels": 10, "events_per_s_per_channel": 1}
    planned = capacity.plan(shared, service, redis)
    assert (planned["publishes_per_s"], planned["deliveries_per_s"]) == (10, 100_000)
    assert planned["service_processes_by_cpu"] == 3
    assert planned["service_processes_by_memory"] == 100
    assert planned["redis_shards_by_cpu"] == 1
    assert planned["history_bytes_when_full"] == 10 * 250_000

    # 1,000 streams, each on its own channel, 10 events/s: each event reaches one process:
    # (10,000 * 100 us + (10,000 + 1,000 / 15) * 10 us) / P = 1.1007 / P <= 0.5 needs P = 3.
    own = {"name": "own", "streams": 1000, "channels": 1000, "events_per_s_per_channel": 10}
    planned = capacity.plan(own, service, redis)
    assert planned["service_processes_by_cpu"] == 3
    assert planned["redis_shards_by_cpu"] == 10  # 10,000 publishes/s at 1,000 per shard


def test_main_writes_what_derive_returns(tmp_path: Path) -> None:
    inputs = {
        "fanout.json": fanout(50_000, 16_000),
        "channels.json": {"run": {"events_per_cpu_s": 5_000}},
        "redis_shard.json": redis_shard(2_000),
    }
    for name, data in inputs.items():
        (tmp_path / name).write_text(json.dumps(data))
    model = capacity.main(tmp_path)
    assert json.loads((tmp_path / "capacity.json").read_text()) == model
    assert [w["name"] for w in model["workloads"]] == [w["name"] for w in capacity.WORKLOADS]


def committed(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / name).read_text()))


def test_capacity_json_is_derived_from_the_committed_results() -> None:
    derived = capacity.derive(
        committed("fanout.json"), committed("channels.json"), committed("redis_shard.json")
    )
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
