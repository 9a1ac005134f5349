"""Downloads of a chart: its data as CSV, the figure as PNG / SVG (kaleido) and standalone HTML.

Static images go through kaleido, which drives the system Chromium. Two traps shape this module:
* ``import streamlit`` makes plotly's default template "streamlit", whose colours only the web
  frontend fills in; exported as is, traces come out black. Every export therefore re-templates
  the figure with the stock "plotly" template first (``export_figure``).
* each kaleido call normally launches a browser (≈ 2.5 s); one long-lived sync server brings later
  calls down to ≈ 0.2 s. It is started on first use, guarded by a lock because Streamlit runs
  deferred downloads on worker threads.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import warnings

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_SERVER = {"started": False}
EXPORT_WIDTH = 1100


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def export_figure(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` that renders correctly outside Streamlit (real template, white paper)."""
    out = go.Figure(fig)
    out.update_layout(template="plotly", paper_bgcolor="white")
    return out


def to_html_bytes(fig: go.Figure) -> bytes:
    """A standalone page with plotly.js inlined, so it opens offline (≈ 5 MB)."""
    return export_figure(fig).to_html(include_plotlyjs=True, full_html=True).encode("utf-8")


def _start_server() -> None:
    if _SERVER["started"]:
        return
    _SERVER["started"] = True
    try:
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        atexit.register(lambda: kaleido.stop_sync_server(silence_warnings=True))
    except Exception as e:  # noqa: BLE001 - without a server plotly launches one browser per image
        log.info("kaleido sync server unavailable (%s); exporting without it", e)


def to_image_bytes(fig: go.Figure, fmt: str = "png", *, width: int = EXPORT_WIDTH,
                   height: int | None = None, scale: float = 2.0) -> bytes:
    """PNG or SVG bytes of the figure, rendered by kaleido with the system Chromium."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    return _image_cached(export_figure(fig).to_json(), fmt, width,
                         height or int(fig.layout.height or 520), scale if fmt == "png" else 1.0)


@functools.lru_cache(maxsize=64)
def _image_cached(fig_json: str, fmt: str, width: int, height: int, scale: float) -> bytes:
    # Keyed on the figure's JSON: a second click on the same chart is instant.
    with _LOCK:
        _start_server()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "kopts is ignored if using a server": harmless
            return pio.to_image(pio.from_json(fig_json), format=fmt, width=width,
                                height=height, scale=scale)


def file_stem(name: str) -> str:
    """A safe file name stem for downloads ("Recovery: PGR vs K" → "recovery-pgr-vs-k")."""
    keep = "".join(ch.lower() if ch.isalnum() else "-" for ch in name)
    return "-".join(p for p in keep.split("-") if p) or "chart"
