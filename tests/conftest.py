"""Shared fixtures: real Redis and headless Chromium, and the switch that makes them mandatory.

Locally, tests that need real Redis or Chromium skip when those are missing. With
``SIDESTREAM_NO_SKIP=1`` (set by ``.ci/run``) every skip is reported as a failure, so CI can never
pass by skipping.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sidestream.bus import AsyncBus, Bus

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SIDESTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NO_SKIP = os.environ.get("SIDESTREAM_NO_SKIP") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but SIDESTREAM_NO_SKIP=1 makes every skip a failure: {reason}"


# Read once, before any test sets REDIS_URL=memory:// for an example that means the embedded
# server: that must not turn the session-wide real-Redis fixture into a skip.
_REAL_REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def real_redis_url() -> str:
    return _REAL_REDIS_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis server that answers PING; skips (or fails under NO_SKIP) otherwise."""
    import redis

    url = real_redis_url()
    if url.startswith("memory://"):
        pytest.skip("REDIS_URL is memory://; real-Redis tests need a server")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis answers at {url}: {exc}")
    return url


@pytest.fixture
def memory_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """`REDIS_URL=memory://` for this test only: for code that reads `REDIS_URL` and is meant to
    run on the embedded server here (an unset `REDIS_URL` is an error, never a silent default)."""
    monkeypatch.setenv("REDIS_URL", "memory://")
    return "memory://"


@pytest.fixture
def key_prefix() -> str:
    """A key prefix unique to one test, so tests never see each other's keys on a shared Redis."""
    return f"sidestream-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def backend_url(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[str]:
    """Runs a test twice: on the embedded fakeredis (`memory://`) and on real Redis.

    Keys are the test's own (use `key_prefix`); on real Redis they are deleted afterwards.
    """
    if request.param == "fakeredis":
        yield "memory://"
        return
    url = request.getfixturevalue("redis_url")
    yield url
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def sync_bus(backend_url: str, key_prefix: str) -> Iterator[Bus]:
    """A [`Bus`][sidestream.bus.Bus] on each backend, under the test's own key prefix."""
    from sidestream.bus import Bus, connect

    client = connect(backend_url)
    yield Bus(client, prefix=key_prefix)
    client.close()


@pytest.fixture
async def async_bus(backend_url: str, key_prefix: str) -> AsyncIterator[AsyncBus]:
    """An [`AsyncBus`][sidestream.bus.AsyncBus] on each backend, under the test's own key prefix."""
    from sidestream.bus import AsyncBus, connect_async

    client = connect_async(backend_url)
    yield AsyncBus(client, prefix=key_prefix)
    await client.aclose()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[object]:
    """A headless Chromium (Debian's) driven by Playwright; never a downloaded browser."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def repo_root() -> Iterator[Path]:
    yield ROOT


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """The strict build of the site, served on loopback; yields (base URL, page paths)."""
    from loopback import serving

    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    pages = sorted(
        "/" + "".join(f"{part}/" for part in p.parent.relative_to(out).parts)
        for p in out.rglob("index.html")
        if "assets" not in p.relative_to(out).parts
    )
    with serving(functools.partial(_QuietFiles, directory=str(out))) as base:
        yield base, pages
