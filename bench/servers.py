"""Which Python servers can stream: the same small app on each, measured, not looked up.

Not a test. Writes bench/results/servers.json, which docs/python-servers.md renders.

    .venv/bin/python bench/servers.py                  # every server (about ten minutes)
    .venv/bin/python bench/servers.py --only uvicorn   # one row, printed, JSON left alone

The servers live in their own venv, bench/.venv-servers, made by this script from
bench/servers/requirements.txt (and remade when that file changes), so they never change the
project's venv. WSGI servers run bench/servers/wsgi_app.py (Flask), ASGI servers run
bench/servers/asgi_app.py (plain ASGI); both have the same three routes. Each server runs with
one worker process on a free loopback port, started afresh for each check below and stopped by
its PID (its process group, which the script created):

1. flow: GET a stream of 4 events 0.5 s apart; it flows when the first event arrives at least
   one interval before the response ends (a server that buffers delivers all four at the end).
2. websocket: the handshake on /ws, then one message echoed back.
3. holds: open streams 1, 2, ..., 16, 32, ..., 256 at once (cumulative); at each step every
   stream must have sent its first event and a plain GET /api must answer within `--stall`
   seconds. Holds N: the largest step that passed.
4. disconnect: read a stream's first event, close the socket, and wait for the app to log that
   its generator/task was closed; the delay is measured from the close.
5. SIGTERM: with two streams open, send SIGTERM to the server's main process; record when each
   stream ended and when the process exited; a process still running after `--term-bound`
   seconds is killed and recorded as hung.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidestream.testing import free_port

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "servers"
REQUIREMENTS = APPS / "requirements.txt"
VENV = BENCH / ".venv-servers"
RESULTS = BENCH / "results" / "servers.json"
INTERVAL = 0.5  # seconds between events on every stream
RAMP = [*range(1, 17), 32, 64, 128, 256]


@dataclass(frozen=True)
class Server:
    """One row: a server, the app flavour it runs, and how it is started."""

    name: str
    flavour: str  # "WSGI" or "ASGI"
    package: str  # the distribution whose version the row reports
    argv: tuple[str, ...]  # {py}, {bin} and {port} are filled in

    def command(self, port: int, venv: Path = VENV) -> list[str]:
        fill = {"py": str(venv / "bin" / "python"), "bin": str(venv / "bin"), "port": str(port)}
        return [part.format(**fill) for part in self.argv]

    def shown(self) -> str:
        """The command as the page shows it (no venv paths, `PORT` for the port)."""
        text = " ".join(self.argv).replace("{py} -m ", "").replace("{bin}/", "")
        return text.replace("{port}", "PORT")


def server(name: str, flavour: str, package: str, command: str) -> Server:
    return Server(name, flavour, package, tuple(command.split()))


GUNICORN = "{py} -m gunicorn -b 127.0.0.1:{port} -w 1 -k"
UVICORN = "{py} -m uvicorn --host 127.0.0.1 --port {port}"
SERVERS = [
    server("Werkzeug dev server (flask run)", "WSGI", "werkzeug",
           "{py} -m flask --app wsgi_app run --port {port}"),
    server("gunicorn sync", "WSGI", "gunicorn", f"{GUNICORN} sync wsgi_app:app"),
    server("gunicorn gthread", "WSGI", "gunicorn",
           f"{GUNICORN} gthread --threads 8 wsgi_app:app"),
    server("gunicorn gevent", "WSGI", "gevent", f"{GUNICORN} gevent wsgi_app:app"),
    server("gunicorn eventlet", "WSGI", "eventlet", f"{GUNICORN} eventlet wsgi_app:app"),
    server("waitress", "WSGI", "waitress",
           "{py} -m waitress --listen=127.0.0.1:{port} wsgi_app:app"),
    server("uWSGI", "WSGI", "uwsgi",
           "{bin}/uwsgi --http-socket 127.0.0.1:{port} --module wsgi_app:app --master"
           " --processes 1 --threads 8 --die-on-term"),
    server("uWSGI without --die-on-term", "WSGI", "uwsgi",
           "{bin}/uwsgi --http-socket 127.0.0.1:{port} --module wsgi_app:app --master"
           " --processes 1 --threads 8"),
    server("gunicorn asgi", "ASGI", "gunicorn", f"{GUNICORN} asgi asgi_app:app"),
    server("uvicorn", "ASGI", "uvicorn", f"{UVICORN} asgi_app:app"),
    server("uvicorn, graceful timeout 5 s", "ASGI", "uvicorn",
           f"{UVICORN} --timeout-graceful-shutdown 5 asgi_app:app"),
    server("Hypercorn", "ASGI", "hypercorn",
           "{py} -m hypercorn -b 127.0.0.1:{port} asgi_app:app"),
    server("Granian", "ASGI", "granian",
           "{bin}/granian --interface asgi --host 127.0.0.1 --port {port} --workers 1"
           " asgi_app:app"),
    server("Granian, kill timeout 5 s", "ASGI", "granian",
           "{bin}/granian --interface asgi --host 127.0.0.1 --port {port} --workers 1"
           " --workers-kill-timeout 5 asgi_app:app"),
    server("Daphne", "ASGI", "daphne", "{py} -m daphne -b 127.0.0.1 -p {port} asgi_app:app"),
]  # fmt: skip


# --- the servers' venv -------------------------------------------------------------------


def requirement_names(text: str) -> list[str]:
    """The requirement lines of a requirements file (comments and blanks dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def ensure_venv(venv: Path = VENV) -> dict[str, str]:
    """Create or refresh the servers' venv; the requirements that failed to install, with why.

    One `pip install -r`; when it fails, each requirement alone, so one that cannot install
    here is listed with its error and the others are still measured.
    """
    text = REQUIREMENTS.read_text()
    stamp = venv / ".requirements.sha256"
    digest = hashlib.sha256(text.encode()).hexdigest()
    failed_file = venv / ".failed.json"
    if stamp.exists() and stamp.read_text() == digest:
        return dict(json.loads(failed_file.read_text())) if failed_file.exists() else {}
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    failed: dict[str, str] = {}
    whole = subprocess.run([*pip, "-r", str(REQUIREMENTS)], capture_output=True, text=True)
    if whole.returncode != 0:
        for requirement in requirement_names(text):
            one = subprocess.run([*pip, requirement], capture_output=True, text=True)
            if one.returncode != 0:
                failed[requirement] = last_lines(one.stderr or one.stdout)
    failed_file.write_text(json.dumps(failed))
    stamp.write_text(digest)
    return failed


def installed_versions(venv: Path = VENV) -> dict[str, str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {item["name"].lower(): item["version"] for item in json.loads(out)}


def last_lines(text: str, count: int = 6) -> str:
    """The end of a process's output, where the error is; without blank lines."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-count:])


# --- running one server --------------------------------------------------------------------


class Running:
    """A server process in its own process group; `stop()` ends the group by its id."""

    def __init__(self, server: Server, venv: Path, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / f"app-{self.port}.log"
        self.output = workdir / f"server-{self.port}.out"
        env = {**os.environ, "SERVERS_BENCH_LOG": str(self.log), "PYTHONUNBUFFERED": "1"}
        env.pop("VIRTUAL_ENV", None)
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                server.command(self.port, venv),
                cwd=APPS,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers are stopped with it
            )

    def wait_ready(self, timeout: float = 30) -> None:
        """Until GET /api answers 200; RuntimeError with the server's output if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                if asyncio.run(plain_request(self.port, timeout=2))[0] == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(last_lines(self.output.read_text(errors="replace")) or "no output")

    def closed_at(self, stream: str) -> float | None:
        """When the app logged stream `stream` closed (unix time), or None."""
        if not self.log.exists():
            return None
        for line in self.log.read_text().splitlines():
            fields = line.split()
            if fields[:2] == ["closed", stream]:
                return float(fields[2])
        return None

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL to whatever of it is left; reaps the process."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # workers that outlived their master


@contextlib.contextmanager
def running(server: Server, venv: Path, workdir: Path) -> Iterator[Running]:
    process = Running(server, venv, workdir)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


# --- the client side: raw HTTP/1.1 on asyncio sockets ------------------------------------


async def plain_request(port: int, path: str = "/api", timeout: float = 5) -> tuple[int, bytes]:
    """GET `path` with `Connection: close`; the status and the raw response."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request_bytes(port, path))
            raw = await reader.read()
        finally:
            writer.close()
        return status_of(raw), raw

    return await asyncio.wait_for(go(), timeout)


def request_bytes(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def status_of(raw: bytes) -> int:
    """The status code of a raw HTTP/1.x response; 0 when there is no status line yet."""
    line = raw.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") else 0


def events_in(raw: bytes) -> int:
    """How many events a raw response holds: `data:` lines at the start of a line."""
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    return sum(1 for line in body.splitlines() if line.startswith(b"data:"))


class Stream:
    """One open event stream: its socket, what it received and when."""

    def __init__(self, port: int, stream: str, count: int = 1_000_000) -> None:
        self.port, self.id = port, stream
        self.path = f"/events?id={stream}&count={count}&interval={INTERVAL}"
        self.raw = b""
        self.opened = self.first_event = self.ended = 0.0
        self.error = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.opened = time.time()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(request_bytes(self.port, self.path))

    async def read_first_event(self, timeout: float) -> bool:
        """Read until the first event is in; False if it is not within `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._read_until(lambda: events_in(self.raw) > 0), timeout)
        return self.first_event > 0

    async def read_to_end(self, timeout: float) -> None:
        """Read until the server ends the response (EOF), a reset, or `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._read_until(lambda: False), timeout)

    async def _read_until(self, done: Any) -> None:
        assert self.reader is not None
        while not done():
            try:
                chunk = await self.reader.read(65536)
            except OSError as error:
                self.error, self.ended = type(error).__name__, time.time()
                return
            if not chunk:
                self.ended = time.time()
                return
            self.raw += chunk
            if not self.first_event and events_in(self.raw):
                self.first_event = time.time()

    def close(self) -> float:
        """Close the socket (a client leaving); when."""
        if self.writer is not None:
            self.writer.close()
        return time.time()


# --- the five checks -----------------------------------------------------------------------


def flow_verdict(first_event_s: float | None, end_s: float | None, events: int) -> bool:
    """A stream flows when all events came and the first one came an interval before the end."""
    if first_event_s is None or end_s is None or events < 4:
        return False
    return end_s - first_event_s >= INTERVAL


async def check_flow(port: int) -> dict[str, Any]:
    stream = Stream(port, "flow", count=4)
    await stream.open()
    await stream.read_to_end(timeout=15)
    stream.close()
    first = stream.first_event - stream.opened if stream.first_event else None
    end = stream.ended - stream.opened if stream.ended else None
    events = events_in(stream.raw)
    return {
        "flows": flow_verdict(first, end, events),
        "status": status_of(stream.raw),
        "events": events,
        "first_event_s": None if first is None else round(first, 3),
        "response_end_s": None if end is None else round(end, 3),
    }


async def check_websocket(port: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5, close_timeout=2) as ws:
            await ws.send("ping")
            echoed = await asyncio.wait_for(ws.recv(), 5)
        return {"works": echoed == "ping", "error": None if echoed == "ping" else repr(echoed)}
    except Exception as error:  # what failed is the finding: record it
        return {"works": False, "error": f"{type(error).__name__}: {error}"[:300]}


def holds_from_steps(steps: list[dict[str, Any]], stall: float) -> int:
    """The largest step before the first one where a stream did not start or /api stalled."""
    holds = 0
    for step in steps:
        api = step["api_ms"]
        if step["started"] < step["streams"] or api is None or api > stall * 1000:
            break
        holds = step["streams"]
    return holds


async def check_holds(port: int, bound: int, stall: float) -> dict[str, Any]:
    streams: list[Stream] = []
    steps: list[dict[str, Any]] = []
    try:
        for target in (n for n in RAMP if n <= bound):
            new = [Stream(port, f"ramp-{i}") for i in range(len(streams), target)]
            await asyncio.gather(*(s.open() for s in new))
            streams += new
            await asyncio.gather(*(s.read_first_event(timeout=5) for s in new))
            started = sum(1 for s in streams if s.first_event)
            began = time.perf_counter()
            try:
                status, _ = await plain_request(port, timeout=stall * 2.5)
                api_ms: float | None = round((time.perf_counter() - began) * 1000, 1)
                api_ms = api_ms if status == 200 else None
            except (TimeoutError, OSError):
                api_ms = None
            steps.append({"streams": target, "started": started, "api_ms": api_ms})
            if holds_from_steps(steps, stall) < target:
                break
    finally:
        for s in streams:
            s.close()
    holds = holds_from_steps(steps, stall)
    return {"holds": holds, "bound": bound, "reached_bound": holds == steps[-1]["streams"]
            == max(n for n in RAMP if n <= bound), "steps": steps}  # fmt: skip


async def check_disconnect(process: Running, timeout: float = 10) -> dict[str, Any]:
    stream = Stream(process.port, "leaver")
    await stream.open()
    if not await stream.read_first_event(timeout=10):
        stream.close()
        return {"noticed": False, "after_s": None, "error": "no first event"}
    left = stream.close()
    deadline = time.time() + timeout
    while time.time() < deadline:
        closed = process.closed_at("leaver")
        if closed is not None:
            return {"noticed": True, "after_s": round(closed - left, 3), "error": None}
        await asyncio.sleep(0.05)
    return {"noticed": False, "after_s": None, "error": f"not within {timeout:g} s"}


async def check_sigterm(process: Running, bound: float) -> dict[str, Any]:
    streams = [Stream(process.port, f"term-{i}") for i in range(2)]
    for s in streams:
        await s.open()
        await s.read_first_event(timeout=10)
    sent = time.time()
    os.kill(process.process.pid, signal.SIGTERM)
    readers = asyncio.gather(*(s.read_to_end(timeout=bound + 3) for s in streams))
    exit_s: float | None = None
    while time.time() - sent < bound:
        if process.process.poll() is not None:
            exit_s = round(time.time() - sent, 2)
            break
        await asyncio.sleep(0.05)
    if exit_s is None:
        process.stop()
    await asyncio.wait_for(readers, bound + 10)
    # When each stream ended, if it did within the bound (not when the kill closed it).
    ended = [round(s.ended - sent, 2) if 0 < s.ended - sent <= bound else None for s in streams]
    for s in streams:
        s.close()
    return {
        "exited": exit_s is not None,
        "exit_s": exit_s,
        "bound_s": bound,
        "streams_ended_s": ended,
        "stream_errors": [s.error or None for s in streams],
        "exit_code": process.process.returncode,
    }


def measure(server: Server, venv: Path, checks: list[str], options: argparse.Namespace) -> Any:
    """Every check on a fresh server process; a server that does not start is recorded so."""
    row: dict[str, Any] = {"name": server.name, "flavour": server.flavour,
                           "command": server.shown(), "package": server.package}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="servers-bench-") as tmp:
        workdir = Path(tmp)
        for check in checks:
            try:
                with running(server, venv, workdir) as process:
                    row[check] = asyncio.run(run_check(check, process, options))
            except RuntimeError as error:
                row["status"], row["error"] = "did not start", str(error)
                return row
    row["status"] = "ran"
    return row


