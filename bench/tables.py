"""Tables for the docs, rendered from bench/results/*.json when the site is built.

A page writes `<!-- bench-table: fanout -->` where a table belongs; this mkdocs hook (`hooks:` in
mkdocs.yml) replaces it with the table made from `bench/results/fanout.json`. The numbers on the
site are the benchmark's output, never typed by hand; an unknown table name fails the build.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MARKER = re.compile(r"<!-- bench-table: ([a-z_]+) -->")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _int(value: float) -> str:
    return f"{value:,.0f}"


def fanout(data: dict[str, Any]) -> str:
    rows = [
        [
            run["design"],
            _int(run["subscribers"]),
            _int(run["lost"]),
            f"{run['p50_ms']:,} / {run['p99_ms']:,}",
            _int(run["deliveries_per_cpu_s"]),
        ]
        for run in data["fanout"]
    ]
    speed = _table(
        ["design", "subscribers", "lost", "p50 / p99 (ms)", "deliveries per server CPU-s"], rows
    )
    memory = _table(
        ["design", "idle streams", "server memory per stream (KB)"],
        [
            [m["design"], _int(m["streams"]), f"{m['bytes_per_stream'] / 1000:.1f}"]
            for m in data["memory"]
        ],
    )
    return f"{speed}\n\n{memory}"


def longpoll(data: dict[str, Any]) -> str:
    latency, idle = data["latency_ms"], data["idle"]
    return _table(
        ["", "wake-up p50 (ms)", "wake-up p99 (ms)", "work per idle waiter"],
        [
            [
                "Redis-blocking (`XREAD BLOCK`)",
                latency["redis_blocking"]["p50"],
                latency["redis_blocking"]["p99"],
                f"{idle['redis_blocking_commands_per_s_per_waiter']} Redis commands/s",
            ],
            [
                "naive `sleep(0.5)` loop",
                latency["naive_sleep_loop"]["p50"],
                latency["naive_sleep_loop"]["p99"],
                f"{idle['naive_sql_queries_per_s_per_waiter']} SQL queries/s",
            ],
        ],
    )


def sse_encode(data: dict[str, Any]) -> str:
    return _table(
        ["payload", "`sse.encode` (ns)", "Falcon `SSEvent` (ns)", "bare f-string, unsafe (ns)"],
        [
            [
                f"{name} ({case['data_bytes']:,} B)",
                round(case["sidestream_encode_ns"]),
                round(case["falcon_ssevent_ns"]),
                round(case["fstring_ns"]),
            ]
            for name, case in data["cases"].items()
        ],
    )


TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "fanout": fanout,
    "longpoll": longpoll,
    "sse_encode": sse_encode,
}


def render(name: str) -> str:
    """The Markdown table for `bench/results/<name>.json`."""
    if name not in TABLES:
        raise KeyError(f"no bench table {name!r}; known: {', '.join(sorted(TABLES))}")
    return TABLES[name](json.loads((RESULTS / f"{name}.json").read_text()))


def on_page_markdown(markdown: str, **_: object) -> str:
    """mkdocs hook: replace each `<!-- bench-table: NAME -->` with its table."""
    return MARKER.sub(lambda match: render(match[1]), markdown)
