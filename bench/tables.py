"""Tables for the docs, rendered from bench/results/*.json when the site is built.

A page writes `<!-- bench-table: fanout -->` where a table belongs; this mkdocs hook (`hooks:` in
mkdocs.yml) replaces it with the table made from `bench/results/fanout.json`. The numbers on the
site are the benchmark's output, never typed by hand; an unknown table name fails the build.

A number in a sentence comes the same way:
`<!-- bench-value: fanout memory[design=sidestream,streams=1000].bytes_per_stream kB -->`
is replaced by that value of `bench/results/fanout.json`. The path is dotted keys; a list is
indexed by position (`fanout.0`) or, better, by the one element whose fields have the values
in brackets (`fanout[design=naive,subscribers=1000]`); a key with spaces or dots is
written in brackets (`goals[1000 subscribers]`). The optional last word formats the value:
`kB`/`MB`/`GB` (bytes, 1 decimal), `int` (thousands separated), `%` (a fraction as a percentage)
or a Python format spec (`.1f`, `,.0f`). A path that leads nowhere fails the build.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MARKER = re.compile(r"<!-- bench-table: ([a-z_]+) -->")
VALUE = re.compile(r"<!-- bench-value: ([a-z_]+) ((?:[^\s\[]|\[[^\]]*\])+)(?: (\S+))? -->")
_SEGMENT = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _int(value: float) -> str:
    return f"{value:,.0f}"


# What the benchmarks call each design, as a reader would.
DESIGNS = {
    "sidestream": "sidestream (one subscription per process)",
    "naive": "one Redis connection per client",
    "bare": "bare uvicorn + Falcon, no fan-out",
}


def _design(name: str) -> str:
    return DESIGNS.get(name, name)


def _load(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def fanout(data: dict[str, Any]) -> str:
    rows = [
        [
            _design(run["design"]),
            _int(run["subscribers"]),
            _int(run["lost"]),
            f"{run['p50_ms']:,} / {run['p99_ms']:,}",
            _int(run["deliveries_per_cpu_s"]),
            _load(run.get("load_average_1min")),
        ]
        for run in data["fanout"]
    ]
    header = ["design", "subscribers", "lost", "p50 / p99 (ms)", "deliveries per server CPU-s"]
    speed = _table([*header, "machine load (1 min)"], rows)
    memory = _table(
        ["design", "idle streams", "server memory per stream (KB)"],
        [
            [_design(m["design"]), _int(m["streams"]), f"{m['bytes_per_stream'] / 1000:.1f}"]
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


_PAYLOADS = {"json": "JSON", "text": "multi-line text"}


def sse_encode(data: dict[str, Any]) -> str:
    return _table(
        ["payload", "`sse.encode` (ns)", "Falcon `SSEvent` (ns)", "bare f-string, unsafe (ns)"],
        [
            [
                f"{_PAYLOADS.get(name.split('_')[0], name)} ({case['data_bytes']:,} B)",
                round(case["sidestream_encode_ns"]),
                round(case["falcon_ssevent_ns"]),
                round(case["fstring_ns"]),
            ]
            for name, case in data["cases"].items()
        ],
    )


def redis_shard(data: dict[str, Any]) -> str:
    return _table(
        ["case", "subscribers", "commands per round trip", "per Redis CPU-second (median)"],
        [
            [
                f"`{case['command']}` ({name.replace('_', ' ')})",
                case["subscribers"],
                case["pipeline"],
                _int(case["per_server_cpu_s_median"]),
            ]
            for name, case in data["cases"].items()
        ],
    )


def channels(data: dict[str, Any]) -> str:
    run = data["run"]
    header = ["channels, one stream each", "events", "lost", "p50 / p99 (ms)", "events per CPU-s"]
    latency = f"{run['p50_ms']:,} / {run['p99_ms']:,}"
    cells = [run["channels"], run["events"], run["lost"]]
    rate, load = _int(run["events_per_cpu_s"]), _load(run.get("load_average_1min"))
    return _table([*header, "machine load (1 min)"], [[*map(_int, cells), latency, rate, load]])


def _bytes(value: float) -> str:
    return f"{value / 1e9:,.1f} GB" if value >= 1e9 else f"{value / 1e6:,.1f} MB"


def _scaling_rows(data: dict[str, Any], share: str) -> list[list[object]]:
    """capacity: what more processes and more shards measured, as the model uses it."""
    if "processes" not in data:
        return []
    scaling, cluster = data["processes"], data["redis_cluster"]
    n, shards = scaling["measured_processes"], cluster["measured_shards"]
    return [
        [f"Service processes: deliveries per CPU-s of each of {n}, against one process",
         f"{scaling['per_cpu_ratio']:.2f}"],
        ["Redis Cluster node: publishes per CPU-s, against one Redis (same script)",
         f"{cluster['cluster_node_ratio']:.2f}"],
        [f"Redis Cluster: publishes of {shards} shards, against {shards} times one",
         f"{cluster['shard_scaling']:.2f}"],
        [f"Redis Cluster shard at {share}: publishes/s, one per round trip",
         _int(cluster["publishes_per_s"])],
        [f"Redis Cluster shard at {share}: publishes/s, pipelined",
         _int(cluster["publishes_per_s_pipelined"])],
    ]  # fmt: skip


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _checked_run(check: dict[str, Any]) -> str:
    if check["benchmark"] == "cluster_publish":
        return f"cluster publish: {_plural(check['shards'], 'shard', 'shards')}"
    processes = _plural(check["processes"], "process", "processes")
    streams = f"{check['streams_per_process']:,} streams each on one channel"
    return f"{'fan-out' if check['benchmark'] == 'fanout' else 'processes'}: {processes}, {streams}"


def _model_check(checks: list[dict[str, Any]]) -> str:
    """capacity: the model beside each measured run, its error, and what it took from the run."""
    return _table(
        ["measured run", "figure", "measured", "the model's", "model error",
         "the model took from this run"],
        [
            [
                _checked_run(c),
                c["figure"],
                _int(c["measured"]),
                _int(c["model"]),
                f"{c['model'] / c['measured'] - 1:+.0%}",
                c["fitted_here"] or "nothing (a prediction)",
            ]
            for c in checks
        ],
    )  # fmt: skip


def capacity(data: dict[str, Any]) -> str:
    service, redis, budget = data["service_process"], data["redis_shard"], data["assumptions"]
    share = f"{budget['cpu_budget']:.0%} of a core"
    gib = f"{budget['memory_per_process_bytes'] / 2**30:g} GiB"
    units = _table(
        ["", "figure"],
        [
            ["Service process: CPU per event read from Redis", f"{service['cpu_us_per_event']} µs"],
            ["Service process: CPU per event written to a stream",
             f"{service['cpu_us_per_delivery']} µs"],
            [f"Service process at {share}: deliveries/s on shared channels",
             _int(service["deliveries_per_s_shared"])],
            [f"Service process at {share}: events/s, one stream per channel",
             _int(service["events_per_s_unshared"])],
            [f"Service process: idle streams in {gib}", _int(service["streams_by_memory"])],
            [f"Redis shard at {share}: publishes/s, one per round trip",
             _int(redis["publishes_per_s"])],
            [f"Redis shard at {share}: publishes/s, pipelined",
             _int(redis["publishes_per_s_pipelined"])],
            [f"Redis shard: memory per retained event ({redis['event_bytes']} B of data)",
             f"{redis['bytes_per_retained_event']} B"],
            *_scaling_rows(data, share),
        ],
    )  # fmt: skip
    rows: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
        ("streams", lambda w: _int(w["streams"])),
        ("channels", lambda w: _int(w["channels"])),
        ("events/s per channel", lambda w: f"{w['events_per_s_per_channel']:g}"),
        ("publishes/s", lambda w: _int(w["publishes_per_s"])),
        ("deliveries/s", lambda w: _int(w["deliveries_per_s"])),
        ("service processes for the CPU", lambda w: w["service_processes_by_cpu"]),
        ("service processes for the memory", lambda w: w["service_processes_by_memory"]),
        ("Redis shards for the publishes", lambda w: w["redis_shards_by_cpu"]),
        (
            "Stream history when every channel is full",
            lambda w: _bytes(w["history_bytes_when_full"]),
        ),
    ]
    if "redis_shards" in data["workloads"][0]:
        shard_gib = f"{budget['memory_per_shard_bytes'] / 2**30:g} GiB"
        rows += [
            (f"Redis shards for the history ({shard_gib} each)",
             lambda w: w["redis_shards_by_memory"]),
            ("**service processes needed**", lambda w: f"**{w['service_processes']}**"),
            ("**Redis shards needed**", lambda w: f"**{w['redis_shards']}**"),
        ]  # fmt: skip
    workloads = _table(
        ["workload", *(w["name"] for w in data["workloads"])],
        [[label, *(cell(w) for w in data["workloads"])] for label, cell in rows],
    )
    if "model_check" in data:
        return f"{units}\n\n{workloads}\n\n{_model_check(data['model_check'])}"
    checks = service.get("model_check", [])
    if not checks:
        return f"{units}\n\n{workloads}"
    model = _table(
        ["subscribers", "measured deliveries per CPU-s", "the model's", "model error"],
        [
            [
                _int(c["subscribers"]),
                _int(c["measured_deliveries_per_cpu_s"]),
                _int(c["model_deliveries_per_cpu_s"]),
                f"{c['model_deliveries_per_cpu_s'] / c['measured_deliveries_per_cpu_s'] - 1:+.0%}",
            ]
            for c in checks
        ],
    )
    return f"{units}\n\n{workloads}\n\n{model}"


def websocket(data: dict[str, Any]) -> str:
    def deflate(run: dict[str, Any]) -> str:
        return "on" if run["per_message_deflate"] else "off"

    header = ["sockets", "compression", "lost", "p50 / p99 (ms)", "deliveries per server CPU-s"]
    speed = _table(
        [*header, "machine load (1 min)"],
        [
            [
                _int(run["sockets"]),
                deflate(run),
                _int(run["loss"]),
                f"{run['p50_ms']:,} / {run['p99_ms']:,}",
                _int(run["delivered"] / run["server_cpu_s"]),
                _load(run.get("load_average")),
            ]
            for run in data["round_trip"]
        ],
    )
    memory = _table(
        ["design", "idle sockets", "compression", "server memory per socket (KB)"],
        [
            [
                "bare uvicorn + websockets, no fan-out"
                if m["design"] == "bare"
                else _design(m["design"]),
                _int(m["sockets"]),
                deflate(m),
                f"{m['bytes_per_socket'] / 1000:.1f}",
            ]
            for m in data["memory"]
        ],
    )
    return f"{speed}\n\n{memory}"


def _links(urls: list[str]) -> str:
    """Each page by its site and the last part of its path: `devcenter.heroku.com: http-routing`."""
    names = [url.split("#")[0].rstrip("/").split("/") for url in urls]
    return ", ".join(
        f"[{parts[2]}: {parts[-1].removesuffix('.html')}]({url})"
        for parts, url in zip(names, urls, strict=True)
    )


def long_poll_limit(row: dict[str, Any]) -> float | None:
    """How long a response may take before its first byte (a long poll's whole wait)."""
    limits = [row[key] for key in ("first_byte_s", "idle_s", "total_s") if row[key] is not None]
    return min(limits) if limits else None


def _stream_fit(row: dict[str, Any], service: dict[str, Any]) -> str:
    beat, ping = service["heartbeat_s"], service["ws_ping_interval_s"]
    if row["idle_s"] is None:
        return f"no idle limit; a stream ends after {row['total_s']:g} s and resumes by id"
    verdict = "fit" if max(beat, ping) < row["idle_s"] else "**too long**: lower them"
    return f"{beat:g} s / {ping:g} s {verdict} under {row['idle_s']:g} s"


def _long_poll_fit(row: dict[str, Any], service: dict[str, Any]) -> str:
    limit, longest = long_poll_limit(row), service["long_poll_max_s"]
    if limit is None or longest < limit:
        return f"up to {longest:g} s fits"
    default = service["long_poll_default_s"]
    too_long = f"**{longest:g} s does not fit under {limit:g} s**"
    return f"{too_long}: ask for `timeout={default:g}` or less"


def platforms(data: dict[str, Any]) -> str:
    service = data["service"]
    return _table(
        ["platform", "closes a connection after (documented default)", "to change it",
         "response buffering", "heartbeat / WebSocket ping", "long poll", "source"],
        [
            [row["name"], row["limit"], row["change"], row["buffering"],
             _stream_fit(row, service), _long_poll_fit(row, service), _links(row["sources"])]
            for row in data["platforms"]
        ],
    )  # fmt: skip


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _flow(row: dict[str, Any]) -> str:
    flow = row["flow"]
    first, end = flow["first_event_s"], flow["response_end_s"]
    if flow["flows"]:
        return f"yes ({_seconds(first)} / {_seconds(end)})"
    if first is None:
        return f"no ({flow['events']} events, status {flow['status']})"
    return f"no (all {flow['events']} at {_seconds(first)})"


def _websocket(row: dict[str, Any]) -> str:
    socket = row["websocket"]
    if socket["works"]:
        return "yes"
    status = re.search(r"HTTP (\d{3})", socket["error"] or "")
    return f"no (HTTP {status[1]})" if status else f"no ({socket['error'].split(':')[0]})"


def _holds(row: dict[str, Any]) -> str:
    holds = row["holds"]
    if holds["reached_bound"]:
        return f"{holds['holds']}+ (the bound)"
    return f"{holds['holds']} (waits at {holds['steps'][-1]['streams']})"


def _api_ms(row: dict[str, Any]) -> str:
    good = [s for s in row["holds"]["steps"] if s["streams"] <= row["holds"]["holds"]]
    return f"{good[-1]['api_ms']:g} ms" if good else "—"


def _disconnect(row: dict[str, Any]) -> str:
    left = row["disconnect"]
    return _seconds(left["after_s"]) if left["noticed"] else f"no ({left['error']})"


def _sigterm(row: dict[str, Any]) -> str:
    term = row["sigterm"]
    ended = [e for e in term["streams_ended_s"] if e is not None]
    if not term["exited"] and len(ended) == len(term["streams_ended_s"]):
        cut = _seconds(max(ended))
        return f"keeps running: streams cut at {cut}, killed at {term['bound_s']:g} s"
    if not term["exited"]:
        return f"hangs (killed at {term['bound_s']:g} s)"
    streams = "" if len(ended) == len(term["streams_ended_s"]) else ", a stream stays open"
    return f"exits in {_seconds(term['exit_s'])}{streams}"


def _error_line(output: str) -> str:
    """The line of a server's output that names its error (else its last line)."""
    lines = output.splitlines()
    return next((line.strip() for line in reversed(lines) if "Error" in line), lines[-1])


def servers(data: dict[str, Any]) -> str:
    """The server table, the errors of those that did not run, and how the run was made."""
    header = ["server", "app", "SSE flows (first event / end)", "WebSocket",
              "streams a worker holds", "plain request then", "closed client noticed after",
              "SIGTERM, 2 streams open"]  # fmt: skip
    rows = []
    for row in data["servers"]:
        if row["status"] != "ran":
            cells = [row["status"], *["—"] * 5]
        else:
            cells = [_flow(row), _websocket(row), _holds(row), _api_ms(row),
                     _disconnect(row), _sigterm(row)]  # fmt: skip
        rows.append([row["name"], row["flavour"], *cells])
    parts = [_table(header, rows)]
    failed = [row for row in data["servers"] if row["status"] != "ran"]
    if failed:
        parts.append(
            _table(
                ["server", "why it did not run here (its error)"],
                [[row["name"], f"`{_error_line(row['error'])}`"] for row in failed],
            )
        )
    machine, load, params = data["machine"], data["load_average"], data["parameters"]
    versions = ", ".join(f"{name} {version}" for name, version in data["versions"].items())
    parts.append(_table(
        ["the run", ""],
        [
            ["command", f"`{data['command']}`"],
            ["machine", f"{machine['cpus']} CPUs, {machine['system']}, Python {machine['python']}"],
            ["load average (1, 5, 15 min) at start / end",
             f"{', '.join(map(str, load['start']))} / {', '.join(map(str, load['end']))}"],
            ["event interval on every stream", _seconds(params["interval_s"])],
            ["streams opened, step by step", ", ".join(map(str, params["ramp"]))],
            ["a plain request waits when slower than", _seconds(params["stall_s"])],
            ["SIGTERM: killed when still running after", f"{params['term_bound_s']:g} s"],
            ["packages", versions],
        ],
    ))  # fmt: skip
    parts.append(
        _table(
            ["server", "started as (one worker; `PORT` a free loopback port)"],
            [[row["name"], f"`{row['command']}`"] for row in data["servers"]],
        )
    )
    return "\n\n".join(parts)


def mercure(data: dict[str, Any]) -> str:
    routes = {"events": "/events", "mercure": "Mercure route"}
    rows = [
        [
            routes.get(run["route"], run["route"]),
            _int(run["processes"]),
            _int(run["subscribers"]),
            _int(run["lost"]),
            f"{run['p50_ms']:,} / {run['p99_ms']:,}",
            _int(run["deliveries_per_cpu_s"]),
            _load(run.get("load_average_1min")),
        ]
        for run in data["runs"]
    ]
    header = ["route", "processes", "subscribers", "lost", "p50 / p99 (ms)"]
    return _table([*header, "deliveries per server CPU-s", "machine load (1 min)"], rows)


# tests/reliability's fault tests, as a reader would name them (guarantees.json).
FAULTS = {
    "test_redis_restart_with_aof_loses_nothing": "Redis killed (SIGKILL) and restarted, AOF",
    "test_service_sigkill_and_restart_loses_nothing": "service killed (SIGKILL) and restarted",
    "test_redis_and_service_killed_at_once_lose_nothing": "Redis and the service killed at once",
    "test_rolling_restart_of_two_services_loses_nothing": "rolling restart of two services",
    "test_poison_message_is_skipped_and_hurts_no_one": "foreign messages on a live channel",
    "test_invalid_stream_entry_from_a_foreign_writer_is_skipped": "invalid entries in a Stream",
    "test_a_foreign_entrys_prev_field_is_not_taken_for_a_history_gap": (
        "invalid entries in a Stream, one with a forged `prev`"
    ),
    "test_stalled_reader_is_cut_off_and_others_get_everything": "a client that never reads",
}
SUITES = {
    "test_bad_input": "bad HTTP requests (service, Flask API, extension), two `Accept` headers",
    "test_ws_bad_input": "bad WebSocket handshakes and frames",
    "test_cursors": "cursors newer than the stream (SSE and long poll)",
    "test_faults": "faults (the table above)",
}


def guarantees(data: dict[str, Any]) -> str:
    faults = _table(
        [
            "fault",
            "clients",
            "events acknowledged",
            "lost",
            "duplicated",
            "out of order",
            "client reconnects",
            "publishes refused meanwhile",
            "test",
        ],
        [
            [
                FAULTS.get(name, name),
                _int(run["clients"]),
                _int(run["acknowledged"]),
                _int(run["lost"]),
                _int(run["duplicated"]),
                _int(run["out_of_order"]),
                _int(run["reconnects"]),
                _int(run["publish_failures"]),
                run["outcome"],
            ]
            for name, run in data["faults"].items()
        ],
    )
    suites = _table(
        ["suite", "cases", "passed", "failed"],
        [
            [SUITES.get(name, name), _int(s["cases"]), _int(s["passed"]), _int(s["failed"])]
            for name, s in data["suites"].items()
        ],
    )
    load = data["load_average"]
    run = _table(
        ["run", "seconds", "CPUs", "machine load (1 min) at start / end"],
        [
            [
                "`pytest tests/reliability`",
                f"{data['duration_s']:.0f}",
                data["machine"]["cpus"],
                f"{_load(load['start'][0])} / {_load(load['end'][0])}",
            ]
        ],
    )
    return f"{faults}\n\n{suites}\n\n{run}"


def soak(data: dict[str, Any]) -> str:
    series = [
        ("service memory (RSS, KB)", data["rss_kb"], 1, ",.0f", ".1f"),
        ("open file descriptors", data["fds"], 1, ",.0f", ".2f"),
        ("Redis connections (`CLIENT LIST`)", data["redis_connections"], 1, ",.0f", ".2f"),
    ]
    footprint = _table(
        ["", "first sample", "last sample", "min", "max", "slope per minute after warm-up"],
        [
            [
                label,
                *(format(s[key] * scale, spec) for key in ("first", "last", "min", "max")),
                format(s["slope_per_min"] * scale, slope_spec),
            ]
            for label, s, scale, spec, slope_spec in series
        ],
    )
    p, d, load = data["parameters"], data["delivery"], data["load_average"]
    run = _table(
        [
            "streams",
            "channels",
            "minutes",
            "events per second",
            "events delivered",
            "lost / duplicated / out of order",
            "machine load (1 min) at start / end",
        ],
        [
            [
                _int(p["streams"]),
                _int(p["channels"]),
                f"{p['minutes']:g}",
                f"{p['publish_rate_per_s']:g}",
                _int(d["delivered"]),
                f"{d['lost']} / {d['duplicated']} / {d['out_of_order']}",
                f"{_load(load['start'][0])} / {_load(load['end'][0])}",
            ]
        ],
    )
    return f"{footprint}\n\n{run}"


def processes(data: dict[str, Any]) -> str:
    """bench/processes.py: the service on 1 and N processes, median round of each."""
    rows = [
        [
            run["processes"],
            _int(run["subscribers_per_process"] * run["processes"]),
            _int(run["deliveries_per_s"]),
            ", ".join(_int(n) for n in run["rounds_deliveries_per_s"]),
            f"{run['speedup']:.2f}x",
            f"{run['p50_ms']:,} / {run['p99_ms']:,}",
            _int(run["rounds_lost"]),
            _int(run["deliveries_per_server_cpu_s"]),
            f"{run['cores_busy']:.2f}",
            _load(run["load_average_1min"]),
        ]
        for run in data["summary"]
    ]
    header = [
        "service processes",
        "streams",
        "deliveries per second (median round)",
        "every round",
        "vs one process",
        "p50 / p99 while draining the burst (ms)",
        "lost (all rounds)",
        "deliveries per server CPU-s",
        "cores busy (servers + load generator)",
        "machine load (1 min)",
    ]
    return _table(header, rows)


def cluster_publish(data: dict[str, Any]) -> str:
    """bench/cluster_publish.py: the bus's publish script on 1 and 3 shards, median round."""
    rows = [
        [
            run["shards"],
            _int(run["publishes_per_s"]),
            _int(run["publishes_per_s_core_each"]),
            " / ".join(_int(n) for n in run["per_shard"]),
            _load(run["load_average_1min"]),
        ]
        for run in data["summary"]
    ]
    header = [
        "shards (masters)",
        "publishes per second (this machine)",
        "publishes per second if each shard has a core",
        "publishes per shard",
        "machine load (1 min)",
    ]
    return _table(header, rows)


def _peer_cell(run: dict[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    value = run.get(key)
    return "—" if value is None else fmt(value)


def _peer_case(data: dict[str, Any], pattern: str, streams: int) -> str:
    """One table: every peer at one size of one pattern, with its ratio to Nchan."""
    runs = [r for r in data["runs"] if r["pattern"] == pattern and r["streams"] == streams]
    labels = {name: peer["label"] for name, peer in data["peers"].items()}
    nchan = next((r for r in runs if r["peer"] == "nchan" and "error" not in r), None)
    header = [
        "server",
        "lost",
        "duplicated",
        "p50 / p99 (ms)",
        "deliveries per server CPU-s",
        "vs Nchan's (ratio)",
        "memory per idle stream (KB)",
        "Redis connections",
        "machine load (1 min)",
    ]
    rows: list[list[object]] = []
    for run in runs:
        label = labels.get(run["peer"], run["peer"])
        if "error" in run:
            rows.append([label, f"failed: {run['error']}", *[""] * (len(header) - 2)])
            continue
        ratio = "—"
        if nchan and run.get("deliveries_per_cpu_s") and nchan.get("deliveries_per_cpu_s"):
            ratio = f"{run['deliveries_per_cpu_s'] / nchan['deliveries_per_cpu_s']:.2f}"
        latency = "—"
        if run.get("p50_ms") is not None:
            latency = f"{run['p50_ms']:,.1f} / {run['p99_ms']:,.1f}"
        rows.append(
            [
                label,
                _peer_cell(run, "lost", _int),
                _peer_cell(run, "duplicates", _int),
                latency,
                _peer_cell(run, "deliveries_per_cpu_s", _int),
                ratio,
                _peer_cell(run, "idle_bytes_per_stream", lambda b: f"{b / 1000:.1f}"),
                _peer_cell(run, "redis_connections", _int),
                _load(run.get("load_average_1min")),
            ]
        )
    return _table(header, rows)


def peers(data: dict[str, Any]) -> str:
    """bench/peers.py: each size of each pattern, then how it was run and with what."""
    s = data["settings"]
    parts = []
    floors = {name for name, peer in data["peers"].items() if peer.get("kind") == "bare"}
    cases = sorted({(r["pattern"], r["streams"]) for r in data["runs"] if r["peer"] not in floors})
    for pattern, streams in sorted(cases, key=lambda c: (c[0] != "fanout", c[1])):
        if pattern == "fanout":
            title = (
                f"**{streams:,} streams on one channel**, {s['rate_per_s']:g} events/s "
                f"for {s['seconds']:g} s"
            )
        else:
            title = (
                f"**One stream per channel, {streams:,} channels**, "
                f"{s['channel_rate_per_s']:,g} events/s in all for {s['seconds']:g} s"
            )
        parts += [title, _peer_case(data, pattern, streams)]
    floor = [r for r in data["runs"] if r["peer"] in floors and "error" not in r]
    if floor:
        parts += [
            "**The floor**: the server stack alone holding idle streams",
            _table(
                ["server", "idle streams", "memory per idle stream (KB)"],
                [
                    [
                        data["peers"][r["peer"]]["label"],
                        _int(r["streams"]),
                        f"{r['idle_bytes_per_stream'] / 1000:.1f}",
                    ]
                    for r in floor
                ],
            ),
        ]
    m = data["machine"]
    load = data["load_average_end"]
    parts.append(
        _table(
            ["the run", ""],
            [
                ["command", f"`{data['command']}`"],
                ["started (UTC), minutes", f"{data['started_utc']}, {data['duration_s'] / 60:.0f}"],
                ["machine", f"{m['cpus']} CPUs: {m['cpu']}, Python {m['python']}"],
                ["machine load at the end (1 / 5 / 15 min)", " / ".join(f"{x:.2f}" for x in load)],
                ["streams that parse and time every event", _int(s["sampled_streams"])],
                ["runs per row (median)", _int(s["repeats"])],
                ["seconds allowed after the last publish", f"{s['drain_s']:g}"],
                *(
                    [["before each run, the machine idle for a second at least", f"{q:.0%}"]]
                    for q in [s.get("quiet_idle_share")]
                    if q is not None
                ),
                [
                    "Pushpin's message_rate: stock / raised",
                    f"{_int(s['pushpin_stock_message_rate'])} / "
                    f"{_int(s['pushpin_raised_message_rate'])}",
                ],
            ],
        )
    )
    v = data["versions"]
    python_packages = {**v["peers_venv"], **{f"{k} (sidestream's)": x for k, x in
                                            v["project_venv"].items() if x}}  # fmt: skip
    parts.append(
        _table(
            ["software", "version"],
            [
                ["redis-server", v["redis-server"]],
                [
                    "nginx / libnginx-mod-nchan (Debian)",
                    f"{v['nginx']} / {v['libnginx-mod-nchan']}",
                ],
                ["pushpin (Debian)", v["pushpin"]],
                *[[name, version] for name, version in sorted(python_packages.items())],
            ],
        )
    )
    return "\n\n".join(parts)


def profile(data: dict[str, Any]) -> str:
    """bench/peers.py --profile: where the service's CPU goes, per load, from py-spy's samples."""
    cases = data["cases"]
    names = list(cases)
    categories: list[str] = []
    for case in cases.values():
        categories += [c for c in case["percent_by_category"] if c not in categories]
    share = _table(
        ["where the samples were (innermost known frame)", *names],
        [
            [c, *(f"{cases[n]['percent_by_category'].get(c, 0):.1f} %" for n in names)]
            for c in categories
        ],
    )
    parts = [share]
    for name in names:
        top = cases[name]["top_own_time"][:8]
        parts += [
            f"**Most samples of their own**: {name}",
            _table(
                ["function (file:line)", "share of samples"],
                [[f"`{t['function']}`", f"{t['percent']:.1f} %"] for t in top],
            ),
        ]
    parts.append(
        _table(
            ["profile", ""],
            [
                ["command", f"`{data['command']}`"],
                ["profiler", data["tool"]],
                ["machine load (1 min) at the start", _load(data["load_average_1min"])],
            ],
        )
    )
    return "\n\n".join(parts)


TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "capacity": capacity,
    "channels": channels,
    "cluster_publish": cluster_publish,
    "fanout": fanout,
    "guarantees": guarantees,
    "longpoll": longpoll,
    "mercure": mercure,
    "peers": peers,
    "peers_scale": peers,  # bench/peers.py with --output bench/results/peers_scale.json
    "platforms": platforms,
    "processes": processes,
    "profile": profile,
    "redis_shard": redis_shard,
    "servers": servers,
    "soak": soak,
    "sse_encode": sse_encode,
    "websocket": websocket,
}


def render(name: str) -> str:
    """The Markdown table for `bench/results/<name>.json`."""
    if name not in TABLES:
        raise KeyError(f"no bench table {name!r}; known: {', '.join(sorted(TABLES))}")
    return TABLES[name](json.loads((RESULTS / f"{name}.json").read_text()))


def lookup(data: Any, path: str) -> Any:
    """The value at `path` (see the module's docstring); KeyError naming the step that fails."""
    node = data
    for match in _SEGMENT.finditer(path):
        bracket, key = match[1], match[2]
        if bracket == "*":  # every element: the rest of the path is looked up in each
            rest = path[match.end() :].lstrip(".")
            if not isinstance(node, list) or not node:
                raise KeyError(f"{path}: [*] needs a list")
            return [lookup(item, rest) if rest else item for item in node]
        if bracket is not None and "=" in bracket:
            wanted = dict(condition.split("=", 1) for condition in bracket.split(","))
            items = node.values() if isinstance(node, dict) else node
            found = [
                item
                for item in items
                if isinstance(item, dict)
                and all(str(item.get(field)) == text for field, text in wanted.items())
            ]
            if len(found) != 1:
                raise KeyError(f"{path}: {len(found)} elements have {bracket}")
            node = found[0]
            continue
        step = bracket if bracket is not None else key
        if isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        else:
            raise KeyError(f"{path}: no {step!r} here")
    return node


def format_value(value: Any, spec: str | None) -> str:
    if isinstance(value, list):  # "100, 1,000 and 5,000": each distinct value once, in order
        texts = list(dict.fromkeys(format_value(item, spec) for item in value))
        return " and ".join([", ".join(texts[:-1]), texts[-1]] if len(texts) > 1 else texts)
    if isinstance(value, dict) and spec == "items":  # "a: 1; b: 2"
        return "; ".join(f"{key}: {format_value(item, None)}" for key, item in value.items())
    if spec in {"kB", "MB", "GB"}:
        return f"{value / {'kB': 1e3, 'MB': 1e6, 'GB': 1e9}[spec]:,.1f}"
    if spec == "int":
        return f"{value:,.0f}"
    if spec == "%":
        return f"{value:.0%}"
    if spec:
        return format(value, spec)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}"


def value(name: str, path: str, spec: str | None = None) -> str:
    """The text of `<!-- bench-value: NAME PATH [SPEC] -->`."""
    file = RESULTS / f"{name}.json"
    if not file.is_file():
        raise KeyError(f"no bench results {name!r} (bench/results/{name}.json)")
    try:
        return format_value(lookup(json.loads(file.read_text()), path), spec)
    except KeyError as error:
        raise KeyError(f"bench-value {name} {path}: {error.args[0]}") from None


def on_page_markdown(markdown: str, **_: object) -> str:
    """mkdocs hook: replace each `<!-- bench-table: NAME -->` with its table and each
    `<!-- bench-value: NAME PATH [SPEC] -->` with its value."""
    markdown = MARKER.sub(lambda match: render(match[1]), markdown)
    return VALUE.sub(lambda match: value(match[1], match[2], match[3]), markdown)
