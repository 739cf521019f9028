"""Why streaming lives beside the API: shown with real gunicorn sync workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "why_beside"
WORKERS = 2

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def streaming_api() -> Iterator[str]:
    """examples/why_beside/stream_from_api.py under gunicorn with a pool of sync workers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "sync",
         "--bind", f"127.0.0.1:{port}", "stream_from_api:app"],
        cwd=EXAMPLES, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/api/orders", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "gunicorn failed")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def open_stream(base: str) -> socket.socket:
    """Open /events and read its first event, so a worker is certainly holding it."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    received = b""
    while b"data: " not in received:
        received += sock.recv(4096)
    return sock


def test_streams_from_sync_workers_starve_ordinary_requests(streaming_api: str) -> None:
    assert httpx.get(f"{streaming_api}/api/orders", timeout=5).json() == {"orders": []}

    streams = [open_stream(streaming_api) for _ in range(WORKERS)]
    # Every worker now holds a stream; an ordinary request has nobody to answer it.
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{streaming_api}/api/orders", timeout=3)

    for sock in streams:
        sock.close()
    # A sync worker notices a closed client only at its next write; then the API answers again.
    assert httpx.get(f"{streaming_api}/api/orders", timeout=10).json() == {"orders": []}
