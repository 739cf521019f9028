"""The live demo: examples/live_demo/demo.py (API + stream service in one process) and
examples/live_demo/widget.js on docs/live-demo.md, in headless Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopback import load_example

from sidestream.bus import Bus, connect
from sidestream.testing import free_port

DEMO = Path(__file__).resolve().parents[2] / "examples" / "live_demo" / "demo.py"


@pytest.fixture
def demo_module(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REDIS_URL", "memory://")
    monkeypatch.setenv("DEMO_ORIGINS", "http://docs.test")
    return load_example("live_demo/demo.py")


def test_the_api_publishes_a_message_on_the_demo_channel(demo_module) -> None:  # type: ignore[no-untyped-def]
    bus = Bus(connect("memory://"))
    before = bus.latest_id("demo")
    answer = demo_module.api.test_client().post("/api/messages", data={"text": " hello "})
    assert answer.status_code == 201
    [event] = bus.history("demo", after_id=before)
    assert (event.id, event.event) == (answer.json["id"], "message")
    assert event.data == '{"text": "hello"}'


@pytest.mark.parametrize("text", ["", "   ", "x" * 281])
def test_the_api_refuses_empty_or_long_text_and_publishes_nothing(demo_module, text: str) -> None:  # type: ignore[no-untyped-def]
    bus = Bus(connect("memory://"))
    before = bus.latest_id("demo")
    answer = demo_module.api.test_client().post("/api/messages", data={"text": text})
    assert answer.status_code == 400
    assert answer.json["parameter"] == "text"
    assert bus.latest_id("demo") == before


def test_the_api_lets_only_the_docs_origin_read_its_answers(demo_module) -> None:  # type: ignore[no-untyped-def]
    client = demo_module.api.test_client()
    docs = client.post("/api/messages", data={"text": "a"}, headers={"Origin": "http://docs.test"})
    other = client.post("/api/messages", data={"text": "b"}, headers={"Origin": "http://evil.test"})
    assert docs.headers["Access-Control-Allow-Origin"] == "http://docs.test"
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.fixture
def demo_server(site: tuple[str, list[str]]) -> Iterator[str]:
    """demo.py run as `make serve` runs it: its own process, the embedded fakeredis."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": "memory://", "DEMO_PORT": str(port), "DEMO_ORIGINS": site[0]}
    proc = subprocess.Popen([sys.executable, str(DEMO)], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the demo server did not start")
        yield url
    finally:
        proc.terminate()
        # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean exit.
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM), "the demo must stop on SIGTERM"


@pytest.mark.browser
async def test_a_message_published_in_one_window_reaches_both(browser, site, demo_server) -> None:  # type: ignore[no-untyped-def]
    base, _ = site
    windows = [await browser.new_page() for _ in range(2)]
    for window in windows:
        await window.goto(f"{base}/live-demo/?demo={demo_server}")
        await window.wait_for_selector("[data-live-demo][data-state=live]", timeout=10_000)
    await windows[0].fill("input[name=text]", "hello, both of you")
    await windows[0].click("button[type=submit]")
    for window in windows:
        item = window.locator("[data-demo-log] li").first
        await item.wait_for(timeout=10_000)
        assert (await item.inner_text()).endswith("hello, both of you")
    assert await windows[0].locator("[data-demo-log] li").count() == 1


@pytest.mark.browser
async def test_without_a_demo_server_the_widget_says_how_to_start_one(browser, site) -> None:  # type: ignore[no-untyped-def]
    base, _ = site
    page = await browser.new_page()
    await page.goto(f"{base}/live-demo/?demo=http://127.0.0.1:{free_port()}")
    await page.wait_for_selector("[data-live-demo][data-state=offline]", timeout=10_000)
    assert "make serve" in await page.inner_text("[data-demo-status]")


@pytest.mark.browser
async def test_the_widget_starts_after_instant_navigation(browser, site, demo_server) -> None:  # type: ignore[no-untyped-def]
    # The theme's instant navigation swaps pages without a reload: the widget must still start.
    base, _ = site
    page = await browser.new_page()
    await page.goto(f"{base}/?demo={demo_server}")
    await page.click("nav a[href$='live-demo/']")
    await page.wait_for_url("**/live-demo/")
    await page.wait_for_selector("[data-live-demo][data-state]", timeout=10_000)
