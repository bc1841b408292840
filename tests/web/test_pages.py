"""The pages in a real headless Chromium, on a ledger the real collector built: every page
loads (also with JavaScript off), plots draw with the series each kind expects and show a gap
in the data as a gap, and text chosen to break HTML or JavaScript renders as text.

``SENSORLEDGER_SCREENSHOTS=docs/img`` also saves the overview and a device page there (the
README's pictures).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, View
from tests.web.fleet import HOSTILE_EVENT, HOSTILE_NAMES, Fleet

# device -> the series (data-series) each panel of its page draws
EXPECTED_PANELS = {
    "water-01": [["ph"], ["turbidity"], ["free_chlorine"], ["temperature"]],
    "bms-01": [["state_of_charge"], ["pack_current"], ["cell_voltage_min", "cell_voltage_max"]],
    "oxi-01": [["spo2"], ["pulse_rate"]],
    "arc-01": [["total_current"], ["bus_voltage"]],
    "lab-7": [[n] for n in HOSTILE_NAMES],
}


@pytest.fixture(scope="module")
def browser(view: View) -> Iterator[Any]:
    """One headless Debian Chromium for the module. Started after the ledger and the view
    (Playwright's sync API keeps an event loop on this thread while the browser lives, and the
    ledger is built with ``asyncio.run``), and closed with the module for the same reason."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/ensure-chromium.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.dialogs: list[str] = []  # type: ignore[misc]
    p.errors: list[str] = []  # type: ignore[misc]
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    p.on("console", lambda m: p.errors.append(m.text) if m.type == "error" else None)
    yield p
    context.close()


def load(page: Any, view: View, path: str) -> Any:
    response = page.goto(view.url + path)
    assert response is not None and response.status == 200, (path, response and response.status)
    assert page.locator("h1").count() == 1, path
    return response


def test_every_page_loads(page: Any, view: View, fleet: Fleet) -> None:
    paths = ["/", "/devices", *(f"/devices/{d}" for d in fleet.devices),
             "/devices/water-01/readings", "/devices/water-01/readings/7", "/blocks",
             "/blocks/0", "/blocks/1", "/checkpoints", "/quarantine",
             "/quarantine?reason=unknown_key"]
    for path in paths:
        load(page, view, path)
    assert page.dialogs == [] and page.errors == []
    load(page, view, "/")
    def number(selector: str) -> int:
        return int(page.locator(selector).inner_text().replace(",", ""))

    assert number("#readings") == sum(fleet.counts.values())
    assert number("#quarantined") == fleet.quarantined
    assert number("#backlog") == 0
    assert "— " in page.locator("#checkpoint-note").inner_text()  # its signature lines
    load(page, view, "/devices")
    rows = page.locator("#devices tbody tr")
    assert rows.count() == len(fleet.devices)
    # The checkpoint list links every size to its page, and that page shows the note.
    load(page, view, "/checkpoints")
    first = page.locator("#checkpoints tbody tr a").first
    first.click()
    assert page.locator("#note").inner_text().startswith(page.locator("dd bdi").first
                                                         .inner_text())


def test_plots_draw_each_kinds_series(page: Any, view: View) -> None:
    for device, panels in EXPECTED_PANELS.items():
        load(page, view, f"/devices/{device}")
        svgs = page.locator("svg.plot")
        assert svgs.count() == len(panels), device
        for i, names in enumerate(panels):
            svg = svgs.nth(i)
            assert svg.get_attribute("data-series-count") == str(len(names))
            paths = svg.locator("path.series")
            assert [paths.nth(k).get_attribute("data-series") for k in range(paths.count())] \
                == names, device
            for k in range(paths.count()):
                d = paths.nth(k).get_attribute("d") or ""
                assert d.count("L") > 50, (device, names[k], d[:80])
                box = paths.nth(k).bounding_box()
                assert box is not None and box["width"] > 500 and box["height"] > 20
    assert page.errors == []


