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
    for case in results("sse_encode")["cases"].values():
        assert f"({case['data_bytes']:,} B) | {round(case['sidestream_encode_ns'])} |" in table
    assert "json_" not in table and "JSON (" in table  # labels for readers, not JSON keys


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


def test_tables_label_columns_and_rows_for_readers() -> None:
    for name in tables.TABLES:
        header = tables.render(name).splitlines()[0]
        assert "_" not in header, f"{name}: a JSON key as a column label: {header}"
    fanout = tables.render("fanout")
    assert "one Redis connection per client" in fanout and "| naive |" not in fanout
    assert "machine load (1 min)" in fanout


def test_capacity_shows_the_models_error_against_the_measurements() -> None:
    table = tables.render("capacity")
    for check in results("capacity")["service_process"]["model_check"]:
        error = check["model_deliveries_per_cpu_s"] / check["measured_deliveries_per_cpu_s"] - 1
        assert f"| {error:+.0%} |" in table


def test_bench_value_renders_one_number_from_the_results() -> None:
    data = results("fanout")
    sidestream = [m for m in data["memory"] if m["design"] == "sidestream"]
    page = (
        "<!-- bench-value: fanout memory[design=sidestream,streams=1000].bytes_per_stream kB -->"
        " KB, at <!-- bench-value: fanout fanout[*].subscribers int --> subscribers;"
        " <!-- bench-value: fanout goals[idle stream] -->"
    )
    subscribers = list(dict.fromkeys(f"{r['subscribers']:,}" for r in data["fanout"]))
    assert tables.on_page_markdown(page) == (
        f"{next(m for m in sidestream if m['streams'] == 1000)['bytes_per_stream'] / 1000:.1f}"
        f" KB, at {', '.join(subscribers[:-1])} and {subscribers[-1]} subscribers;"
        f" {data['goals']['idle stream']}"
    )


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("fanout memory.nope", "no 'nope' here"),
        ("fanout memory[design=nobody].streams", "0 elements have design=nobody"),
        ("fanout memory[design=sidestream].streams", "2 elements have design=sidestream"),
        ("nothing rate_per_s", "no bench results 'nothing'"),
    ],
)
def test_bench_value_fails_the_build_on_a_path_that_leads_nowhere(
    marker: str, message: str
) -> None:
    with pytest.raises(KeyError, match=message.replace("[", r"\[")):
        tables.on_page_markdown(f"<!-- bench-value: {marker} -->")
