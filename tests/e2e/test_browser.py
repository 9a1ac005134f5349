"""The dashboard in a real Chromium: every page renders, the ensemble-size slider redraws the
recovery chart, the choice survives page switches and lands in the URL, a CSV downloads.
Screenshots of every page are saved under the test's tmp folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning")

PAGES = [("Teachers", "teachers"), ("Dirichlet posteriors", "dirichlet"),
         ("Calibration", "calibration"), ("Compare runs", "compare"),
         ("Talk mode", "talk"), ("Lab", "lab"), ("Recovery", "recovery")]
CHART = "div.stPlotlyChart .js-plotly-plot .main-svg"

# names of the traces of every plotly chart on the page (plotly keeps them on the div)
TRACE_NAMES = "() => [...document.querySelectorAll('.js-plotly-plot')]" \
              ".map(g => (g.data || []).map(t => t.name))"


def _selected_k(page: Page) -> int | None:
    for names in page.evaluate(TRACE_NAMES):
        for n in names:
            m = re.fullmatch(r"K = (\d+)", n or "")
            if m:
                return int(m.group(1))
    return None


def _no_errors(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


def _shot(page: Page, path: Path) -> None:
    # the "running" indicator appears only after a short delay: give it time to show, then
    # wait for the script run to end, and for plotly's transitions
    page.wait_for_timeout(700)
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=30_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True, animations="disabled")


def test_pages_k_slider_persistence_and_download(page: Page, app_url: str,
                                                 tmp_path: Path) -> None:
    page.goto(app_url)
    page.wait_for_selector(CHART, timeout=60_000)
    _no_errors(page)
    k0 = _selected_k(page)
    assert k0 is not None and k0 >= 2
    slider = page.get_by_role("slider", name="Ensemble size K")
    slider.focus()
    slider.press("ArrowLeft")
    page.wait_for_function(f"() => ({TRACE_NAMES})().flat().includes('K = {k0 - 1}')",
                           timeout=15_000)  # the chart was redrawn for the new K
    expect(page).to_have_url(re.compile(rf"[?&]k={k0 - 1}(&|$)"))
    _shot(page, tmp_path / "recovery.png")

    with page.expect_download() as dl:
        page.get_by_test_id("stDownloadButton").filter(has_text="CSV").first.click()
    csv = tmp_path / dl.value.suggested_filename
    dl.value.save_as(csv)
    header = csv.read_text().splitlines()[0].split(",")
    assert {"method", "k", "mean", "lo", "hi", "n_undefined"} <= set(header)

    nav = page.get_by_test_id("stSidebarNav")
    for title, slug in PAGES:
        nav.get_by_role("link", name=title).click()
        expect(page).to_have_url(re.compile(rf"/{slug}(\?|$)") if slug != "recovery"
                                 else re.compile(r"127\.0\.0\.1:\d+/?(\?|$)"))
        if slug not in ("lab", "talk"):
            page.wait_for_selector(CHART, timeout=60_000)
        page.wait_for_load_state("networkidle")
        _no_errors(page)
        _shot(page, tmp_path / f"{slug}.png")
        # the sidebar keeps the chosen K on every page (plain session keys, not widget state)
        expect(page.get_by_test_id("stSliderThumbValue").first).to_have_text(str(k0 - 1))
    # back on Recovery after six page switches: still the K chosen above
    page.wait_for_selector(CHART, timeout=30_000)
    assert _selected_k(page) == k0 - 1
    assert all((tmp_path / f"{slug}.png").stat().st_size > 10_000 for _, slug in PAGES)


def test_bookmarked_view_in_dark_mode(browser, app_url: str, tmp_path: Path) -> None:
    ctx = browser.new_context(color_scheme="dark", viewport={"width": 1400, "height": 1600})
    page = ctx.new_page()
    page.goto(f"{app_url}/dirichlet?floor=best&metric=accuracy")
    page.wait_for_selector(CHART, timeout=60_000)
    _no_errors(page)
    _shot(page, tmp_path / "dirichlet-dark.png")
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Recovery").click()
    page.wait_for_selector(CHART, timeout=30_000)
    expect(page.locator("div.stPlotlyChart .gtitle").first).to_have_text(
        "Accuracy vs ensemble size K")  # the bookmarked metric and floor were restored
    expect(page).to_have_url(re.compile(r"floor=best"))
    _shot(page, tmp_path / "recovery-dark.png")
    ctx.close()
