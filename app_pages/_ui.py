"""Streamlit glue shared by the frame (app.py) and the pages: cached loaders keyed on file
modification times, selections that survive page switches and live in the URL, charts with
their downloads, and the guard that keeps stack traces off the page."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app_pages._charts import DOWNLOAD, chart, md_escape, small_table, table  # noqa: F401 - pages import _ui
from w2s_core import api
from w2s_core.experiments import store
from w2s_core.viz.runs import is_generation, representative_data_seed, score_of

log = logging.getLogger("w2s.dashboard")
SEL = "sel_"  # plain session keys: unlike widget keys they survive a page switch (trap 1)
QP_KEYS = ("dataset", "exp", "setting", "data_seed", "k", "subset", "method", "aux", "seed",
           "floor", "metric", "example", "runs", "slide")
LAB_PAGE = "app_pages/lab.py"
# Icons are Material symbols (":material/<name>:"): their font ships with Streamlit, whereas emoji
# need an emoji font that a headless Debian Chromium lacks (it drew empty boxes).
WARNING = ":material/warning:"
STALE = store.STALE  # the words of a stale-run warning (a method fixed since the run)


# ---------------------------------------------------------------- stamps and cached loaders
def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return 0


def experiments_stamp(ws: Path) -> tuple[Any, ...]:
    base = ws / store.EXPERIMENTS
    if not base.is_dir():
        return ()
    return tuple((d.name, _mtime(d / "experiment.json"), _mtime(d / "runs"))
                 for d in sorted(base.iterdir()) if d.is_dir())


def experiment_stamp(ws: Path, exp_id: str) -> tuple[Any, ...]:
    """Changes whenever a run completes (its metrics.json appears) or any index file changes."""
    root = store.experiment_dir(ws, exp_id).root
    n, newest = 0, 0
    runs = root / "runs"
    if runs.is_dir():
        with os.scandir(runs) as it:
            for d in it:
                m = _mtime(Path(d.path) / "metrics.json")
                n += m > 0
                newest = max(newest, m)
    return (_mtime(root / "experiment.json"), _mtime(runs), _mtime(root / store.RUN_INDEX),
            _mtime(root / "teachers"), _mtime(root / "examples.parquet"), n, newest)


@st.cache_data(show_spinner=False, max_entries=8)
def load_experiments(ws: str, stamp: tuple[Any, ...]) -> pd.DataFrame:
    return api.list_experiments(ws)


@st.cache_data(show_spinner="Loading runs…", max_entries=16)
def load_runs(ws: str, exp_id: str, stamp: tuple[Any, ...]) -> tuple[pd.DataFrame, list[str]]:
    return api.runs(exp_id, ws)


@st.cache_data(show_spinner=False, max_entries=16)
def load_meta(ws: str, exp_id: str, stamp: tuple[Any, ...]) -> dict[str, Any]:
    return api.experiment(exp_id, ws)


@st.cache_data(show_spinner="Loading teacher predictions…", max_entries=8)
def load_teachers(ws: str, exp_id: str, stamp: tuple[Any, ...],
                  data_seed: int | None = None) -> dict[str, pd.DataFrame]:
    return api.teacher_predictions(exp_id, ws, data_seed)


@st.cache_data(show_spinner=False, max_entries=8)
def load_texts(ws: str, exp_id: str, stamp: tuple[Any, ...],
               data_seed: int | None = None) -> dict[str, str]:
    ex = api.examples(exp_id, ws, data_seed, columns=["example_id", "split", "text"])
    ex = ex[ex["split"] != "weak"]  # only transfer/test examples are ever shown
    return dict(zip(ex["example_id"], ex["text"].astype(str), strict=True))


@st.cache_data(show_spinner=False, max_entries=256)
def load_preds(ws: str, exp_id: str, run_id: str, mtime: int) -> pd.DataFrame:
    return api.run_predictions(exp_id, run_id, ws)


# ---------------------------------------------------------------- the context pages read
@dataclass
class Ctx:
    """What the frame resolved this run: workspace, experiment, its runs, the selections."""

    ws: Path
    experiments: pd.DataFrame
    exp_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # the runs of the chosen option setting (and data replicate, when one is chosen): what
    # every page reads, so no page can pool two settings; all_runs: every run (Compare)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    all_runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    setting_names: dict[str, str] = field(default_factory=dict)  # setting hash → label
    data_seeds: list[int] = field(default_factory=list)  # the chosen setting's replicates
    train_setting: str | None = None  # the chosen setting's training setting (its ceilings)
    warnings: list[str] = field(default_factory=list)
    stamp: tuple[Any, ...] = ()
    sel: dict[str, Any] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)

    @property
    def class_names(self) -> list[str]:
        n = int(self.meta.get("n_classes") or 2)
        return [str(c) for c in self.meta.get("class_names") or range(n)]

    @property
    def teacher_names(self) -> list[str]:
        return list(self.meta.get("config", {}).get("teachers", []))

    @property
    def is_generation(self) -> bool:
        """A generation (slot-filling) experiment: pages show SLU-F1, N-best outputs, tokens."""
        return is_generation(self.meta)

    @property
    def score(self) -> str:
        """The run index column of the task's main test score (accuracy | slu_f1)."""
        return score_of(self.meta)

    @property
    def has_runs(self) -> bool:
        """At least one complete transfer run (the sidebar then has a K, a subset, …)."""
        return self.exp_id is not None and not self.runs.empty and "k" in self.sel

    @property
    def several_settings(self) -> bool:
        return len(self.setting_names) > 1

    @property
    def setting_label(self) -> str | None:
        """The chosen option setting's label, or None when the experiment has only one."""
        return self.setting_names.get(self.sel.get("setting", "")) if self.several_settings \
            else None

    @property
    def several_replicates(self) -> bool:
        return len(self.data_seeds) > 1

    @property
    def data_seed(self) -> int | None:
        """The data replicate a one-replicate view (teachers, texts, one run) shows: the chosen
        one, or the first when all are chosen."""
        return representative_data_seed(self.runs, self.sel.get("data_seed", "all"))

    def teachers(self) -> dict[str, pd.DataFrame]:
        assert self.exp_id is not None
        return load_teachers(str(self.ws), self.exp_id, self.stamp, self.data_seed)

    def texts(self) -> dict[str, str]:
        assert self.exp_id is not None
        try:
            return load_texts(str(self.ws), self.exp_id, self.stamp, self.data_seed)
        except Exception as e:  # noqa: BLE001 - texts are decoration; the page works without
            self.warn_once("examples", f"Example texts unavailable: {e}")
            return {}

    def preds(self, run_id: str) -> pd.DataFrame | None:
        """A run's per-example predictions, or None with one warning naming a corrupt run."""
        assert self.exp_id is not None
        path = store.experiment_dir(self.ws, self.exp_id).run_dir(run_id) / "predictions.parquet"
        try:
            return load_preds(str(self.ws), self.exp_id, run_id, _mtime(path))
        except Exception as e:  # noqa: BLE001 - one bad run must not take the page down
            self.warn_once(run_id, f"Run {run_id} could not be read and is left out: {e}")
            return None

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            st.warning(message, icon=WARNING)