def test_a_gap_in_the_data_is_a_gap_in_the_line(page: Any, view: View, fleet: Fleet) -> None:
    load(page, view, "/devices/water-01")
    d = page.locator("svg.plot").first.locator("path.series").get_attribute("d") or ""
    assert d.count("M") == 2, d[:200]  # one break: the stretch the device sent nothing
    load(page, view, "/devices/bms-01")
    d = page.locator("svg.plot").first.locator("path.series").get_attribute("d") or ""
    assert d.count("M") == 1  # the battery sent throughout: one unbroken line


def test_events_are_marked_on_the_plot(page: Any, view: View) -> None:
    load(page, view, "/devices/arc-01")
    marks = page.locator("svg.plot").first.locator("line.mark")
    assert marks.count() == 4  # one event every 60 readings of 240
    assert HOSTILE_EVENT in (marks.first.locator("title").text_content() or "")


def test_hostile_text_renders_as_text(page: Any, view: View) -> None:
    load(page, view, "/devices/arc-01/readings/31")
    cell = page.locator("#event tr", has_text="note").locator("td")
    assert cell.inner_text() == HOSTILE_EVENT
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img").count() == 0
    load(page, view, "/devices/lab-7")
    legends = page.locator("svg.plot text.legend")
    # SVG text isolates each name with FSI ... PDI (U+2068, U+2069)
    assert [legends.nth(i).text_content() for i in range(legends.count())] == [
        f"\u2068{n}\u2069 (\u2068V\u2069)" for n in HOSTILE_NAMES]
    captions = page.locator("figure.panel figcaption")
    assert [captions.nth(i).inner_text() for i in range(captions.count())] == list(
        HOSTILE_NAMES)
    load(page, view, "/devices/lab-7/readings/3")
    names = page.locator("#measurements tbody tr td:first-child")
    assert [names.nth(i).inner_text() for i in range(names.count())] == list(HOSTILE_NAMES)
    assert page.locator("main script").count() == 0
    load(page, view, "/quarantine")
    assert "<script>" not in page.locator("#quarantine").inner_html().replace("&lt;script&gt;",
                                                                               "")
    assert page.dialogs == [] and page.errors == []


def test_pages_work_without_javascript(browser: Any, view: View, fleet: Fleet) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        p = context.new_page()
        p.goto(view.url + "/devices/water-01")
        assert p.locator("svg.plot path.series").count() == 4
        # the range form, submitted without script
        p.fill("input[name=from]", str(fleet.time_gap[1]))
        p.click("form.range button")
        assert "from=" in p.url
        assert p.locator("svg.plot").first.locator("path.series").get_attribute("d").count(
            "M") == 1  # after the gap: unbroken
        # the quarantine filter
        p.goto(view.url + "/quarantine")
        p.select_option("select[name=reason]", "unknown_key")
        p.click("form.filter button")
        rows = p.locator("#quarantine tbody tr")
        assert rows.count() == 1 and "unknown_key" in rows.first.inner_text()
        # a reading page links its proof, history and the in-browser check
        p.goto(view.url + "/devices/water-01/readings/7")
        assert p.locator("#proof-link").get_attribute("href") == \
            "/devices/water-01/readings/7/proof"
        assert p.locator("#verify-link").get_attribute("href") == \
            "/verify?proof=%2Fdevices%2Fwater-01%2Freadings%2F7%2Fproof"
        assert re.fullmatch(r"/devices/water-01/history\?first=0&last=\d+",
                            p.locator("#history-link").get_attribute("href") or "")
    finally:
        context.close()


def test_screenshots(page: Any, view: View, tmp_path: Path) -> None:
    out = Path(os.environ.get("SENSORLEDGER_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for path, name in (("/", "overview.png"), ("/devices/water-01", "device.png")):
        load(page, view, path)
        page.screenshot(path=str(out / name), full_page=path == "/")
        assert (out / name).stat().st_size > 20_000
