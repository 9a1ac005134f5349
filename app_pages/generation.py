"""Generation: one utterance at a time (most-disagreed first, searchable) — what each teacher
believed (N-best with word probabilities, the jointly decoded target), what the student was
trained toward (bridged token soft labels in the stored bridge modes, Dirichlet read-outs of
Bayesian runs), what it produced against gold; then the DPO pairs and SLU-F1 before → after."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import _data as data
from app_pages import _ui as ui
from w2s_core import api
from w2s_core.experiments import store
from w2s_core.viz import gen_dpo as gd
from w2s_core.viz import gen_tokens as gt
from w2s_core.viz import generation as gv
from w2s_core.viz.runs import representative_seed, run_label

LEGEND = ("Colour = probability: " + gv.span("0", 0.0, "p = 0") + " " +
          gv.span("0.5", 0.5, "p = 0.5") + " " + gv.span("1", 1.0, "p = 1") +
          " — hover a word or token for its numbers.")


# ---------------------------------------------------------------- cached loads
@st.cache_data(show_spinner=False, max_entries=16)
def _ranked(ws: str, exp_id: str, stamp: tuple, data_seed: int | None,
            names: tuple[str, ...]) -> pd.DataFrame:
    teachers = ui.load_teachers(ws, exp_id, stamp, data_seed)
    return gv.rank_utterances(teachers, list(names), ui.load_texts(ws, exp_id, stamp, data_seed))


# The next two depend on the run, not the utterance: cached so an utterance switch skips
# them (arguments with a leading underscore are not hashed; the stamp stands for them).
@st.cache_data(show_spinner=False, max_entries=64)
def _modes(ws: str, exp_id: str, stamp: tuple, run_id: str, _row: pd.Series,
           _runs: pd.DataFrame) -> dict[str, str]:
    return gt.mode_runs(_runs, _row)


@st.cache_data(show_spinner=False, max_entries=64)
def _dpo(ws: str, exp_id: str, stamp: tuple, run_id: str, _runs: pd.DataFrame
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    parent = _runs.set_index("run_id").loc[run_id]
    dpo = gd.dpo_runs(_runs, parent)
    return dpo, gd.dpo_summary(dpo)


@st.cache_resource(show_spinner=False, max_entries=16)
def _dpo_figure(ws: str, exp_id: str, stamp: tuple, run_id: str, method: str, title: str,
                _summary: pd.DataFrame) -> go.Figure:
    """Built once per run and store state (plotly's validation costs ~0.1 s a build, on every
    rerun of the page otherwise). A shared object, never changed after building."""
    return gd.dpo_figure(_summary, method, title)


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
    nb_idx, pool_idx = _teacher_index(str(c.ws), c.exp_id, c.stamp, c.data_seed)
    nb = gv.nbest({t: nb_idx[t][example] for t in names if example in nb_idx.get(t, {})},
                  example, names)
    lam = gv.ensemble_weights(_lam_mode(c, row), nb[nb["rank"] == 0], names, c.teacher_names)
    pool = pool_idx.get(example)
    out: dict[str, Any] = {
        "nbest": nb, "lam": lam, "tokens": None, "scores": None, "pred": None,
        "joint": gv.joint_candidates(pool, example, lam, mode=_joint_mode(row))
        if pool is not None
        else pd.DataFrame()}
    run = _run_index(str(c.ws), c.exp_id, str(row["run_id"]), _mtimes(c, str(row["run_id"])))
    if run["targets"] is not None:  # beyond the stored utterances: an empty token frame
        t = run["targets"].get(example)
        out.update(tokens=pd.DataFrame(columns=gt.TOKEN_COLUMNS) if t is None
                   else gt.token_frame(t, example),
                   scores=None if t is None else gt.label_scores(t, example))
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


def _row(c: ui.Ctx, run_id: str) -> pd.Series:
    row = c.all_runs.set_index("run_id").loc[run_id].copy()
    row["run_id"] = run_id
    return row


def _html(markup: str) -> None:
    st.markdown(markup, unsafe_allow_html=True)


def _lam_mode(c: ui.Ctx, row: pd.Series) -> Any:
    """The λ rule of the run's option setting (experiment.json keeps the real value; the
    index has it as text)."""
    opts = ((c.meta.get("settings") or {}).get(str(row.get("setting"))) or {}).get("options")
    return (opts or {}).get("lam") or row.get("opt_lam") or "mean"


# ---------------------------------------------------------------- sections
def teachers_section(row: pd.Series, example: str, names: list[str], u: dict[str, Any]
                     ) -> None:
    st.subheader("1 · What each teacher believed")
    subset = set(str(row["subset"]).split("+"))
    nb = u["nbest"]
    _html(LEGEND)
    for name in names:  # one block per teacher: fewer elements for the browser to draw
        rows = nb[nb["teacher"] == name]
        tag = "in the run's subset" if name in subset else "not in the run's subset"
        _html(f"<b>{html.escape(name)}</b> · {tag} · {len(rows)}-best" + "".join(
            f"<br><small>#{int(r.rank) + 1} · log p = {r.logp:.2f} · per token {r.norm:.3f} · "
            f"{'valid' if r.valid else 'invalid'} JSON</small><br>"
            + gv.word_spans(r.text, r.word_logps) for r in rows.itertuples()))
    joint = u["joint"]
    st.markdown("**Jointly decoded target** — the pooled candidate with the highest "
                f"{JOINT_KEY[_joint_mode(row)]}: "
                + ", ".join(f"λ[{n}] = {w:.2f}" for n, w in u["lam"].items()))
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
               "hard labels). Hover a token for the top of the full target distribution.")
    ui.small_table(u["scores"], f"target-scores-{example}", "target-scores")
    _html("<br>".join(
        f"<b>{html.escape(gt.label_name(str(lab), float(g['weight'].iloc[0])))}</b> · mode "
        f"{g['mode'].iloc[0]}<br>{gt.token_spans(g)}" for lab, g in tok.groupby("label",
                                                                                 sort=False)))
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
        st.markdown("**Student output**" + ("" if p["valid"] else " · invalid JSON"))
        st.code(p["text"], language="json", wrap_lines=True)
    with right:
        st.markdown("**Gold**")
        st.code(gold, language="json", wrap_lines=True)
    ui.small_table(gv.slot_comparison(gold, p["text"]), f"student-vs-gold-{example}",
                   "student-vs-gold")


def dpo_section(c: ui.Ctx, row: pd.Series) -> None:
    st.subheader("DPO after this run: preference pairs, SLU-F1 before → after")
    dpo, summary = _dpo(str(c.ws), c.exp_id, c.stamp, str(row["run_id"]), c.all_runs)
    if dpo.empty:
        st.caption(f"No DPO runs continue {row['method']} runs of this selection (the "
                   "experiment's `generation.dpo.after` names the methods DPO follows).")
        return
    title = f"SLU-F1 before → after DPO — {row['method']}, {row['subset']}"
    ui.chart(_dpo_figure(str(c.ws), c.exp_id, c.stamp, str(row["run_id"]), str(row["method"]),
                         title, summary), summary, "dpo-before-after")
    ui.table(summary, "dpo-summary")
    st.caption("Δ = after − before of each DPO run against its own parent run, averaged over "
               "seeds; the interval resamples seeds (a t-interval over seed means: seeds re-draw "
               "the student's training, not the data or the teachers). "
               + "; ".join(sorted(set(summary["interval"]))) + ".")
    seed = representative_seed(c.runs, c.sel.get("seed", "all"))
    mine = dpo[dpo["seed"].astype(str) == str(seed)]
    if mine.empty:
        return
    eps = ui.select("dpo_eps", "Pairs of the DPO run with ε", mine["eps"].tolist(),
                    kind="radio", horizontal=True)
    run = mine[mine["eps"] == eps].iloc[0]
    pairs = data.run_file(c, str(run["run_id"]), "pairs.parquet")
    st.caption(f"{0 if pairs is None else len(pairs)} pairs of seed {seed} on the transfer "
               "split: the student's own beams, chosen = best and rejected = worst by the "
               "ensemble's score Σ λ·(per-token log p); ε = the label-noise rate the loss used.")
    ui.table(gd.pairs_view(pairs), f"dpo-pairs-{eps}", height=300)


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
    teachers_section(row, example, names, u)
    targets_section(c, row, example, u)
    student_section(example, gold, u)


def body(c: ui.Ctx) -> None:
    st.title("Generation")
    if c.exp_id is not None and not c.is_generation:
        st.info("This page is for generation (slot-filling) experiments: pick one in the "
                "sidebar.", icon=":material/subject:")
        return
    if not ui.need_runs(c):
        return
    row = data.chosen_run(c, c.sel["method"])
    if row is None:
        st.info("No run of this method for the chosen subset, seed and aux setting.")
        return
    row = _row(c, str(row["run_id"]))
    modes = _modes(str(c.ws), c.exp_id, c.stamp, str(row["run_id"]), row, c.all_runs)
    if st.session_state.get("gen_bridge_of") != row["run_id"]:
        # another run chosen in the sidebar: the radio starts from that run's own mode
        st.session_state["gen_bridge_of"] = row["run_id"]
        ui.set_sel("bridge", str(row.get("opt_target_mode")))
    if len(modes) > 1:  # outside the fragment: the DPO section follows the mode too
        mode = ui.select("bridge", "Bridge target mode", list(modes), kind="radio",
                         horizontal=True, default=str(row.get("opt_target_mode")),
                         help="detached / live: q read from the trained student; frozen: q "
                              "from the initial student, as trained. Each mode is its own run.")
        row = _row(c, modes[mode])
    # the run in view may be a sibling in another option setting: name that setting
    name = c.setting_names.get(str(row.get("setting"))) if c.several_settings else None
    st.caption(f"Run: {run_label(row, name, c.several_replicates)} · bridge mode "
               f"{row.get('opt_target_mode')} · run id `{row['run_id']}`")
    utterances(row, data.subset_teachers(c))
    st.divider()
    dpo_section(c, row)


ui.guard(body)