def ctx() -> Ctx:
    return st.session_state["_ctx"]


# ---------------------------------------------------------------- selections
def load_query_params() -> None:
    """On a session's first run, seed the selections from the URL (a bookmarked view)."""
    if st.session_state.get("_qp_loaded"):
        return
    st.session_state["_qp_loaded"] = True
    for k in QP_KEYS:
        if k in st.query_params:
            st.session_state[SEL + k] = st.query_params[k]


def _publish(name: str, value: Any) -> None:
    if name not in QP_KEYS:
        return
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if st.query_params.get(name) != text:
        st.query_params[name] = text


def set_sel(name: str, value: Any) -> None:
    """Change a selection from code (a button callback): the widget follows on the next run."""
    st.session_state[SEL + name] = value
    st.session_state["w_" + name] = value


def _resolve(name: str, options: Sequence[Any], default: Any) -> Any:
    cur = st.session_state.get(SEL + name)
    if cur in options:
        return cur
    match = [o for o in options if str(o) == str(cur)]  # values from the URL arrive as text
    if match:
        return match[0]
    return default if default in options else options[0]


def select(name: str, label: str, options: Sequence[Any], *, where: Any = None,
           kind: str = "selectbox", default: Any = None,
           fmt: Callable[[Any], str] | None = None, **kw: Any) -> Any:
    """A selection widget whose value lives in ``sel_<name>`` and in the URL.

    The widget key is re-seeded from the plain key whenever Streamlit has dropped the widget's
    state (it does so for widgets not drawn on the previous page), so choices persist across
    page switches in a real browser, not only in AppTest.
    """
    options = list(options)
    if not options:
        return None
    cur = _resolve(name, options, default)
    wkey = "w_" + name
    if st.session_state.get(wkey) not in options:
        st.session_state[wkey] = cur
    where = where if where is not None else st
    widget = {"selectbox": where.selectbox, "radio": where.radio,
              "select_slider": where.select_slider}[kind]
    if fmt is not None:
        kw["format_func"] = fmt
    value = widget(label, options, key=wkey, **kw)
    st.session_state[SEL + name] = value
    _publish(name, value)
    return value


def select_many(name: str, label: str, options: Sequence[Any], default: list[Any], *,
                fmt: Callable[[Any], str] | None = None, **kw: Any) -> list[Any]:
    options = list(options)
    cur = st.session_state.get(SEL + name)
    if isinstance(cur, str):
        cur = cur.split(",") if cur else []
    kept = [o for o in (cur if cur is not None else default) if o in options]
    if cur and not kept:  # naming none of these options: another experiment's, stale
        kept = [o for o in default if o in options]
    cur = kept
    wkey = "w_" + name
    if wkey not in st.session_state or any(o not in options for o in st.session_state[wkey]):
        st.session_state[wkey] = cur
    if fmt is not None:
        kw["format_func"] = fmt
    value = st.multiselect(label, options, key=wkey, **kw)
    st.session_state[SEL + name] = value
    _publish(name, value)
    return value


# ---------------------------------------------------------------- guards
def need_runs(c: Ctx) -> bool:
    """Empty state: say why there is nothing to show, and point to the Lab."""
    if c.has_runs:
        return True
    if c.exp_id is None:
        st.info(f"No experiments in the workspace `{c.ws}` yet.", icon=":material/folder_open:")
    else:
        st.info(f"Experiment `{c.exp_id}` has no complete transfer runs yet — they appear here "
                "as soon as the sweep finishes each one.", icon=":material/hourglass_top:")
    st.page_link(LAB_PAGE, label="Open the Lab to run the demo experiment",
                 icon=":material/science:")
    return False


def guard(body: Callable[[Ctx], None]) -> None:
    """Run a page body; an unexpected error becomes one line on the page, the traceback goes
    to the server log. Streamlit's own control-flow exceptions (rerun, stop) derive from
    BaseException and pass through."""
    try:
        body(ctx())
    except Exception as e:  # noqa: BLE001
        log.exception("dashboard page failed")
        st.error(f"This view could not be drawn: {e.__class__.__name__}: {str(e)[:300]}",
                 icon=":material/error:")
