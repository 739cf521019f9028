"""bench/peers.py: the functions that turn bytes and /proc into figures, and a small real run.

Each measuring function is checked on inputs whose answer is known and where a plausible
mistake gives another answer (a rank off by one, a field name cut between two reads counted
twice or not at all, a child process's CPU left out). The smoke run starts sidestream's
service on a private redis-server and checks counts, never timings.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import fanout  # noqa: E402
import peers  # noqa: E402
import tables  # noqa: E402


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]  # 1..100: the p-th percentile is p itself
    assert peers.percentile(values, 0.50) == 50.0
    assert peers.percentile(values, 0.99) == 99.0
    assert peers.percentile(values, 0.07) == 7.0  # 0.07 * 100 is 7.000000000000001
    assert peers.percentile(values, 1.0) == 100.0
    assert peers.percentile(values, 0.0) == 1.0
    assert peers.percentile([5.0], 0.99) == 5.0
    assert peers.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0


def test_count_events_counts_a_field_cut_between_reads_once() -> None:
    stream = b": open\n\nid: 1\ndata: 1 2.0\n\nid: 2\ndata: 2 3.0\n\n: ping\n\ndata:3 4.0\n\n"
    for size in range(1, len(stream) + 1):  # every way of cutting it into equal reads
        total, tail = 0, b""
        for start in range(0, len(stream), size):
            found, tail = peers.count_events(tail, stream[start : start + size])
            total += found
        assert total == 3, size


def reader(sampled: bool) -> peers.Reader:
    async def make() -> peers.Reader:
        return peers.Reader(b"GET / HTTP/1.1\r\n\r\n", sampled, array("d"))

    return asyncio.run(make())


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"


def test_sampled_reader_counts_distinct_events_and_duplicates() -> None:
    now = time.time()
    body = (
        f"id: a\ndata: 0 {now:.6f}\n\n"
        f"data: 1 {now:.6f}\r\n\r\n"  # sse-starlette's CRLF
        f"data:2 {now:.6f}\n\n"  # flask-sse: no space
        f"data: 1 {now:.6f}\n\n"  # a duplicate
        f"data: 3 {now:.6f}"  # not complete yet
    ).encode()
    sampled = reader(True)
    for start in range(0, len(HEAD + body), 7):
        sampled.data_received((HEAD + body)[start : start + 7])
    assert sampled.head.result().startswith(b"HTTP/1.1 200")
    assert (sampled.count, sampled.duplicates, len(sampled.latencies)) == (3, 1, 3)
    sampled.data_received(b"\n\n")
    assert sampled.count == 4


def test_drained_reader_counts_data_lines() -> None:
    drained = reader(False)
    drained.data_received(HEAD + b"data: 0 1.0\n\nda")
    drained.data_received(b"ta: 1 1.0\n\n: ping\n\n")
    assert (drained.count, len(drained.latencies)) == (2, 0)


def test_tally_loss_and_duplicates() -> None:
    assert peers.tally([3, 3], [3, 1]) == {
        "expected": 6,
        "received": 4,
        "lost": 2,
        "duplicates": 0,
    }
    # A drained stream that counted more than it was sent got duplicates; that surplus does not
    # hide another stream's loss.
    assert peers.tally([3, 3], [5, 2], sampled_duplicates=1) == {
        "expected": 6,
        "received": 5,
        "lost": 1,
        "duplicates": 3,
    }


BURN = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass\\n"
    "time.sleep(30)"])
print(child.pid, flush=True)
time.sleep(30)
"""


def test_cpu_of_a_process_tree_includes_its_children() -> None:
    root = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    try:
        assert root.stdout is not None
        child = int(root.stdout.readline())
        deadline = time.monotonic() + 60
        while peers.tree_cpu_seconds(child) < 0.6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert peers.process_tree(root.pid) == [root.pid, child]
        assert fanout.cpu_seconds(root.pid) < 0.5  # the root alone hardly ran
        assert peers.tree_cpu_seconds(root.pid) >= 0.6  # its tree did
        assert peers.tree_rss_bytes(root.pid) > fanout.rss_bytes(root.pid)
    finally:
        peers.stop(root)  # SIGTERM to the root, SIGKILL to the rest of its tree
    for _ in range(200):  # gone, or a zombie: killed and waiting to be reaped
        try:
            if peers.proc_stat(child)[0] == "Z":
                break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the child outlived stop()")


