"""Generation: one utterance at a time (most-disagreed first, searchable) — what each teacher
believed (N-best with word probabilities, the jointly decoded target), what the student was
trained toward (bridged token soft labels in the stored bridge modes, Dirichlet read-outs of
Bayesian runs), what it produced against gold. The DPO pairs have their own page (dpo.py)."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import _data as data
from app_pages import _gen_run as gen_run
from app_pages import _ui as ui
from w2s_core import api
from w2s_core.experiments import store
from w2s_core.viz import gen_tokens as gt
from w2s_core.viz import generation as gv

LEGEND = ("Colour = probability: " + gv.span("0", 0.0, "p = 0") + " " +
          gv.span("0.5", 0.5, "p = 0.5") + " " + gv.span("1", 1.0, "p = 1") +
          " — hover a word or token for its numbers.")


# ---------------------------------------------------------------- cached loads
@st.cache_data(show_spinner=False, max_entries=16)
def _ranked(ws: str, exp_id: str, stamp: tuple, data_seed: int | None,
            names: tuple[str, ...]) -> pd.DataFrame:
    teachers = ui.load_teachers(ws, exp_id, stamp, data_seed)
    return gv.rank_utterances(teachers, list(names), ui.load_texts(ws, exp_id, stamp, data_seed))


# Per-utterance lookups go through indexes (example id → its rows) held as shared objects
# (cache_resource: no copy per read, never changed after building), so an utterance switch
# costs a few small frames, not a copy of every teacher's N-best and the run's files.
def _by_example(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {str(e): g for e, g in df.groupby("example_id", sort=False)}


@st.cache_resource(show_spinner=False, max_entries=4)
def _teacher_index(ws: str, exp_id: str, stamp: tuple, data_seed: int | None
                   ) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.DataFrame]]:
    """teacher → example → its test N-best rows; example → its test candidate-pool rows."""
    nb = {t: _by_example(df[df["split"] == "test"])
          for t, df in api.teacher_predictions(exp_id, ws, data_seed).items()}
    pool = api.candidate_pool(exp_id, ws, data_seed)
    return nb, _by_example(pool[pool["split"] == "test"]) if not pool.empty else {}


def _mtimes(c: ui.Ctx, run_id: str) -> tuple[int, ...]:
    assert c.exp_id is not None
    d = store.experiment_dir(c.ws, c.exp_id).run_dir(run_id)
    return tuple(ui._mtime(d / n) for n in ("targets.parquet", "predictions.parquet"))


@st.cache_resource(show_spinner=False, max_entries=16)
def _run_index(ws: str, exp_id: str, run_id: str, mtimes: tuple[int, ...]) -> dict[str, Any]:
    """A run's targets by example (None: no targets.parquet) and its test predictions; keyed
    on the files' modification times like the app's other loaders."""
    targets = api.run_file(exp_id, run_id, "targets.parquet", ws)
    preds = api.run_predictions(exp_id, run_id, ws)
    return {"targets": None if targets is None else _by_example(targets),
            "preds": preds[["example_id", "text", "valid", "tp", "fp", "fn", "utt_slu_f1"]]}


def _utterance(c: ui.Ctx, row: pd.Series, names: list[str], example: str) -> dict[str, Any]:
    """Everything the utterance view shows about ``example`` under run ``row``."""
    assert c.exp_id is not None
    rid, lam_mode = str(row["run_id"]), _lam_mode(c, row)
    return _utterance_view(str(c.ws), c.exp_id, c.stamp, c.data_seed, rid, _mtimes(c, rid),
                           example, tuple(names), repr(lam_mode), _joint_mode(row),
                           str(row["subset"]), lam_mode, tuple(c.teacher_names))


@st.cache_resource(show_spinner=False, max_entries=256)
def _utterance_view(ws: str, exp_id: str, stamp: tuple, data_seed: int | None, run_id: str,
                    mtimes: tuple[int, ...], example: str, names: tuple[str, ...],
                    lam_key: str, joint_mode: str, subset: str, _lam_mode: Any,
                    _teacher_names: tuple[str, ...]) -> dict[str, Any]:
    """Built once per (run, utterance) and shared (cache_resource, never changed after
    building): the frames and the HTML of the teachers' N-best and the token strips, so
    revisiting an utterance costs only drawing. ``lam_key`` stands for ``_lam_mode``."""
    nb_idx, pool_idx = _teacher_index(ws, exp_id, stamp, data_seed)
    nb = gv.nbest({t: nb_idx[t][example] for t in names if example in nb_idx.get(t, {})},
                  example, list(names))
    lam = gv.ensemble_weights(_lam_mode, nb[nb["rank"] == 0], list(names), list(_teacher_names))
    pool = pool_idx.get(example)
    out: dict[str, Any] = {
        "lam": lam, "tokens": None, "scores": None, "pred": None,
        "joint": gv.joint_candidates(pool, example, lam, mode=joint_mode)
        if pool is not None
        else pd.DataFrame(),
        "teacher_html": gv.nbest_html(nb, list(names), set(subset.split("+")))}
    run = _run_index(ws, exp_id, run_id, mtimes)
    if run["targets"] is not None:  # beyond the stored utterances: an empty token frame
        t = run["targets"].get(example)
        out.update(tokens=pd.DataFrame(columns=gt.TOKEN_COLUMNS) if t is None
                   else gt.token_frame(t, example),
                   scores=None if t is None else gt.label_scores(t, example))
        out["token_html"] = gt.label_strips(out["tokens"])
    preds = run["preds"]
    hit = preds[preds["example_id"] == example]
    if len(hit):
        out.update(pred={"text": str(hit["text"].iloc[0]), "valid": bool(hit["valid"].iloc[0])},
                   contrib=gv.utterance_contribution(preds, example))
    return out


@st.cache_resource(show_spinner=False, max_entries=128)
def _figures(ws: str, exp_id: str, run_id: str, mtimes: tuple[int, ...], example: str,
             title: str, _tokens: pd.DataFrame, bayes: bool
             ) -> tuple[go.Figure, go.Figure | None]:
    """The utterance's two token figures, built once per (run, utterance): plotly's
    validation makes building them the slowest part of an utterance switch. Shared objects
    (cache_resource), never changed after building."""
    heat = gt.q_heatmap(_tokens, title)
    ev = gt.evidence_figure(_tokens, "Token Dirichlet along the target") if bayes else None
    return heat, ev


# what the joint score of a run's `joint_score` option is, in words
JOINT_KEY = {"sum": "Σ λ·log p", "per_char": "Σ λ·log p / (characters + 1)",
             "per_token": "Σ λ·log p / (the teacher's tokens + 1)"}


def _joint_mode(row: pd.Series) -> str:
    """The run's joint score (runs written before the option existed summed log-probs)."""
    mode = row.get("opt_joint_score")
    return str(mode) if isinstance(mode, str) and mode in JOINT_KEY else "sum"