async def run_check(check: str, process: Running, options: argparse.Namespace) -> Any:
    if check == "flow":
        return await check_flow(process.port)
    if check == "websocket":
        return await check_websocket(process.port)
    if check == "holds":
        return await check_holds(process.port, options.bound, options.stall)
    if check == "disconnect":
        return await check_disconnect(process)
    if check == "sigterm":
        return await check_sigterm(process, options.term_bound)
    raise ValueError(f"unknown check {check!r}")


CHECKS = ["flow", "websocket", "holds", "disconnect", "sigterm"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="a server name (repeatable); prints")
    parser.add_argument("--checks", default=",".join(CHECKS))
    parser.add_argument("--bound", type=int, default=256, help="most streams the ramp opens")
    parser.add_argument("--stall", type=float, default=1.0, help="/api slower than this waits")
    parser.add_argument("--term-bound", type=float, default=40.0, help="SIGTERM: kill after")
    parser.add_argument("--venv", type=Path, default=VENV, help="the servers' venv")
    parser.add_argument("--no-install", action="store_true", help="use --venv as it is")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    load_start = os.getloadavg()
    failed = {} if options.no_install else ensure_venv(options.venv)
    versions = installed_versions(options.venv)
    chosen = [s for s in SERVERS if not options.only or s.name in options.only]
    rows = []
    for server in chosen:
        print(f"-- {server.name}", flush=True)
        not_installed = [r for r in failed if r.lower().startswith(server.package)]
        if not_installed:
            row = {"name": server.name, "flavour": server.flavour, "command": server.shown(),
                   "package": server.package, "status": "not installed",
                   "error": failed[not_installed[0]]}  # fmt: skip
        else:
            row = measure(server, options.venv, options.checks.split(","), options)
        row["version"] = versions.get(server.package)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if options.only:
        return
    result = {
        "command": "python bench/servers.py",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}",
            "note": "the client and other work share these cores with the server",
        },
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "parameters": {
            "interval_s": INTERVAL,
            "ramp": [n for n in RAMP if n <= options.bound],
            "stall_s": options.stall,
            "term_bound_s": options.term_bound,
        },
        "versions": {name: versions[name] for name in sorted(versions) if name in PACKAGES},
        "servers": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


PACKAGES = {"flask", "flask-sock", "werkzeug", "gunicorn", "gevent", "eventlet", "waitress",
            "uwsgi", "uvicorn", "uvloop", "httptools", "websockets", "hypercorn", "wsproto",
            "granian", "daphne", "twisted", "simple-websocket"}  # fmt: skip


if __name__ == "__main__":
    main()
