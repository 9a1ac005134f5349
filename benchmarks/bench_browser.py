"""The Generation page's utterance switch as a user sees it: `streamlit run` on a generation
workspace, Debian's Chromium driven by Playwright.

Clocks per switch:
- in the page (what a user sees): from the browser's own click event on the new utterance in
  the list until the new utterance's heading is shown and the soft-label heatmap has been
  replaced by the new utterance's (a MutationObserver stamps the moments, ``performance.now()``
  both ends), and until the heading alone;
- in the harness: from Playwright's ``click()`` call until the heading shows, a heatmap is in
  the page and Streamlit reports no running script (the old heatmap counts: the chart slot is
  reused). It adds Playwright's own work (actionability checks, scrolling, polling).

Why a browser and not AppTest (benchmarks/bench_dashboard.py): the utterance view is an
``st.fragment``, so in a browser a switch reruns only the fragment; AppTest reruns the whole
script, which is an upper bound. Target (issue 8): ≤ 300 ms.

    python benchmarks/bench_browser.py                  # builds the tests' tiny generation sweep
    python benchmarks/bench_browser.py --workspace W    # e.g. the generation demo's workspace
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

TARGET_MS = 300
# the heading of the utterance in view and whether a script is still running
STATE = ("() => [document.querySelector('[data-testid=stMain] h4')?.innerText || '',"
         " !!document.querySelector('[data-testid=stStatusWidget]'),"
         " [...document.querySelectorAll('.js-plotly-plot')].flatMap(g => g._fullData || [])"
         ".filter(t => t.type === 'heatmap').length]")
# in-page clock: the click event (capture phase, before Streamlit sees it); the first DOM
# mutation after which the wanted heading is shown; the first after which the heatmap (charts
# on) holds new data (the chart slot is reused, so the old heatmap stays in the page until
# Plotly.react redraws it); and the last mutation inside the main area (the view settled)
OBSERVE = """() => {
  const w = window;
  w.__tc = null; w.__td = null; w.__th = null; w.__tl = null; w.__want = null; w.__sig = null;
  // the heatmap trace object: Plotly.react installs a new one with new data; comparing by
  // identity keeps the observer cheap (it runs on every mutation of the redraw)
  w.__heat = () => [...document.querySelectorAll('.js-plotly-plot')]
    .flatMap(g => g.data || []).find(t => t.type === 'heatmap') || null;
  document.addEventListener('click', () => {
    if (w.__want && w.__tc === null) w.__tc = performance.now(); }, true);
  new MutationObserver((recs) => {
    if (!w.__want || w.__tc === null) return;
    const main = document.querySelector('[data-testid=stMain]');
    if (main && recs.some(r => main.contains(r.target))) w.__tl = performance.now();
    if (w.__td !== null) return;
    const h = document.querySelector('[data-testid=stMain] h4');
    if (!h || !h.innerText.includes(w.__want)) return;
    if (w.__th === null) w.__th = performance.now();
    if (w.__heat() !== w.__sig) w.__td = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true,
                             attributes: true});
}"""


def _switch(page, index: int) -> tuple[float, float, float, float]:  # noqa: ANN001 - a Page
    """Pick option ``index`` of the Utterance list; in-page ms from the click event until its
    heading and (charts on) its new heatmap are in the page, until its heading alone, until
    the main area's last DOM change (settled: nothing changed for 400 ms after the harness saw
    the run end), and harness ms from the click call until the heading shows and no script
    runs."""
    main = page.get_by_test_id("stMain")
    main.get_by_test_id("stSelectbox").filter(has_text="Utterance").click()
    option = page.get_by_role("option").nth(index)
    text = option.inner_text().split("] ", 1)[1].rsplit(" — ", 1)[0].strip()[:60]
    page.evaluate("(w) => { window.__tc = null; window.__td = null; window.__th = null; "
                  "window.__tl = null; window.__sig = window.__heat(); window.__want = w; }",
                  text)
    need = min(1, page.evaluate(STATE)[2])  # a page that draws no heatmap waits for none
    t0 = time.perf_counter()
    option.click()
    while True:
        heading, running, maps = page.evaluate(STATE)
        now = (time.perf_counter() - t0) * 1000
        if text in heading and not running and maps >= need:
            break
        if now > 60_000:
            raise SystemExit(f"utterance {text[:40]!r} not drawn after 60 s")
        page.wait_for_timeout(5)
    last, quiet = None, 0.0
    while quiet < 400:  # settled: no change in the main area for 400 ms
        page.wait_for_timeout(20)
        tl = page.evaluate("() => window.__tl")
        quiet = quiet + 20 if tl == last else 0.0
        last = tl
    tc, td, th = page.evaluate("() => [window.__tc, window.__td, window.__th]")
    if tc is None or th is None:
        raise SystemExit(f"utterance {text[:40]!r}: no click event or no redraw seen in the page")
    # the heatmap not replaced (charts off, or an utterance without targets): the heading's time
    return (td if td is not None else th) - tc, th - tc, last - tc, now


def bench(ws: Path, switches: int, charts: bool) -> float:
    from conftest import ARGS, CHROMIUM, serve
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp, serve(ws, Path(tmp) / "server.log") as url, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{url}/generation")
        page.wait_for_selector("[data-testid=stMain] h4", timeout=120_000)
        page.wait_for_selector("[data-testid='stStatusWidget']", state="detached",
                               timeout=120_000)
        if charts:
            page.get_by_test_id("stMain").get_by_text("Charts: soft-label heatmap").click()
            page.wait_for_selector(".js-plotly-plot", timeout=120_000)
            page.wait_for_timeout(1000)
        page.evaluate(OBSERVE)
        first, again, heads, settled, harness = [], [], [], [], []
        order = [1, 2, 3, 4, 0]  # the first options, then back: each seen once, then again
        for i in range(switches):
            ms, head, last, outer = _switch(page, order[i % len(order)])
            (first if i < len(order) else again).append(ms)
            heads.append(head)
            settled.append(last)
            harness.append(outer)
        browser.close()
    print(f"workspace: {ws}; charts {'on' if charts else 'off (the default)'}")
    print(f"utterance switch in Chromium, {switches} switches, in the page (click event → new "
          f"utterance{' and heatmap' if charts else ''} shown):")
    for name, xs in (("first visit", first), ("seen before", again)):
        if xs:
            print(f"  {name:<12} median {statistics.median(xs):.0f} ms, max {max(xs):.0f} ms")
    print(f"  the heading alone: median {statistics.median(heads):.0f} ms")
    print(f"  the view settled (the main area's last change): median "
          f"{statistics.median(settled):.0f} ms, max {max(settled):.0f} ms")
    print(f"  harness (Playwright click call → heading shown, no script running): median "
          f"{statistics.median(harness):.0f} ms, max {max(harness):.0f} ms")
    med = statistics.median(first + again)
    print(f"median {med:.0f} ms in the page (target ≤ {TARGET_MS} ms)")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", help="a generation workspace (default: build the tests' "
                    "tiny generation sweep)")
    ap.add_argument("--switches", type=int, default=15)
    ap.add_argument("--charts", action="store_true", help="turn the page's charts on first")
    args = ap.parse_args()
    if args.workspace:
        bench(Path(args.workspace).resolve(), args.switches, args.charts)
        return
    from gen_workspace import build

    with tempfile.TemporaryDirectory() as tmp:
        bench(build(Path(tmp)).ws, args.switches, args.charts)


if __name__ == "__main__":
    main()
