"""sidestream.testing.serve_uvicorn: real uvicorn in its own process; a clear error if it fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sidestream.testing import free_port, serve_uvicorn, stop_process, wait_for_http

pytestmark = pytest.mark.slow

APP = """
import os

async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    body = f"{os.getpid()} {os.environ['GREETING']}".encode()
    await send({"type": "http.response.body", "body": body})
"""


def test_serves_the_app_in_another_process_with_its_env_and_stops_it(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(APP)
    with serve_uvicorn("hello:app", cwd=tmp_path, env={"GREETING": "hi"}) as base:
        assert base.startswith("http://127.0.0.1:")
        pid, greeting = httpx.get(f"{base}/", timeout=5).text.split()
        assert (int(pid) != os.getpid(), greeting) == (True, "hi")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/", timeout=2)


def test_an_app_that_cannot_load_raises_with_uvicorns_log(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('no such database driver')\n")
    with (
        pytest.raises(RuntimeError, match=r"(?s)uvicorn did not answer.*no such database driver"),
        serve_uvicorn("broken:app", cwd=tmp_path, timeout=20),
    ):
        pass


def test_stop_process_terminates_and_kills_what_ignores_sigterm() -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(polite)
    assert polite.returncode == -signal.SIGTERM
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    stop_process(stubborn, timeout=1)
    assert stubborn.returncode == -signal.SIGKILL
    stubborn.stdout.close()


def test_wait_for_http_gives_up_when_the_process_exits_or_time_is_out() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"  # nothing listens there
    gone = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match=r"exited \(code 3\)"):
        wait_for_http(url, gone, timeout=30)
    asleep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError, match="no ready answer"):
            wait_for_http(url, asleep, timeout=0.5)
    finally:
        stop_process(asleep)


def test_wait_for_http_waits_for_the_answer_ready_accepts(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(APP)
    with serve_uvicorn("hello:app", cwd=tmp_path, env={"GREETING": "hi"}) as base:
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            wait_for_http(f"{base}/", holder, timeout=10, ready=lambda r: r.status_code == 200)
            with pytest.raises(RuntimeError, match="no ready answer"):
                wait_for_http(f"{base}/", holder, timeout=0.5, ready=lambda r: r.status_code == 503)
        finally:
            stop_process(holder)
