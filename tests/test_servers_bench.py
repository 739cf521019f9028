"""bench/servers.py: its measurements can come out both ways, and the page's table is its JSON.

The fake servers here are the control: one sends the same four events as a stream, the other
holds them and sends them at the end, and the flow check must tell them apart. The smoke run
starts real gunicorn (sync worker) and uvicorn from this venv on the two apps of
bench/servers/ and checks the findings that do not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import servers  # noqa: E402
import tables  # noqa: E402

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
EVENTS = [f"id: {n}\ndata: {n}\n\n".encode() for n in range(4)]
Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_server(handle: Handler) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await handle(writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def streaming(writer: asyncio.StreamWriter) -> None:
    writer.write(HEAD)
    for event in EVENTS:
        writer.write(event)
        await writer.drain()
        await asyncio.sleep(servers.INTERVAL)


async def buffering(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(servers.INTERVAL * 4)
    writer.write(HEAD + b"".join(EVENTS))
    await writer.drain()


async def test_the_flow_check_tells_a_stream_from_a_buffered_response() -> None:
    async with fake_server(streaming) as port:
        flowing = await servers.check_flow(port)
    async with fake_server(buffering) as port:
        buffered = await servers.check_flow(port)
    assert (flowing["flows"], flowing["events"], flowing["status"]) == (True, 4, 200)
    assert (buffered["flows"], buffered["events"], buffered["status"]) == (False, 4, 200)


def test_raw_response_parsing() -> None:
    raw = HEAD + b"".join(EVENTS) + b"data: not at a line start? data: x\n"
    assert servers.status_of(raw) == 200
    assert servers.status_of(b"HTTP/1.0 503 Service Unavailable\r\n") == 503
    assert servers.status_of(b"garbage") == 0
    assert servers.events_in(raw) == 5
    assert servers.events_in(b"HTTP/1.1 200 OK\r\n") == 0  # headers not complete: no body yet


def test_flow_verdict_needs_every_event_and_an_interval_between_first_and_end() -> None:
    assert servers.flow_verdict(0.01, 1.5, 4)
    assert not servers.flow_verdict(1.49, 1.5, 4)  # all at the end: buffered
    assert not servers.flow_verdict(0.01, 1.5, 3)  # cut short
    assert not servers.flow_verdict(None, None, 0)


def test_holds_is_the_last_step_before_a_stream_or_the_api_waits() -> None:
    def step(n: int, started: int, api_ms: float | None) -> dict[str, object]:
        return {"streams": n, "started": started, "api_ms": api_ms}

    assert servers.holds_from_steps([step(1, 1, None)], stall=1) == 0
    assert servers.holds_from_steps([step(1, 1, 2), step(2, 2, 1500)], stall=1) == 1
    assert servers.holds_from_steps([step(1, 1, 2), step(2, 2, 3), step(3, 2, 3)], 1) == 2
    assert servers.holds_from_steps([step(n, n, 5) for n in (1, 2, 4)], stall=1) == 4


def test_requirements_are_read_without_comments() -> None:
    text = "# servers\ngunicorn==1  # pinned\n\nuvicorn[standard]==2\n"
    assert servers.requirement_names(text) == ["gunicorn==1", "uvicorn[standard]==2"]
    names = servers.requirement_names(servers.REQUIREMENTS.read_text())
    for row in servers.SERVERS:  # every row's package comes from the requirements file
        assert any(name.lower().startswith(row.package) for name in names), row.package


def options(**values: object) -> argparse.Namespace:
    return servers.parse([f"--{key.replace('_', '-')}={value}" for key, value in values.items()])


def by_name(name: str) -> servers.Server:
    return next(server for server in servers.SERVERS if server.name == name)


VENV = Path(sys.prefix)  # this venv has gunicorn and uvicorn (the test group, the falcon extra)


@pytest.mark.slow
def test_smoke_gunicorn_sync_streams_but_holds_no_stream_beside_the_api() -> None:
    checks = ["flow", "websocket", "holds", "disconnect"]
    row = servers.measure(by_name("gunicorn sync"), VENV, checks, options(bound=4, stall=3))
    assert row["status"] == "ran", row
    assert row["flow"]["flows"] and row["flow"]["events"] == 4
    assert row["websocket"] == {"works": True, "error": None}
    # One sync worker serves one request at a time: the plain request waits behind 1 stream.
    assert row["holds"]["holds"] == 0
    assert row["holds"]["steps"] == [{"streams": 1, "started": 1, "api_ms": None}]
    assert row["disconnect"]["noticed"]


@pytest.mark.slow
def test_smoke_uvicorn_holds_the_bound_and_hangs_on_sigterm_without_a_graceful_timeout() -> None:
    checks = ["flow", "holds", "disconnect", "sigterm"]
    row = servers.measure(by_name("uvicorn"), VENV, checks, options(bound=8, term_bound=4, stall=5))
    assert row["status"] == "ran", row
    assert row["flow"]["flows"]
    assert (row["holds"]["holds"], row["holds"]["reached_bound"]) == (8, True)
    assert row["disconnect"]["noticed"]
    # Open streams keep uvicorn from exiting: the harness reports it and kills it.
    assert row["sigterm"]["exited"] is False and row["sigterm"]["exit_code"] == -9


@pytest.mark.slow
def test_smoke_uvicorn_with_a_graceful_timeout_exits_and_ends_the_streams() -> None:
    row = servers.measure(
        by_name("uvicorn, graceful timeout 5 s"), VENV, ["sigterm"], options(term_bound=30)
    )
    term = row["sigterm"]
    assert term["exited"] is True, row
    assert all(ended is not None for ended in term["streams_ended_s"])


@pytest.mark.slow
def test_a_server_that_cannot_start_is_recorded_with_its_error() -> None:
    row = servers.measure(by_name("gunicorn eventlet"), VENV, ["flow"], options())
    assert row["status"] == "did not start"
    assert "eventlet" in row["error"]


def test_the_table_has_every_server_of_the_run() -> None:
    data = json.loads(servers.RESULTS.read_text())
    table = tables.render("servers")
    assert {row["name"] for row in data["servers"]} == {s.name for s in servers.SERVERS}
    for row in data["servers"]:
        assert f"| {row['name']} | {row['flavour']} |" in table
        assert f"| {row['name']} | `{row['command']}` |" in table
        if row["status"] == "ran":
            cells = [tables._flow(row), tables._holds(row), tables._sigterm(row)]
            assert f" | {' | '.join(cells[:1])} | " in table
            assert f" | {cells[1]} | {tables._api_ms(row)} | " in table
            assert f" | {cells[2]} |\n" in f"{table}\n"
            assert f"{row['package']} {row['version']}" in table  # the run's packages
        else:
            assert tables._error_line(row["error"]) in table
    assert f"`{data['command']}`" in table
    assert ", ".join(map(str, data["load_average"]["start"])) in table


def test_the_cells_say_what_was_measured() -> None:
    ran = {
        "flow": {"flows": False, "events": 4, "status": 200, "first_event_s": 1.5,
                 "response_end_s": 1.5},
        "holds": {"holds": 3, "reached_bound": False,
                  "steps": [{"streams": n, "started": n, "api_ms": 2.0} for n in (1, 2, 3)]
                  + [{"streams": 4, "started": 4, "api_ms": None}]},
        "sigterm": {"exited": False, "bound_s": 40.0, "streams_ended_s": [None, None]},
    }  # fmt: skip
    assert tables._flow(ran) == "no (all 4 at 1.5 s)"
    assert tables._holds(ran) == "3 (waits at 4)"
    assert tables._api_ms(ran) == "2 ms"
    assert tables._sigterm(ran) == "hangs (killed at 40 s)"
    ran["sigterm"] = {"exited": True, "exit_s": 0.05, "streams_ended_s": [0.01, None]}
    assert tables._sigterm(ran) == "exits in 50 ms, a stream stays open"
    ran["sigterm"] = {"exited": False, "bound_s": 40.0, "streams_ended_s": [0.01, 0.02]}
    assert tables._sigterm(ran) == "keeps running: streams cut at 20 ms, killed at 40 s"
