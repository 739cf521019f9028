"""Early hints: examples/early_hints/app.py under Flask's test client, Werkzeug, real gunicorn
(which sends a real 103), Debian's nginx in front of gunicorn, and Chromium."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from loopback import EXAMPLES, load_example
from proxy_servers import free_port, nginx_config, nginx_version, run_nginx

from sidestream.testing import serve_gunicorn, serve_wsgi

pytestmark = pytest.mark.slow
SCRIPT = "</static/app.js>; rel=preload; as=script"


def gunicorn(**env: str) -> AbstractContextManager[str]:
    """examples/early_hints/app.py under real gunicorn (sync workers), on a loopback port."""
    return serve_gunicorn(
        "app:app", cwd=EXAMPLES / "early_hints", env=env, ready_path="/static/app.js"
    )


def raw_get(base: str, path: str = "/") -> tuple[bytes, bytes]:
    """GET over a bare socket: (the first bytes that arrived, everything until the close).

    HTTP clients such as httpx swallow 1xx responses; a socket shows what was sent, in order.
    """
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        first = sock.recv(65536)
        received = first
        while chunk := sock.recv(65536):
            received += chunk
    return first, received


def heads(raw: bytes) -> list[dict[str, str]]:
    """The status line and headers of each response in `raw` (a 103, then the final one)."""
    found = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, raw = raw.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines)
        found.append({"status": status.removeprefix("HTTP/1.1 ")} | fields)
        if not status.startswith("HTTP/1.1 1"):
            break
    return found


def test_the_page_names_its_script_in_a_link_header() -> None:
    example = load_example("early_hints/app.py")
    example.RENDER_SECONDS = 0
    client = example.app.test_client()
    page = client.get("/")
    assert (page.status_code, page.headers["Link"]) == (200, SCRIPT)
    assert b'<script src="/static/app.js">' in page.data
    script = client.get("/static/app.js")
    assert script.headers["Content-Type"] == "text/javascript"


def test_werkzeug_sends_no_103() -> None:
    example = load_example("early_hints/app.py")
    example.RENDER_SECONDS = 0
    with serve_wsgi(example.app) as base:
        _, raw = raw_get(base)
    [final] = heads(raw)  # Werkzeug has no wsgi.early_hints: the Link header only
    assert (final["status"], final["Link"]) == ("200 OK", SCRIPT)


def test_gunicorn_sends_a_real_103_before_the_page_is_ready() -> None:
    with gunicorn(RENDER_SECONDS="1") as base:
        first, raw = raw_get(base)
    # The first bytes are the 103 alone: the page was still being built (for one second).
    assert first == f"HTTP/1.1 103 Early Hints\r\nLink: {SCRIPT}\r\n\r\n".encode()
    hint, final = heads(raw)
    assert (hint["status"], hint["Link"]) == ("103 Early Hints", SCRIPT)
    assert (final["status"], final["Link"], final["Server"]) == ("200 OK", SCRIPT, "gunicorn")


def test_early_hints_off_leaves_only_the_link_header() -> None:
    with gunicorn(RENDER_SECONDS="0", EARLY_HINTS="off") as base:
        _, raw = raw_get(base)
    [final] = heads(raw)
    assert (final["status"], final["Link"]) == ("200 OK", SCRIPT)


def test_this_nginx_has_no_early_hints_directive() -> None:
    assert nginx_version() < (1, 29), "nginx >= 1.29 has early_hints: update docs/early-hints.md"
    config = "server { listen 127.0.0.1:8; location / { early_hints 1; } }"
    with nginx_config(config) as nginx:
        checked = nginx.check()
    assert checked.returncode != 0
    assert 'unknown directive "early_hints"' in checked.stderr


@contextmanager
def nginx_in_front(upstream: str, proxy_http_version: str) -> Iterator[tuple[bytes, str]]:
    """GET / through nginx proxying to `upstream`: (what the client got, nginx's access log)."""
    port = free_port()
    config = f"""
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_http_version {proxy_http_version};
            add_header X-Served-By nginx always;
        }}
    }}"""
    with run_nginx(config, port) as nginx:
        _, raw = raw_get(f"http://127.0.0.1:{port}")
        yield raw, (nginx.run / "access.log").read_text()


def test_behind_nginx_by_default_gunicorn_sends_no_103() -> None:
    """nginx talks HTTP/1.0 to upstreams unless told otherwise; gunicorn hints only to 1.1."""
    with gunicorn(RENDER_SECONDS="0") as upstream, nginx_in_front(upstream, "1.0") as (raw, log):
        [final] = heads(raw)
    assert (final["status"], final["Link"], final["X-Served-By"]) == ("200 OK", SCRIPT, "nginx")
    assert '"GET / HTTP/1.1" 200 ' in log


def test_nginx_before_1_29_mistakes_the_103_for_the_response() -> None:
    """With `proxy_http_version 1.1` (needed for upstream keep-alive), Debian 12's nginx passes
    gunicorn's 103 on as if it were the response: the reason for EARLY_HINTS=off there."""
    assert nginx_version() < (1, 29), "nginx >= 1.29 has early_hints: update docs/early-hints.md"
    with gunicorn(RENDER_SECONDS="0") as upstream, nginx_in_front(upstream, "1.1") as (raw, log):
        hint, final = heads(raw)
    # nginx sends the 103 with its own headers, as the whole response ...
    assert (hint["status"], hint["X-Served-By"]) == ("103 Early Hints", "nginx")
    assert hint["Server"].startswith("nginx/")
    # ... then copies gunicorn's real response through as unparsed bytes: nginx's headers are
    # missing from it, and nginx logs the request as a 103.
    assert (final["status"], final["Server"]) == ("200 OK", "gunicorn")
    assert "X-Served-By" not in final
    assert '"GET / HTTP/1.1" 103 ' in log


@pytest.mark.browser
async def test_chromium_sees_the_103_but_preloads_from_the_final_response(browser: Any) -> None:
    """Over HTTP/1.1 Chromium records the interim response and still waits for the final one."""
    with gunicorn(RENDER_SECONDS="0.5") as base:
        page = await browser.new_page()
        await page.goto(f"{base}/")
        await page.wait_for_function("document.title === 'app.js ran'")
        timing = await page.evaluate(
            """() => ({
                interim: performance.getEntriesByType('navigation')[0].firstInterimResponseStart,
                initiator: performance.getEntriesByName(location.origin + '/static/app.js')[0]
                    .initiatorType,
            })"""
        )
        await page.close()
    assert timing["interim"] > 0  # the 103 reached the browser ...
    assert timing["initiator"] == "link"  # ... but the script was fetched for the final Link
    example = load_example("early_hints/app.py")
    with serve_wsgi(example.app) as plain:  # the control: no 103, no interim response time
        page = await browser.new_page()
        await page.goto(f"{plain}/")
        interim = await page.evaluate(
            "performance.getEntriesByType('navigation')[0].firstInterimResponseStart"
        )
        await page.close()
    assert interim == 0
