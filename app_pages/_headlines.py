"""Talk-mode headlines computed from the data: a slide must never claim a trend the numbers do
not show. Pure functions over the recovery table (no Streamlit), so they are tested directly.

"Clearly" has one meaning here: the 95 % intervals at the two ends do not overlap. A cell with a
single run (or a single independent unit) has no interval, so no trend through it is clear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import pandas as pd

GROWS, SHRINKS, FLAT = "grows", "shrinks", "does not clearly change"


def pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def has_interval(row: pd.Series) -> bool:
    """A real interval: finite bounds from at least two independent values."""
    units = row.get("n_units", row.get("n", 0))
    lo, hi = row.get("lo"), row.get("hi")
    try:
        return int(units) >= 2 and math.isfinite(float(lo)) and math.isfinite(float(hi))
    except (TypeError, ValueError):
        return False


def with_interval(row: pd.Series) -> str:
    """``72 % [65 %, 79 %]``, or ``72 % (one run, no interval)``."""
    if has_interval(row):
        return f"{pct(row['mean'])} [{pct(row['lo'])}, {pct(row['hi'])}]"
    return f"{pct(row['mean'])} (no interval: one run)"


def series_name(method: str, aux: object) -> str:
    """The series' name, HTML-escaped (method names come from the workspace's files)."""
    return escape(f"{method} + aux" if bool(aux) else str(method))


def trend(first: pd.Series, last: pd.Series) -> str:
    """grows / shrinks when the two intervals are disjoint, else does not clearly change."""
    if not (has_interval(first) and has_interval(last)):
        return FLAT
    if float(last["lo"]) > float(first["hi"]):
        return GROWS
    if float(last["hi"]) < float(first["lo"]):
        return SHRINKS
    return FLAT


@dataclass(frozen=True)
class Headline:
    title: str  # plain text
    line: str  # HTML (bold numbers); every name in it is escaped
    direction: str | None  # GROWS | SHRINKS | FLAT, None when no method has two K values


def recovery_headline(table: pd.DataFrame) -> Headline:
    """The recovery slide's title and line from a recovery table (method, aux, k, mean, lo, hi,
    n[, n_units]).

    The trend is that of the *best method*: of the series (method ± aux) measured at two or more
    K, the one holding the highest mean; it compares its smallest and largest K. The best cell
    (method, aux, K) is quoted with its interval.
    """
    ok = table[pd.to_numeric(table["mean"], errors="coerce").notna()] if len(table) else table
    if ok.empty:
        return Headline("Recovery vs K", "No defined PGR in view.", None)
    best = ok.loc[ok["mean"].astype(float).idxmax()]
    cell = (f"Best cell: <b>{escape(str(best['method']))}</b>, "
            f"{'with' if bool(best['aux']) else 'without'} aux, K = {int(best['k'])}: "
            f"<b>{with_interval(best)}</b> of the gap.")
    # runs with different option settings are never one series (they are never pooled)
    keys = [c for c in ("setting", "method", "aux") if c in ok.columns]
    multi = [(g["mean"].astype(float).max(), g.sort_values("k"))
             for _, g in ok.groupby(keys, sort=False, dropna=False) if g["k"].nunique() >= 2]
    if not multi:
        return Headline("Recovery vs K", f"No method was run at two values of K. {cell}", None)
    _, g = max(multi, key=lambda t: t[0])
    first, last = g.iloc[0], g.iloc[-1]
    method, aux = first["method"], first["aux"]
    direction = trend(first, last)
    ends = (f"<b>{series_name(method, aux)}</b> recovers {with_interval(first)} of the gap at "
            f"K = {int(first['k'])} and {with_interval(last)} at K = {int(last['k'])}")
    if direction == FLAT:
        ends += " (the intervals overlap or are missing)"
    return Headline(f"Recovery {direction} with K", f"{ends}. {cell}", direction)
