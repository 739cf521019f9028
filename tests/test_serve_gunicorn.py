"""sidestream.testing.serve_gunicorn: real gunicorn on loopback, and a clear error when it fails."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sidestream.testing import serve_gunicorn

pytestmark = pytest.mark.slow

APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["SERVER_SOFTWARE"].encode(), b" ", environ["wsgi.url_scheme"].encode()]
"""


def test_serves_the_app_and_stops_it(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(APP)
    with serve_gunicorn("hello:app", "--workers", "1", cwd=tmp_path) as base:
        assert base.startswith("http://127.0.0.1:")
        reply = httpx.get(f"{base}/", timeout=5)
        assert (reply.status_code, reply.text.split("/")[0]) == (200, "gunicorn")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/", timeout=2)


def test_an_app_that_cannot_load_raises_with_gunicorns_log(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('no such database driver')\n")
    with (
        pytest.raises(RuntimeError, match="no such database driver"),
        serve_gunicorn("broken:app", cwd=tmp_path, timeout=20),
    ):
        pass
