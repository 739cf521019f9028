"""Long polling: how soon a waiting poll answers after a publish, and what an idle waiter costs.

Compares the two endpoints of examples/long_polling/ in the same run, served the same way
(Werkzeug's threaded server on loopback, one keep-alive HTTP client):

- naive.py, the loop that queries SQLite and sleeps 0.5 s, and
- blocking.py, which waits in Redis (XREAD BLOCK) through sidestream.longpoll.

Latency: a poll is started, then after a random 50-550 ms (so publishes land at every phase of
the naive loop) one event is published; the time from just before the publish call to the
poll's response arriving is recorded. Idle cost: waiters park in long polls, and the commands
the server runs during a window inside their wait are counted: Redis INFO commandstats on a
private redis-server (so nobody else's commands are counted), SQL statements via sqlite3's
trace callback for the naive loop.

Run (writes bench/results/longpoll.json):

    .venv/bin/python bench/longpoll_latency.py

With --redis-url, an existing server is used instead of a private one (its commandstats then
include other clients' commands, so the idle figure is only meaningful on an idle server).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import redis

from sidestream.bus import Bus, connect
from sidestream.testing import free_port, serve_wsgi

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "examples" / "long_polling"
RESULTS = ROOT / "bench" / "results" / "longpoll.json"
CHANNEL = "notifications"


@dataclass(frozen=True)
class PrivateRedis:
    url: str
    port: int
    pid: int


@contextlib.contextmanager
def private_redis(*options: str) -> Iterator[PrivateRedis]:
    """A redis-server of our own on a free loopback port, without persistence; `options` are
    more redis-server arguments. Nobody else's commands show in its INFO or its CPU time."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        client.close()
        yield PrivateRedis(url, port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def private_redis_url() -> Iterator[str]:
    with private_redis() as server:
        yield server.url


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {
        "p50": round(statistics.median(samples_ms), 2),
        "p99": round(cuts[98], 2),
        "mean": round(statistics.fmean(samples_ms), 2),
        "min": round(min(samples_ms), 2),
        "max": round(max(samples_ms), 2),
    }


def wake_up_latencies(
    http: httpx.Client,
    poll_url: str,
    cursor: Callable[[], str],
    publish: Callable[[], object],
    count: int,
    rng: random.Random,
) -> list[float]:
    """Milliseconds from just before each publish to the waiting poll's response."""
    samples = []
    for _ in range(count):
        answered: list[float] = []
        url = f"{poll_url}?last_id={cursor()}&timeout=30"

        def poll(url: str = url, answered: list[float] = answered) -> None:
            body = http.get(url, timeout=40).json()
            answered.append(time.perf_counter())
            assert len(body["events"]) == 1, body

        waiter = threading.Thread(target=poll)
        waiter.start()
        time.sleep(rng.uniform(0.05, 0.55))
        started = time.perf_counter()
        publish()
        waiter.join()
        samples.append((answered[0] - started) * 1000)
    return samples


def redis_commands(client: redis.Redis) -> int:
    """Commands the server has run, all clients, except the INFO calls that read this."""
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def park_waiters(
    http: httpx.Client, poll_url: str, cursor: str, waiters: int
) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=lambda: http.get(f"{poll_url}?last_id={cursor}&timeout=30", timeout=40)
        )
        for _ in range(waiters)
    ]
    for thread in threads:
        thread.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishes", type=int, default=200)
    parser.add_argument("--waiters", type=int, default=10, help="idle waiters for the cost figure")
    parser.add_argument("--window", type=float, default=10.0, help="idle window, seconds")
    parser.add_argument("--redis-url", default=None, help="default: a private redis-server")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.redis_url is None and shutil.which("redis-server") is None:
        sys.exit("redis-server not found: install it, or pass --redis-url")

    # Werkzeug logs each request before sending its response: keep the terminal out of the timing.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="longpoll-bench-"))
    os.environ["NOTIFICATIONS_DB"] = str(workdir / "notifications.sqlite3")
    # blocking.py's module-level app reads REDIS_URL on import; the bench passes its own bus.
    os.environ.setdefault("REDIS_URL", "memory://")
    sys.path.insert(0, str(CHAPTER))
    notifications_db = importlib.import_module("notifications_db")
    naive = importlib.import_module("naive")
    blocking = importlib.import_module("blocking")
    rng = random.Random(20240601)

    sql_statements = 0
    real_connect = notifications_db.connect

    def traced_connect() -> sqlite3.Connection:
        db = real_connect()

        def count(_statement: str) -> None:
            nonlocal sql_statements
            sql_statements += 1

        db.set_trace_callback(count)
        return db

    notifications_db.connect = traced_connect

    def insert_notification() -> None:
        with contextlib.closing(real_connect()) as db, db:
            db.execute("INSERT INTO notifications (data) VALUES ('bench')")

    def newest_row() -> str:
        with contextlib.closing(real_connect()) as db:
            return str(db.execute("SELECT COALESCE(MAX(id), 0) FROM notifications").fetchone()[0])

    server = contextlib.nullcontext(args.redis_url) if args.redis_url else private_redis_url()
    with server as redis_url, httpx.Client(limits=httpx.Limits(max_connections=200)) as http:
        client = connect(redis_url)
        bus = Bus(client, prefix="longpoll-bench:")
        client.delete(bus.stream_key(CHANNEL))
        admin = redis.Redis.from_url(redis_url)
        with serve_wsgi(naive.app) as naive_url, serve_wsgi(blocking.create_app(bus)) as redis_app:
            naive_poll = f"{naive_url}/notifications/poll"
            redis_poll = f"{redis_app}/notifications/poll"

            # Warm both paths (imports, first connections, the publish script).
            bus.publish(CHANNEL, "warm-up")
            insert_notification()
            http.get(f"{naive_poll}?last_id=0&timeout=1")
            http.get(f"{redis_poll}?last_id=0-0&timeout=1")

            redis_ms = wake_up_latencies(
                http,
                redis_poll,
                lambda: bus.latest_id(CHANNEL),
                lambda: bus.publish(CHANNEL, "bench"),
                args.publishes,
                rng,
            )
            naive_ms = wake_up_latencies(
                http, naive_poll, newest_row, insert_notification, args.publishes, rng
            )

            # Idle cost, Redis: commands the server runs while the waiters wait.
            threads = park_waiters(http, redis_poll, bus.latest_id(CHANNEL), args.waiters)
            time.sleep(1.0)
            parked = sum(
                1 for c in admin.client_list() if c["cmd"] == "xread" and "b" in c["flags"]
            )
            before = redis_commands(admin)
            time.sleep(args.window)
            redis_idle = redis_commands(admin) - before
            bus.publish(CHANNEL, "release")
            for thread in threads:
                thread.join()

            # Idle cost, naive: SQL statements the waiting loops run in the same window.
            threads = park_waiters(http, naive_poll, newest_row(), args.waiters)
            time.sleep(1.0)
            before = sql_statements
            time.sleep(args.window)
            naive_idle = sql_statements - before
            insert_notification()
            for thread in threads:
                thread.join()
        redis_version = admin.info("server")["redis_version"]
        admin.close()
        client.close()

    redis_stats, naive_stats = percentiles(redis_ms), percentiles(naive_ms)
    per_waiter = args.waiters * args.window
    report: dict[str, Any] = {
        "what": "wake-up latency of a waiting long poll after a publish (ms), and the commands an "
        "idle waiter makes the server run",
        "command": "python bench/longpoll_latency.py"
        + (f" --redis-url {args.redis_url}" if args.redis_url else ""),
        "publishes_each": args.publishes,
        "served_by": "werkzeug threaded server on loopback, httpx keep-alive client",
        "redis": {"version": redis_version, "private_instance": args.redis_url is None},
        "python": platform.python_version(),
        "redis_py": version("redis"),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "latency_ms": {"redis_blocking": redis_stats, "naive_sleep_loop": naive_stats},
        "p50_speedup": round(naive_stats["p50"] / redis_stats["p50"], 1),
        "idle": {
            "waiters": args.waiters,
            "window_s": args.window,
            "redis_waiters_parked_in_xread": parked,
            "redis_blocking_commands": redis_idle,
            "redis_blocking_commands_per_s_per_waiter": round(redis_idle / per_waiter, 3),
            "naive_sql_queries": naive_idle,
            "naive_sql_queries_per_s_per_waiter": round(naive_idle / per_waiter, 3),
        },
    }
    report["goals_met"] = {
        "redis_p50_at_most_5ms": redis_stats["p50"] <= 5,
        "p50_at_least_50x_better": report["p50_speedup"] >= 50,
        "zero_commands_per_idle_waiter": redis_idle == 0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
