"""Charts and tables with their downloads, and literal example text: the display half of the
page helpers (``_ui`` re-exports these, so a page needs one import)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from w2s_core.viz.export import file_stem, to_csv_bytes, to_html_bytes, to_image_bytes

# Material symbols: their font ships with Streamlit (an emoji needs a font headless Debian lacks)
DOWNLOAD = ":material/download:"


def chart(fig: go.Figure, data: pd.DataFrame | None, name: str,
          slot: str | None = None) -> None:
    """The figure, then one row of downloads: data CSV, PNG, SVG, standalone HTML.

    Every file is built only when clicked (deferred callables), so a rerun pays for none.
    ``name`` names the files; ``slot`` (default: the name) keys the elements. A view that
    shows one item at a time passes a fixed slot, so switching the item updates the same
    chart in place (Plotly.react) instead of unmounting it and drawing a new one.
    """
    stem, key = file_stem(name), file_stem(slot or name)
    st.plotly_chart(fig, key=f"chart_{key}", config={"displaylogo": False})
    with st.container(horizontal=True, gap="small"):
        if data is not None:
            st.download_button("CSV", lambda: to_csv_bytes(data), f"{stem}.csv", "text/csv",
                               key=f"dl_{key}_csv", on_click="ignore", icon=DOWNLOAD)
        st.download_button("PNG", lambda: to_image_bytes(fig, "png"), f"{stem}.png",
                           "image/png", key=f"dl_{key}_png", on_click="ignore", icon=DOWNLOAD)
        st.download_button("SVG", lambda: to_image_bytes(fig, "svg"), f"{stem}.svg",
                           "image/svg+xml", key=f"dl_{key}_svg", on_click="ignore", icon=DOWNLOAD)
        st.download_button("HTML", lambda: to_html_bytes(fig), f"{stem}.html", "text/html",
                           key=f"dl_{key}_html", on_click="ignore", icon=DOWNLOAD)


def table(df: pd.DataFrame, name: str, **kw: Any) -> None:
    st.dataframe(df, hide_index=True, key=f"table_{file_stem(name)}", **kw)
    st.download_button("CSV", lambda: to_csv_bytes(df), f"{file_stem(name)}.csv", "text/csv",
                       key=f"dl_{file_stem(name)}_table", on_click="ignore", icon=DOWNLOAD)


def small_table(df: pd.DataFrame, name: str, slot: str | None = None) -> None:
    """A few rows as a static HTML table (+ CSV): the interactive grid of ``table`` costs the
    browser a canvas component per table, too slow for views that redraw on every click.
    ``slot`` as in ``chart``."""
    st.table(df, hide_index=True)
    st.download_button("CSV", lambda: to_csv_bytes(df), f"{file_stem(name)}.csv", "text/csv",
                       key=f"dl_{file_stem(slot or name)}_table", on_click="ignore",
                       icon=DOWNLOAD)


def md_escape(text: str) -> str:
    """Example texts are user data: show them literally, not as Markdown (tweets are full of
    #, * and _)."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|<>~$" else ch for ch in str(text))
