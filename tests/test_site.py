"""Every built page, rendered in headless Chromium: no console errors, no failed requests to our own
site, mermaid diagrams drawn, search answering."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

# Off-site addresses pages may call: the theme's repository widget, and the live demo's server on
# the reader's own machine. Requests to them are cut off here (the test machine has no internet,
# and tests/examples/test_live_demo.py runs the demo); anything else off-site is a failure.
ALLOWED_OFFSITE = {"api.github.com", "127.0.0.1:8001"}

pytestmark = pytest.mark.browser


def test_the_site_has_the_pages_we_expect(site: tuple[str, list[str]]) -> None:
    _, pages = site
    assert "/" in pages and "/event-stream-format/" in pages and "/reference/" in pages


async def test_every_page_renders_cleanly(browser, site: tuple[str, list[str]]) -> None:  # type: ignore[no-untyped-def]
    base, pages = site
    origin = urlsplit(base).netloc
    problems: list[str] = []
    offsite: set[str] = set()
    page = await browser.new_page()

    async def cut_offsite(route) -> None:  # type: ignore[no-untyped-def]
        offsite.add(urlsplit(route.request.url).netloc)
        await route.abort()

    await page.route(lambda url: urlsplit(url).netloc != origin, cut_offsite)
    page.on("pageerror", lambda exc: problems.append(f"{page.url}: uncaught {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"{page.url}: console error {msg.text} ({msg.location})")
            if msg.type == "error" and urlsplit(msg.location.get("url", "")).netloc in ("", origin)
            else None
        ),
    )
    page.on(
        "requestfailed",
        # Going to the next page aborts what the last one still had in flight (the favicon, a
        # prefetch): that is the browser's doing, not a broken link, which fails otherwise.
        lambda req: (
            problems.append(f"{page.url}: request failed {req.url} ({req.failure})")
            if urlsplit(req.url).netloc == origin and req.failure != "net::ERR_ABORTED"
            else None
        ),
    )
    page.on(
        "response",
        lambda resp: (
            problems.append(f"{page.url}: {resp.status} for {resp.url}")
            if resp.status >= 400 and urlsplit(resp.url).netloc == origin
            else None
        ),
    )
    diagrams = 0
    for path in pages:
        await page.goto(base + path, wait_until="networkidle")
        expected = await page.evaluate(
            "document.querySelectorAll('pre.mermaid, div.mermaid').length"
        )
        if expected:
            # mkdocs-material swaps each <pre class="mermaid"> for a <div> holding the drawn SVG in
            # a closed shadow root: a drawn diagram is a div that takes up room on the page.
            await page.wait_for_function(
                "n => [...document.querySelectorAll('div.mermaid')]"
                ".filter(d => d.getBoundingClientRect().height > 40).length === n",
                arg=expected,
                timeout=15_000,
            )
            diagrams += expected
    await page.close()
    assert problems == []
    assert offsite <= ALLOWED_OFFSITE, f"pages call hosts we did not expect: {offsite}"
    assert diagrams >= 2, "the home page and the transport chooser draw diagrams"


async def test_search_finds_a_page(browser, site: tuple[str, list[str]]) -> None:  # type: ignore[no-untyped-def]
    base, _ = site
    page = await browser.new_page()
    await page.goto(base + "/", wait_until="networkidle")
    await page.click("label.md-search__icon, .md-search__input")
    # Typed key by key: the theme searches on keyboard events, not on a value set by script.
    await page.locator(".md-search__input").press_sequentially("Last-Event-ID")
    first = page.locator(".md-search-result__item").first
    await first.wait_for(timeout=15_000)
    assert "Last-Event-ID" in (await page.locator(".md-search-result").inner_text())
    await page.close()


# Code must not scroll sideways on a desktop screen: every code block of every page, with the
# collapsed blocks opened and every tab shown, at the narrowest desktop width the theme lays out
# with both sidebars (1280 px) and at 1920 px, in the light and the dark scheme. The raw
# benchmark results (JSON written by bench/, one collapsed block per table) are data, not code
# to copy, and are left out.
OVERFLOWING_CODE = """(limit) => {
  document.querySelectorAll('details').forEach((d) => { d.open = true; });
  const style = document.createElement('style');
  style.textContent = '.tabbed-set > .tabbed-content > .tabbed-block { display: block !important }';
  document.head.appendChild(style);
  const found = [];
  for (const code of document.querySelectorAll('.md-content pre > code')) {
    const summary = code.closest('details')?.querySelector('summary')?.textContent ?? '';
    if (summary.startsWith('The raw results')) continue;
    if (code.scrollWidth > code.clientWidth + 1) {
      const longest = code.innerText.split('\\n').reduce((a, b) => (b.length > a.length ? b : a));
      found.push(`${longest.length} characters: ${longest.trim().slice(0, 60)}`);
    }
  }
  const probe = document.querySelector('.md-content pre > code');
  let fits = null;
  if (probe) {
    // A bare text node: the theme makes every span in a code block a block.
    const text = document.createTextNode('x'.repeat(limit));
    probe.appendChild(text);
    const range = document.createRange();
    range.selectNodeContents(text);
    const style = getComputedStyle(probe);
    const room = probe.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    fits = range.getBoundingClientRect().width <= room;
    text.remove();
  }
  return { found, fits };
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 1920])
async def test_code_fits_the_content_column(  # type: ignore[no-untyped-def]
    browser, site: tuple[str, list[str]], width: int, scheme: str
) -> None:
    from docs_rules import EXAMPLE_LINE_LIMIT

    base, pages = site
    page = await browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    await page.route(lambda url: urlsplit(url).netloc != urlsplit(base).netloc, _abort)
    problems, probed = [], 0
    for path in pages:
        await page.goto(base + path)
        result = await page.evaluate(OVERFLOWING_CODE, EXAMPLE_LINE_LIMIT)
        problems += [f"{path}: {line}" for line in result["found"]]
        if result["fits"] is not None:
            probed += 1
            assert result["fits"], f"{path}: {EXAMPLE_LINE_LIMIT} characters do not fit"
    # The detector itself: a line longer than the column is reported.
    await page.evaluate(
        "() => { const c = document.querySelector('.md-content pre > code')"
        " || document.querySelector('.md-content').appendChild(document.createElement('pre'))"
        ".appendChild(document.createElement('code')); c.textContent = 'x'.repeat(400); }"
    )
    assert (await page.evaluate(OVERFLOWING_CODE, EXAMPLE_LINE_LIMIT))["found"]
    await page.close()
    assert probed > 10
    assert problems == []


async def _abort(route) -> None:  # type: ignore[no-untyped-def]
    await route.abort()
