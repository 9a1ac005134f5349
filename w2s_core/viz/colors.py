"""One colour per method and per teacher, used by every page and every exported figure.

Mid-tone colours only: each must stay readable on Streamlit's light (white) and dark (#0e1117)
backgrounds, so nothing very pale or very dark. Methods and teachers use disjoint palettes so a
teacher bar is never mistaken for a method line.
"""

from __future__ import annotations

import hashlib

METHOD_ORDER = ["single", "naive", "joint", "vote", "dawid-skene", "bayes", "bayes-softy"]
# generation (slot filling) methods, in the generation sweep's order; "joint" and "bayes" are
# shared names and keep their place above
GEN_METHOD_ORDER = ["single-hard", "single-soft", "naive-soft", "joint", "bayes",
                    "bayes-restricted"]

METHOD_COLORS: dict[str, str] = {
    "single": "#8c8c8c",
    "naive": "#1f77b4",
    "joint": "#17becf",
    "vote": "#ff7f0e",
    "dawid-skene": "#9467bd",
    "bayes": "#d62728",
    "bayes-softy": "#e377c2",
    "ceiling": "#2ca02c",
    "weak vote": "#bcbd22",  # the teachers' soft vote as a label source, not the "vote" student
    # generation: the analogue of a classification method keeps its hue (naive → naive-soft,
    # bayes-softy → bayes-restricted); the two single-teacher baselines are told apart
    "single-hard": "#8c8c8c",
    "single-soft": "#8c564b",
    "naive-soft": "#1f77b4",
    "bayes-restricted": "#e377c2",
}

METHOD_LABELS: dict[str, str] = {
    "single": "single weak",
    "naive": "naive multi-weak",
    "joint": "joint decoding",
    "vote": "majority vote",
    "dawid-skene": "Dawid–Skene",
    "bayes": "Bayesian (EDL)",
    "bayes-softy": "Bayesian (EDL, soft y)",
    "ceiling": "strong ceiling",
    "single-hard": "single weak, hard top-1",
    "single-soft": "single weak, soft (word bridge)",
    "naive-soft": "naive multi-weak, soft",
    "bayes-restricted": "Bayesian (EDL, restricted support)",
}

TEACHER_COLORS: dict[str, str] = {
    "tfidf-logreg": "#1b9e77",
    "minilm-l3": "#66a61e",
    "minilm-l6": "#e6ab02",
    "mpnet-2l": "#7570b3",
    "mpnet-4l": "#a6761d",
    # generation teachers
    "gpt-char": "#b8860b",
    "gpt-word": "#2a9d8f",
    "gpt-bpe": "#d1495b",
    "smollm2-4l": "#6a4c93",
}
# For teachers the project does not know by name: picked by a hash of the name, so a teacher
# keeps its colour across pages, sessions and experiments.
_TEACHER_FALLBACK = ["#00a3a3", "#b07aa1", "#9c755f", "#6b8e23", "#4e79a7", "#f28e2b",
                     "#59a14f", "#af7aa1", "#76b7b2", "#edc948"]
_METHOD_FALLBACK = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]

OUTCOME_COLORS = {"correct": "#3a9e6f", "wrong": "#e4572e"}
REFERENCE_COLOR = "#7f7f7f"  # floors, ceilings, diagonals: neutral grey in both themes


def _pick(name: str, palette: list[str]) -> str:
    h = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16)
    return palette[h % len(palette)]


def method_color(method: str) -> str:
    return METHOD_COLORS.get(method) or _pick(method, _METHOD_FALLBACK)


def teacher_color(teacher: str) -> str:
    return TEACHER_COLORS.get(teacher) or _pick(teacher, _TEACHER_FALLBACK)


def source_color(name: str) -> str:
    """A label source on the calibration page: a method, the weak vote, or a teacher."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    return teacher_color(name)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def order_methods(methods: list[str]) -> list[str]:
    """Known methods in the canonical order, then any others alphabetically. The order is the
    generation sweep's when a generation-only method is among them (a generation experiment),
    else classification's."""
    gen = set(methods) & (set(GEN_METHOD_ORDER) - set(METHOD_ORDER))
    first, second = (GEN_METHOD_ORDER, METHOD_ORDER) if gen else (METHOD_ORDER, GEN_METHOD_ORDER)
    order = first + [m for m in second if m not in first]
    known = [m for m in order if m in methods]
    return known + sorted(m for m in set(methods) if m not in order)


def rgba(hex_color: str, alpha: float) -> str:
    """'#rrggbb' → 'rgba(r,g,b,a)' for translucent CI bands."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
