"""Fixtures of the reliability suite: the examples as real processes on real Redis.

- `stack`: the auth example's stream service (examples/auth/service.py) under uvicorn, its Flask
  API (examples/auth/api.py) and the Flask extension's app (examples/flask_extension/app.py)
  under gunicorn, all on the shared Redis. The auth example has no key-prefix setting (it uses
  the library's `sidestream:`), so its keys are kept apart by channel names unique to this run
  (`user:rel<run>-...`); the extension's app gets a unique `SIDESTREAM_KEY_PREFIX`. Everything
  this run wrote is deleted at the end.
- `private_redis`: a redis-server of the test's own (AOF, fsync always), for the fault tests
  that restart or kill Redis.
- `record`: what a fault test measured. With `SIDESTREAM_RELIABILITY_RECORD=<path>` the session
  writes it, with every test's outcome, the machine and its load, to that JSON file
  (bench/results/guarantees.json is what docs/guarantees.md renders).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import (
    EXAMPLES,
    REDIS_SERVER,
    PrivateRedis,
    Process,
    Stack,
    gunicorn_api,
    uvicorn_service,
)

from sidestream.tokens import StreamTokens


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import redis

    tmp = tmp_path_factory.mktemp("reliability-stack")
    tag = f"rel{uuid.uuid4().hex[:8]}"
    key = secrets.token_urlsafe(64)  # long enough for the HS512 case too
    ext_prefix = f"sidestream-test:{tag}:"
    service = uvicorn_service(
        tmp,
        "service",
        {"SIDESTREAM_TOKEN_KEY": key, "REDIS_URL": redis_url, "API_ORIGIN": "http://app.test"},
        cwd=EXAMPLES / "auth",
    )
    api_env = {"SIDESTREAM_TOKEN_KEY": key, "REDIS_URL": redis_url, "STREAM_URL": ""}
    api = gunicorn_api(tmp, "api", "api:app", api_env, cwd=EXAMPLES / "auth")
    ext = gunicorn_api(
        tmp,
        "ext",
        f"app:create_app({{'SIDESTREAM_KEY_PREFIX': {ext_prefix!r}}})",
        {**api_env, "STREAM_URL": f"{service.base}/events"},
        cwd=EXAMPLES / "flask_extension",
    )
    started: list[Process] = []
    try:
        for process in (service, api, ext):
            process.start()
            started.append(process)
        yield Stack(tag, key, StreamTokens(key), service, api, ext, ext_prefix, redis_url)
    finally:
        for process in reversed(started):
            process.stop()
        client = redis.Redis.from_url(redis_url)
        try:
            for pattern in (f"*{tag}*",):
                for name in client.scan_iter(match=pattern, count=1000):
                    client.delete(name)
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --- what a run showed ------------------------------------------------------------------------

RECORD = os.environ.get("SIDESTREAM_RELIABILITY_RECORD")
_faults: dict[str, dict[str, Any]] = {}
_outcomes: dict[str, str] = {}
_started = (time.monotonic(), os.getloadavg())


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], None]:
    """Keep what this fault test measured, under the test's name."""

    def keep(figures: dict[str, Any]) -> None:
        _faults[request.node.name] = figures

    return keep


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "reliability/" not in report.nodeid.replace("\\", "/"):
        return
    if report.when == "call" or report.outcome != "passed":
        _outcomes.setdefault(report.nodeid, report.outcome)


def _machine() -> dict[str, Any]:
    server = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\S+)", server)
    names = ("falcon", "uvicorn", "websockets", "redis", "flask", "gunicorn", "httpx")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis_server": found[1] if found else None,
        "packages": {name: version(name) for name in names},
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not RECORD or not _outcomes:
        return
    suites: dict[str, Counter[str]] = {}
    for nodeid, outcome in _outcomes.items():
        module = nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        suites.setdefault(module, Counter())[outcome] += 1
    report = {
        "command": "SIDESTREAM_RELIABILITY_RECORD=bench/results/guarantees.json "
        "python -m pytest tests/reliability",
        "machine": _machine(),
        "load_average": {"start": list(_started[1]), "end": list(os.getloadavg())},
        "duration_s": round(time.monotonic() - _started[0], 1),
        "suites": {
            name: {"cases": sum(c.values()), **{k: c[k] for k in ("passed", "failed", "skipped")}}
            for name, c in sorted(suites.items())
        },
        "faults": {
            name: {**figures, "outcome": _outcome_of(name)} for name, figures in _faults.items()
        },
        "failed": sorted(n for n, outcome in _outcomes.items() if outcome != "passed"),
    }
    Path(RECORD).write_text(json.dumps(report, indent=2) + "\n")


def _outcome_of(test_name: str) -> str:
    return next((o for n, o in _outcomes.items() if n.endswith(f"::{test_name}")), "unknown")
