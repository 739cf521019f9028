"""EventSource in a real headless Chromium: Debian's (apt-get install chromium),
driven by Playwright for Python. No browser is downloaded (`playwright install` is never
needed).
"""

# --8<-- [start:imports]
import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, sync_playwright

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.service import create_app
from sidestream.testing import serve_asgi

# --8<-- [end:imports]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


# --8<-- [start:page]
@pytest.fixture
def page() -> Iterator[Page]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium or set it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"]
        )
        yield browser.new_page()
        browser.close()


# --8<-- [end:page]


# --8<-- [start:event_source]
def test_event_source_receives_what_is_published(page: Page) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    service_bus = AsyncBus(connect_async("memory://"), prefix=prefix)
    service = create_app(service_bus, authorize=allow_everyone)  # public, for the test
    # The same embedded server, from this thread:
    bus = Bus(connect("memory://"), prefix=prefix)
    with serve_asgi(service) as url:
        # A page of the service's own origin: no CORS to set up.
        page.goto(f"{url}/healthz")
        page.evaluate("""() => new Promise((opened) => {
            window.received = [];
            const source = new EventSource("/events?channel=orders");
            source.onmessage = (event) =>
                window.received.push([event.lastEventId, event.data]);
            source.onopen = opened;  // the service subscribes before it answers
        })""")
        event_id = bus.publish("orders", "paid")
        page.wait_for_function("window.received.length === 1", timeout=5000)
        assert page.evaluate("window.received") == [[event_id, "paid"]]


# --8<-- [end:event_source]
