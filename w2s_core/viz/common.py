"""Layout conventions shared by every figure builder.

Builders never set a template or font colours: on screen Streamlit's theme supplies them (so the
same figure reads in light and dark mode), and exports re-template with "plotly" (export.py).
"""

from __future__ import annotations

import plotly.graph_objects as go

from w2s_core.viz.colors import REFERENCE_COLOR

LEGENDS = {
    # top: short legends on single charts; bottom: subplot grids, whose subplot titles sit where
    # a top legend would; right: long legends (many sources) that would wrap into the title
    "top": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    "bottom": {"orientation": "h", "yanchor": "top", "y": -0.16, "xanchor": "left", "x": 0.0},
    "right": {"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02},
}


def finish(fig: go.Figure, title: str, *, height: int = 460, x: str | None = None,
           y: str | None = None, legend: bool | str = True) -> go.Figure:
    """Title, size, margins and legend placement (``legend``: False, True = "top", "bottom",
    "right")."""
    where = "top" if legend is True else (legend or "top")
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 90 if where == "bottom" else 50},
        legend={**LEGENDS[where], "title": None},
        showlegend=legend is not False,
        hovermode="closest",
    )
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


def diagonal(fig: go.Figure, lo: float = 0.0, hi: float = 1.0, name: str = "perfect",
             **trace_kw: object) -> None:
    """The y = x reference (perfect calibration, perfect estimate)."""
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name=name,
                             line={"color": REFERENCE_COLOR, "dash": "dot", "width": 1},
                             hoverinfo="skip", **trace_kw))


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A blank figure carrying a message, for views with no data (never a broken chart)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 16})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def bigger(fig: go.Figure, size: int = 20, height: int = 560) -> go.Figure:
    """Room-sized type for Talk mode; the screen's headline replaces the chart title."""
    fig.update_layout(font={"size": size}, legend_font={"size": size - 2}, height=height,
                      title_text="", margin={"t": 40})
    fig.update_xaxes(tickfont={"size": size - 2}, title_font={"size": size})
    fig.update_yaxes(tickfont={"size": size - 2}, title_font={"size": size})
    fig.update_annotations(font_size=size - 2)
    return fig
