"""The Generation page's utterance switch as a user sees it: `streamlit run` on a generation
workspace, Debian's Chromium driven by Playwright, and the time from picking another utterance
in the list to the new utterance's heading and soft-label heatmap on screen, with no script
still running.

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


def _switch(page, index: int) -> tuple[float, str]:  # noqa: ANN001 - playwright Page
    """Pick option ``index`` of the Utterance list; ms until its heading and heatmap are drawn
    and Streamlit reports no running script."""
    main = page.get_by_test_id("stMain")
    main.get_by_test_id("stSelectbox").filter(has_text="Utterance").click()
    option = page.get_by_role("option").nth(index)
    text = option.inner_text().split("] ", 1)[1].rsplit(" — ", 1)[0].strip()
    t0 = time.perf_counter()
    option.click()
    while True:
        heading, running, maps = page.evaluate(STATE)
        if text[:60] in heading and not running and maps >= 1:
            return (time.perf_counter() - t0) * 1000, text
        if time.perf_counter() - t0 > 60:
            raise SystemExit(f"utterance {text[:40]!r} not drawn after 60 s")
        page.wait_for_timeout(5)


def bench(ws: Path, switches: int) -> float:
    from conftest import ARGS, CHROMIUM, serve
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp, serve(ws, Path(tmp) / "server.log") as url, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{url}/generation")
        page.wait_for_selector(".js-plotly-plot", timeout=120_000)
        page.wait_for_selector("[data-testid='stStatusWidget']", state="detached",
                               timeout=120_000)
        first, again = [], []
        order = [1, 2, 3, 4, 0]  # the first options, then back: each seen once, then again
        for i in range(switches):
            ms, _ = _switch(page, order[i % len(order)])
            (first if i < len(order) else again).append(ms)
        browser.close()
    print(f"workspace: {ws}")
    print(f"utterance switch in Chromium (fragment rerun + drawing), {switches} switches:")
    for name, xs in (("first visit", first), ("seen before", again)):
        if xs:
            print(f"  {name:<12} median {statistics.median(xs):.0f} ms, max {max(xs):.0f} ms")
    med = statistics.median(first + again)
    print(f"median {med:.0f} ms (target ≤ {TARGET_MS} ms)")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", help="a generation workspace (default: build the tests' "
                    "tiny generation sweep)")
    ap.add_argument("--switches", type=int, default=15)
    args = ap.parse_args()
    if args.workspace:
        bench(Path(args.workspace).resolve(), args.switches)
        return
    from gen_workspace import build

    with tempfile.TemporaryDirectory() as tmp:
        bench(build(Path(tmp)).ws, args.switches)


if __name__ == "__main__":
    main()
