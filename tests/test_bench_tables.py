"""bench/tables.py: the docs' benchmark tables come from bench/results/*.json, number for number."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import tables  # noqa: E402


def results(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())


def test_fanout_table_has_every_run_and_memory_row() -> None:
    table = tables.render("fanout")
    data = results("fanout")
    for run in data["fanout"]:
        assert f"{run['p50_ms']:,} / {run['p99_ms']:,}" in table
        assert f"{run['deliveries_per_cpu_s']:,}" in table
    for row in data["memory"]:
        assert f"| {row['bytes_per_stream'] / 1000:.1f} |" in table


def test_websocket_table_has_every_run_and_memory_row() -> None:
    table = tables.render("websocket")
    data = results("websocket")
    for run in data["round_trip"]:
        assert f"{run['p50_ms']:,} / {run['p99_ms']:,}" in table
        assert f"{run['delivered'] / run['server_cpu_s']:,.0f}" in table
    for row in data["memory"]:
        assert f"| {row['bytes_per_socket'] / 1000:.1f} |" in table


def test_longpoll_table_shows_both_designs() -> None:
    table = tables.render("longpoll")
    latency = results("longpoll")["latency_ms"]
    for design in ("redis_blocking", "naive_sleep_loop"):
        assert f"| {latency[design]['p50']} | {latency[design]['p99']} |" in table


def test_sse_encode_table_has_every_case() -> None:
    table = tables.render("sse_encode")
    for name, case in results("sse_encode")["cases"].items():
        assert (
            f"| {name} ({case['data_bytes']:,} B) | {round(case['sidestream_encode_ns'])} |"
            in table
        )


def test_the_hook_replaces_markers_and_refuses_unknown_tables() -> None:
    page = "before\n<!-- bench-table: longpoll -->\nafter"
    assert tables.on_page_markdown(page) == f"before\n{tables.render('longpoll')}\nafter"
    with pytest.raises(KeyError, match="no bench table 'nope'"):
        tables.on_page_markdown("<!-- bench-table: nope -->")


def test_every_marker_on_the_site_names_a_table() -> None:
    names = {
        match[1]
        for page in (ROOT / "docs").rglob("*.md")
        for match in tables.MARKER.finditer(page.read_text())
    }
    assert names and names <= set(tables.TABLES)