def _html(markup: str) -> None:
    """Our own HTML (every text in it escaped): ``st.html`` sets it as one block, sanitised by
    DOMPurify, where ``st.markdown`` would parse it into a React element per span (a CPU
    profile of utterance switches: ~50 ms a switch less in Streamlit's markdown renderer)."""
    st.html(markup)


def _lam_mode(c: ui.Ctx, row: pd.Series) -> Any:
    """The λ rule of the run's option setting (experiment.json keeps the real value; the
    index has it as text)."""
    opts = ((c.meta.get("settings") or {}).get(str(row.get("setting"))) or {}).get("options")
    return (opts or {}).get("lam") or row.get("opt_lam") or "mean"


# ---------------------------------------------------------------- sections
def teachers_section(row: pd.Series, example: str, u: dict[str, Any]) -> None:
    st.subheader("1 · What each teacher believed")
    _html(LEGEND)
    _html(u["teacher_html"])  # one element for every teacher's N-best: less for a browser to draw
    joint = u["joint"]
    _html("<b>Jointly decoded target</b> — the pooled candidate with the highest "
          f"{html.escape(JOINT_KEY[_joint_mode(row)])}: "
          + ", ".join(f"λ[{html.escape(n)}] = {w:.2f}" for n, w in u["lam"].items()))
    if joint.empty:
        st.info("No candidate pool stored for this utterance.")
        return
    st.code(joint.loc[joint["joint"], "text"].iloc[0], language="json", wrap_lines=True)
    ui.small_table(joint, f"joint-candidates-{example}", "joint-candidates")


