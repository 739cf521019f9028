"""Why streaming lives beside the API: shown with real gunicorn sync workers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidestream.testing import serve_gunicorn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "why_beside"
WORKERS = 2

pytestmark = pytest.mark.slow


@pytest.fixture
def streaming_api() -> Iterator[str]:
    """examples/why_beside/stream_from_api.py under gunicorn with a pool of sync workers."""
    with serve_gunicorn(
        "stream_from_api:app",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "sync",
        cwd=EXAMPLES,
        ready_path="/api/orders",
    ) as base:
        yield base


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