def test_median_run_takes_each_number_s_median() -> None:
    runs = [
        {"peer": "x", "p99_ms": 9.0, "lost": 0, "note": "a"},
        {"peer": "x", "p99_ms": 1.0, "lost": 5, "note": "b"},
        {"peer": "x", "p99_ms": 4.0, "lost": 0, "note": "c"},
    ]
    merged = peers.median_run(runs)
    assert (merged["p99_ms"], merged["lost"], merged["note"], merged["repeats"]) == (
        4.0,
        0,
        "a",
        3,
    )


def test_median_of_two_runs_keeps_counts_whole() -> None:
    runs = [
        {"streams": 5000, "lost": 0, "p50_ms": 2.0},
        {"streams": 5000, "lost": 600, "p50_ms": 3.0},
    ]
    merged = peers.median_run(runs)
    assert merged == {"streams": 5000, "lost": 0, "p50_ms": 2.5, "repeats": 2}
    assert isinstance(merged["streams"], int)


def test_profile_summary_names_the_innermost_known_frame() -> None:
    collapsed = "\n".join(
        [
            "run (uvicorn/main.py:1);_read (redis/_parsers/resp3.py:9) 6",
            "run (uvicorn/main.py:1);fan_out (sidestream/hub.py:40);x (json/decoder.py:3) 3",
            "run (uvicorn/main.py:1);send (uvicorn/protocols/http/httptools_impl.py:5) 1",
        ]
    )
    summary = peers.summarize_profile(collapsed)
    assert summary["samples"] == 10
    assert summary["percent_by_category"] == {
        "RESP parsing (redis-py, hiredis)": 60.0,
        "the hub's per-event work (sidestream.hub)": 30.0,
        "uvicorn and httptools (per connection)": 10.0,
    }
    assert summary["top_own_time"][0] == {
        "function": "_read (redis/_parsers/resp3.py:9)",
        "percent": 60.0,
    }


def test_page_table_renders_the_committed_results() -> None:
    rendered = tables.render("peers")
    for peer in ("sidestream (hiredis)", "Nchan (nginx, memory storage)", "floor:"):
        assert peer in rendered
    assert "python bench/peers.py" in rendered


def test_smoke_run_against_the_service() -> None:
    options = argparse.Namespace(rate=10.0, channel_rate=200.0, seconds=1.0, drain=30.0, sampled=5)
    with fanout_redis() as url, tempfile.TemporaryDirectory() as scratch:
        for pattern in ("fanout", "channels"):
            run = asyncio.run(
                peers.measure(
                    peers.PEER_BY_NAME["sidestream"], url, Path(scratch), 20, pattern, options
                )
            )
            assert run["expected"] == 200  # 20 streams x 10 events; 200 events on 20 channels
            assert (run["lost"], run["duplicates"]) == (0, 0), run
            assert run["received"] == run["expected"]
            assert run["sampled_streams"] == 5
            assert run["redis_connections"] <= 2  # one pub/sub connection, one for commands
            # 200 deliveries can cost the server less than one clock tick (10 ms) on a quiet
            # machine, so only the figure's presence is checked here; tree_cpu_seconds has its own
            # test above with a process that burns a known amount.
            assert run["server_cpu_s"] >= 0 and run["generator_cpu_s"] >= 0
            assert (run["deliveries_per_cpu_s"] is None) == (run["server_cpu_s"] == 0)


def fanout_redis():  # type: ignore[no-untyped-def]
    from longpoll_latency import private_redis_url

    return private_redis_url()


def test_profile_counts_socket_writes_on_their_own() -> None:
    """py-spy puts a C write's time on the Python line that calls it: those lines are found in
    the installed sidestream and uvicorn, so the profile names what the kernel costs."""
    frames = peers.socket_write_frames()
    assert any(f.startswith("(sidestream/servers.py:") for f in frames)
    assert any(f.startswith("(uvicorn/protocols/http/httptools_impl.py:") for f in frames)
    collapsed = "\n".join(
        [
            f"run (uvicorn/main.py:1);push (sidestream/subscriber.py:9);write {frames[0]} 4",
            "run (uvicorn/main.py:1);push (sidestream/hub.py:9) 1",
        ]
    )
    assert peers.summarize_profile(collapsed)["percent_by_category"] == {
        "writing to sockets (uvloop's transport.write, the kernel)": 80.0,
        "the hub's per-event work (sidestream.hub)": 20.0,
    }


def test_settle_waits_for_a_quiet_machine_and_says_how_long() -> None:
    share = peers.idle_share(0.2)
    assert 0.0 <= share <= 1.0
    assert peers.settle.__defaults__ == (peers.QUIET, 120.0)
    assert asyncio.run(peers.settle(quiet=0.0)) < 5  # any machine is 0 % idle or more
    assert asyncio.run(peers.settle(quiet=1.5, limit_s=1.0)) >= 1.0  # never that idle: the limit