def targets_section(c: ui.Ctx, row: pd.Series, example: str, u: dict[str, Any]) -> None:
    st.subheader("2 · What the student was trained toward")
    if u["tokens"] is None:
        st.info("This run stores no targets (runs written before targets.parquet existed).")
        return
    tok = u["tokens"]
    if tok.empty:
        st.info("targets.parquet stores the first 64 test utterances only: this utterance "
                "has no stored targets. Pick one higher in the list.")
        return
    st.caption("Each label is a target the student learnt from, weighted by λ; its tokens are "
               "the student's own, coloured by q, the bridged probability of the label token "
               "(its product over a word's tokens is the teacher's word probability; 1 for "
               "hard labels). Hover a token for the top of the full target distribution. A "
               "Bayesian run adds the token Dirichlet along the target: 1 − vacuity per token "
               "(the probability colours: toward red = little evidence), total evidence and "
               "vacuity on hover.")
    ui.small_table(u["scores"], f"target-scores-{example}", "target-scores")
    _html(u["token_html"])
    # off by default: drawing two plotly charts at every utterance switch costs the browser
    # more than the rest of the view (the strips above carry the same numbers)
    if not st.toggle("Charts: soft-label heatmap and Dirichlet read-outs (exportable)",
                     key="gen_charts"):
        return
    title = (f"Bridged soft labels q over the student's tokens — {row['method']}, "
             f"{row.get('opt_target_mode')}")
    rid = str(row["run_id"])
    heat, ev = _figures(str(c.ws), c.exp_id, rid, _mtimes(c, rid), example, title, tok,
                        str(row["method"]).startswith("bayes"))
    ui.chart(heat, tok, f"soft-labels-{example}", "soft-labels")
    if ev is not None:
        ui.chart(ev, tok, f"dirichlet-tokens-{example}", "dirichlet-tokens")


def student_section(example: str, gold: str, u: dict[str, Any]) -> None:
    st.subheader("3 · What the student produced")
    p, contrib = u["pred"], u["contrib"]
    if p is None:
        st.info("This run has no prediction for this utterance.")
        return
    cols = st.columns(3)
    cols[0].metric("Utterance SLU-F1", f"{contrib['utt_slu_f1']:.3f}")
    cols[1].metric("Run SLU-F1 (test)", f"{contrib['corpus']:.3f}")
    cols[2].metric("Contribution", f"{contrib['contribution']:+.3f}",
                   help="The run's SLU-F1 minus its SLU-F1 without this utterance.")
    st.caption(f"This utterance's SLU counts (word + character passes): TP {contrib['tp']:.2f}"
               f" · FP {contrib['fp']:.2f} · FN {contrib['fn']:.2f}. The run's SLU-F1 = "
               "2·ΣTP / (2·ΣTP + ΣFP + ΣFN) over all test utterances.")
    left, right = st.columns(2)
    with left:
        _html("<b>Student output</b>" + ("" if p["valid"] else " · invalid JSON"))
        st.code(p["text"], language="json", wrap_lines=True)
    with right:
        _html("<b>Gold</b>")
        st.code(gold, language="json", wrap_lines=True)
    ui.small_table(gv.slot_comparison(gold, p["text"]), f"student-vs-gold-{example}",
                   "student-vs-gold")


# ---------------------------------------------------------------- the page
@st.fragment
def utterances(row: pd.Series, names: list[str]) -> None:
    """Search, pick and show one utterance. A fragment: switching the utterance reruns only
    this part, not the sidebar or the DPO section (the ≤ 300 ms target)."""
    ui.guard(lambda c: _utterance_body(c, row, names))


def _utterance_body(c: ui.Ctx, row: pd.Series, names: list[str]) -> None:
    ranked = _ranked(str(c.ws), c.exp_id, c.stamp, c.data_seed, tuple(names))
    st.caption(f"{len(ranked)} test utterances, most-disagreed first: the number of distinct "
               f"slot sets among the top-1 outputs of {', '.join(names)}, then 1 − their mean "
               "pairwise Jaccard overlap of (type, value) pairs.")
    query = st.text_input("Search utterances", key="gen_search",
                          placeholder="words of the utterance or its id")
    shown = gv.search(ranked, query)
    if shown.empty:
        st.info(f"No test utterance contains “{query}”.")
        return
    info = shown.set_index("example_id")
    example = ui.select(
        "example", "Utterance", shown["example_id"].tolist(),
        fmt=lambda i: f"[{info.at[i, 'distinct']} sets · {info.at[i, 'disagreement']:.2f}]"
                      f" {info.at[i, 'text'][:90]} — {i}")
    gold = data.gold_texts(c).get(example, "{}")
    st.markdown(f"#### “{ui.md_escape(info.at[example, 'text'])}”")
    _html("<b>Gold slots:</b> " + gv.slot_chips(gold))
    u = _utterance(c, row, names, example)
    teachers_section(row, example, u)
    targets_section(c, row, example, u)
    student_section(example, gold, u)


def body(c: ui.Ctx) -> None:
    st.title("Generation")
    st.html(f"<style>{gv.SPAN_CSS}</style>")  # the word and token spans' look, once a page
    row = gen_run.run_in_view(c)
    if row is None:
        return
    utterances(row, data.subset_teachers(c))
    st.divider()
    st.page_link("app_pages/dpo.py", label="DPO after this run: preference pairs, SLU-F1 "
                 "before → after", icon=":material/thumbs_up_down:")


ui.guard(body)
