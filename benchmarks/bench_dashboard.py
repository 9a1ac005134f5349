"""Dashboard speed under Streamlit's AppTest: each page cold (empty cache) and warm, the time
from changing the ensemble size K to the redrawn recovery figure, and on a generation workspace
the time from picking another utterance to the redrawn Generation page.

Targets (issues 3, 8): ≤ 1.5 s per page warm, ≤ 300 ms for a K change or an utterance switch.
AppTest runs the same script a browser session runs, in-process, so its timings are the
server-side render time (the browser adds its own drawing on top, about 0.2 s for a plotly
chart).

    python benchmarks/bench_dashboard.py                       # builds `w2s demo --quick` first
    python benchmarks/bench_dashboard.py --workspace w2s_workspace
    python benchmarks/bench_dashboard.py --synthetic           # no engine needed
    python benchmarks/bench_dashboard.py --generation          # the tiny generation sweep
    python benchmarks/bench_dashboard.py --generation --workspace W   # e.g. the generation demo
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "tests"))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(ROOT / "app.py")
PAGES = ["recovery", "teachers", "dirichlet", "calibration", "compare", "talk", "lab",
         "generation", "dpo"]
WARM_TARGET, K_TARGET = 1.5, 0.3


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _check(at: AppTest, where: str) -> AppTest:
    problems = [e.value for e in at.exception] + [e.value for e in at.error]
    if problems:
        raise SystemExit(f"{where}: {problems}")
    return at


def _median_ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"


def bench_utterances(repeats: int) -> float:
    """Generation page: pick each of the first utterances in turn (first visit, then again)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("app_pages/generation.py")
    _check(at.run(), "generation")
    options = list(at.selectbox(key="w_example").options)[:8]
    first, again = [], []
    for rnd in range(max(2, repeats // 2)):
        for label in options[1:] + options[:1]:
            box = at.selectbox(key="w_example").select(label)
            (first if rnd == 0 else again).append(_timed(box.run))
            _check(at, f"utterance {label[:30]}")
    print(f"\nutterance switch → redrawn Generation page ({len(options)} utterances):")
    print(f"  first visit:       {_median_ms(first)}")
    print(f"  seen before:       {_median_ms(again)}")
    return statistics.median(first + again)


def bench(ws: Path, repeats: int, generation: bool = False) -> None:
    os.environ["W2S_WORKSPACE"] = str(ws)
    AppTest.from_file(APP, default_timeout=120).run()  # imports, so "cold" means cache only
    print(f"workspace: {ws}\n")
    print(f"{'page':<13}{'cold s':>9}{'warm s':>9}  (warm target ≤ {WARM_TARGET} s)")
    worst = 0.0
    for page in PAGES:
        st.cache_data.clear()
        at = AppTest.from_file(APP, default_timeout=120)
        at.switch_page(f"app_pages/{page}.py")
        cold = _timed(at.run)
        _check(at, page)
        warm = statistics.median(_timed(at.run) for _ in range(repeats))
        worst = max(worst, warm)
        flag = "" if warm <= WARM_TARGET else "  ← over target"
        print(f"{page:<13}{cold:>9.3f}{warm:>9.3f}{flag}")

    if generation:
        u_med = bench_utterances(repeats)
        print(f"\nworst warm page {worst:.3f} s (target ≤ {WARM_TARGET}); utterance switch "
              f"median {u_med * 1000:.0f} ms (target ≤ {K_TARGET * 1000:.0f})")
        return
    at = _check(AppTest.from_file(APP, default_timeout=120).run(), "recovery")
    ks = [int(k) for k in at.sidebar.select_slider(key="w_k").options]
    first, again = [], []
    for _ in range(max(1, repeats // 2)):
        for k in ks[::-1][1:] + ks[-1:]:  # every other K, then back to the first
            slider = at.sidebar.select_slider(key="w_k").set_value(k)
            (first if len(first) < len(ks) else again).append(_timed(slider.run))
            _check(at, f"K={k}")
    print(f"\nK change → new recovery figure ({len(ks)} values of K):")
    print(f"  first visit of a K: median {statistics.median(first) * 1000:.0f} ms, "
          f"max {max(first) * 1000:.0f} ms")
    if again:
        print(f"  K seen before:      median {statistics.median(again) * 1000:.0f} ms, "
              f"max {max(again) * 1000:.0f} ms")
    k_med = statistics.median(first + again)
    print(f"\nworst warm page {worst:.3f} s (target ≤ {WARM_TARGET}); K change median "
          f"{k_med * 1000:.0f} ms (target ≤ {K_TARGET * 1000:.0f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", help="an existing workspace (default: build the quick demo)")
    ap.add_argument("--synthetic", action="store_true",
                    help="use the synthetic test workspace instead of `w2s demo --quick`")
    ap.add_argument("--generation", action="store_true",
                    help="a generation workspace (default: build the tests' tiny generation "
                    "sweep): time the utterance switch instead of the K change")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # no "bare mode" chatter
    if args.workspace:
        bench(Path(args.workspace).resolve(), args.repeats, args.generation)
        return
    if args.generation:
        from gen_workspace import build

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            ws = build(Path(tmp)).ws
            print(f"built the tiny generation workspace in {time.perf_counter() - t:.0f} s")
            bench(ws, args.repeats, generation=True)
        return
    from workspace_factory import demo_workspace

    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            os.environ["W2S_TEST_WORKSPACE"] = "synthetic"
        t = time.perf_counter()
        ws = demo_workspace(Path(tmp))
        print(f"built {(ws / '.built').read_text()} workspace in {time.perf_counter() - t:.0f} s")
        bench(ws, args.repeats)


if __name__ == "__main__":
    main()
