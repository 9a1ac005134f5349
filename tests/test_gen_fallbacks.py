"""Decoding fallbacks are counted, stored and reported, never silent: outputs that hit the
max-new-token cap without EOS (``unfinished``), prompts cut for decoding, offsets rebuilt for a
tokenizer that gives none (docs/STORAGE.md, generation section).

Decode-level counts are checked against ``model.generate`` run one prompt at a time on the tiny
random Llamas of tests/test_decode.py; stored fields against the tiny sweep's own files
(tests/gen_workspace.py); report lines against hand-made metadata and the run index.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import torch
from gen_workspace import N_TRANSFER
from test_decode import PROMPTS, TARGETS, _lm, generate_raw

from w2s_core.cli import main
from w2s_core.data.prompts import ensure_pad
from w2s_core.experiments import gen_report, store
from w2s_core.models.causal import CausalLM
from w2s_core.models.decode import nbest, score
from w2s_core.models.greedy import greedy


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread: None) -> None:
    """Tiny models: one intra-op thread is fastest on a shared machine."""


def _finished(lm: CausalLM, prompt: str, beams: int, new: int) -> dict[str, bool]:
    """text → whether some beam of an unpadded one-prompt ``generate`` ended it with EOS."""
    tok = lm.tokenizer
    ensure_pad(tok)
    got: dict[str, bool] = {}
    for seq in generate_raw(lm, prompt, beams, new):
        ended = tok.eos_token_id in seq
        text = tok.decode(seq[: seq.index(tok.eos_token_id)] if ended else seq,
                          skip_special_tokens=True)
        got[text] = got.get(text, False) or ended
    return got


def _eos_repointed(lm: CausalLM) -> CausalLM:
    """The same model with EOS := the token greedy emits first for PROMPTS[0]: that prompt's
    output ends at once, so a batch mixes finished and unfinished outputs."""
    ensure_pad(lm.tokenizer)
    first = lm.model.generate(torch.tensor([lm.tokenizer(PROMPTS[0])["input_ids"]]),
                              do_sample=False, max_new_tokens=1, pad_token_id=0,
                              eos_token_id=None)[0, -1].item()
    tok = copy.deepcopy(lm.tokenizer)
    tok.eos_token = tok.convert_ids_to_tokens(first)
    return CausalLM(name=f"{lm.name}-eos", model=lm.model, tokenizer=tok)


@pytest.fixture(scope="module", params=["char", "bpe", "char-eos", "bpe-eos"])
def lm(request: pytest.FixtureRequest) -> CausalLM:
    kind, _, eos = request.param.partition("-")
    return _eos_repointed(_lm(kind)) if eos else _lm(kind)


# ---------------------------------------------------------------- decode-level counts
def test_greedy_counts_the_outputs_that_hit_the_cap(lm: CausalLM) -> None:
    stats: dict[str, int] = {}
    greedy(lm, PROMPTS, max_new_tokens=2, batch_size=len(PROMPTS), stats=stats)
    want = sum(not any(_finished(lm, p, 1, 2).values()) for p in PROMPTS)
    assert stats["outputs"] == len(PROMPTS)
    assert stats["unfinished"] == want
    if not lm.name.endswith("-eos"):
        assert want == len(PROMPTS)  # two steps of a random model: nothing ends


def test_nbest_counts_returned_candidates_that_hit_the_cap(lm: CausalLM) -> None:
    stats: dict[str, int] = {}
    out = nbest(lm, PROMPTS, num_beams=3, n_best=2, max_new_tokens=2, batch_size=len(PROMPTS),
                stats=stats)
    ended = [_finished(lm, p, 3, 2) for p in PROMPTS]
    # the candidates returned, not every beam: a text some beam ended is an answer
    want = sum(not e[c.text] for e, cands in zip(ended, out, strict=True) for c in cands)
    assert stats["outputs"] == sum(len(c) for c in out) == sum(min(2, len(e)) for e in ended)
    assert stats["unfinished"] == want
    assert stats["truncated_prompts"] == 0 and stats["offset_fallback"] == 0


def test_the_mixed_fixture_really_mixes() -> None:
    """The EOS-repointed model must end some outputs and not others, or the tests above
    would only see the all-unfinished case."""
    lm = _eos_repointed(_lm("char"))
    done = [any(_finished(lm, p, 1, 2).values()) for p in PROMPTS]
    assert any(done) and not all(done)


class _NoOffsets:
    """A fast tokenizer that, like some converted ones, answers every offset with (0, 0)."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        enc = self._tok(*args, **kwargs)
        if "offset_mapping" in enc:
            enc["offset_mapping"] = [(0, 0)] * len(enc["offset_mapping"])
        return enc


def test_a_tokenizer_without_offsets_counts_every_output_with_a_word() -> None:
    base = _lm("char")
    lm = CausalLM(name=base.name, model=base.model, tokenizer=_NoOffsets(base.tokenizer))
    stats: dict[str, int] = {}
    texts = [[TARGETS[0], TARGETS[2], ""], [TARGETS[3]]]  # "" has no word: nothing to place
    cands = score(lm, PROMPTS[:2], texts, stats=stats)
    assert stats["offset_fallback"] == 3
    ok = score(base, PROMPTS[:2], texts, stats=(plain := {}))
    assert plain["offset_fallback"] == 0
    assert [[c.offsets for c in cs] for cs in cands] == [[c.offsets for c in cs] for cs in ok]
    stats = {}
    out = nbest(lm, PROMPTS, num_beams=2, n_best=2, max_new_tokens=4, stats=stats)
    want = sum(bool(c.text.split()) for cands in out for c in cands)
    assert want > 0 and stats["offset_fallback"] == want


# ---------------------------------------------------------------- stored fields (tiny sweep)
@pytest.fixture(scope="module")
def ws(gen_workspace: SimpleNamespace) -> SimpleNamespace:
    exp = store.experiment_dir(gen_workspace.ws, gen_workspace.exp_id)
    meta = store.read_json(exp.meta)
    stems = meta["teacher_files"]["0"]
    return SimpleNamespace(
        exp=exp, ws=gen_workspace.ws, logs=gen_workspace.logs,
        runs=store.read_parquet(exp.run_index), stems=stems,
        teacher_meta={t: store.read_json(exp.teacher_meta(s)) for t, s in stems.items()})


def test_teacher_metadata_counts_each_splits_decoding(ws: SimpleNamespace) -> None:
    for t, stem in ws.stems.items():
        m, nb = ws.teacher_meta[t], store.read_parquet(ws.exp.teacher_preds(stem))
        for s in ("transfer", "test"):
            rows = nb[nb["split"] == s]
            assert m[f"outputs_{s}"] == len(rows), (t, s)  # the N-best rows stored
            # an output with cap tokens of text cannot have stopped before the cap
            at_cap = int((rows["token_ids"].map(len) >= m["max_new_tokens"]).sum())
            assert at_cap <= m[f"unfinished_{s}"] <= len(rows)
            assert m[f"unfinished_rate_{s}"] == pytest.approx(m[f"unfinished_{s}"] / len(rows))
            # decode_length fits every prompt; scratch tokenizers give offsets (scratch_lm)
            assert m[f"prompt_truncated_{s}"] == 0 and m[f"offset_fallback_{s}"] == 0


def test_run_metrics_count_test_outputs_and_dpo_candidates_at_the_cap(
        ws: SimpleNamespace, gen_workspace: SimpleNamespace) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gen_workspace.cfg.student)
    beams = gen_workspace.cfg.generation.dpo.beams
    for _, r in ws.runs.iterrows():
        met = store.read_json(ws.exp.run_dir(r["run_id"]) / "metrics.json")
        preds = store.load_run_predictions(ws.exp, r["run_id"])
        # skipped specials (a looping student emits some) only shorten a text: a lower bound
        at_cap = sum(len(tok(t, add_special_tokens=False)["input_ids"]) >= met["max_new_tokens"]
                     for t in preds["text"])
        assert at_cap <= met["unfinished"] <= met["n"], r["run_id"]
        assert met["unfinished_rate"] == pytest.approx(met["unfinished"] / met["n"])
        assert met["prompt_truncated"] == 0
        if r["kind"] == "dpo":  # ≥ 1 candidate per transfer prompt, 2 for each pair's prompt
            assert N_TRANSFER + met["pairs"] <= met["dpo_outputs"] <= beams * N_TRANSFER
            assert met["dpo_unfinished_rate"] == pytest.approx(
                met["dpo_unfinished"] / met["dpo_outputs"])
        else:
            assert "dpo_outputs" not in met
    assert (ws.runs["unfinished"] > 0).any(), "fixture should hold a student that loops"


# ---------------------------------------------------------------- report lines
def test_teacher_warnings_sum_replicates_and_name_every_split() -> None:
    a = {"data_seed": 0, "max_new_tokens": 317, "json_validity_test": 0.0,
         "json_validity_transfer": 0.5, "outputs_test": 300, "unfinished_test": 12,
         "outputs_transfer": 500, "unfinished_transfer": 0, "prompt_truncated_test": 0,
         "prompt_truncated_transfer": 2, "offset_fallback_test": 0,
         "offset_fallback_transfer": 0}
    b = {**a, "data_seed": 1, "json_validity_test": 0.4, "json_validity_transfer": 0.0,
         "unfinished_test": 3, "unfinished_transfer": 5, "prompt_truncated_transfer": 0}
    assert gen_report.teacher_warnings("gpt-char", [a, b]) == [
        "teacher gpt-char: 15 of 600 test and 5 of 1000 transfer N-best candidates hit the "
        "317-token cap without EOS",
        "teacher gpt-char: 2 transfer prompts cut from the left for decoding",
        "teacher gpt-char never produced valid JSON on test (data seed 0) or transfer (data seed "
        "1): its outputs count as empty predictions (SLU-F1 0) — train it longer or drop it"]
    clean = {**a, "json_validity_test": 0.9, "unfinished_test": 0, "prompt_truncated_transfer": 0}
    assert gen_report.teacher_warnings("t", [clean]) == []
    # a teacher stored before the counts existed: only its JSON validity can be judged
    old = {"max_new_tokens": 90, "json_validity_test": 0.0, "json_validity_transfer": 1.0}
    assert [w.split(":")[0] for w in gen_report.teacher_warnings("t", [old])] == [
        "teacher t never produced valid JSON on test"]


def test_run_warnings_one_line_per_method_and_k() -> None:
    runs = pd.DataFrame([
        {"kind": "transfer", "method": "naive-soft", "k": 3, "seed": 0, "unfinished_rate": 0.4,
         "prompt_truncated": 0, "max_new_tokens": 96},
        {"kind": "transfer", "method": "bayes", "k": 2, "seed": 0, "unfinished_rate": 0.2,
         "prompt_truncated": 0, "max_new_tokens": 96},
        {"kind": "transfer", "method": "bayes", "k": 2, "seed": 1, "unfinished_rate": 0.6,
         "prompt_truncated": 3, "max_new_tokens": 96},
        {"kind": "transfer", "method": "joint", "k": 2, "seed": 0, "unfinished_rate": 0.0,
         "prompt_truncated": 0, "max_new_tokens": 96},
        {"kind": "ceiling", "method": "ceiling", "k": 0, "seed": 0, "unfinished_rate": None,
         "prompt_truncated": None, "max_new_tokens": None},  # stored before the counts
        {"kind": "dpo", "method": "bayes", "k": 2, "seed": 0, "unfinished_rate": 0.0,
         "dpo_unfinished_rate": 0.9, "prompt_truncated": 0, "max_new_tokens": 96}])
    assert gen_report.run_warnings(runs) == [
        "bayes K=2 (2 runs): 40 % of test outputs hit the 96-token cap on average (up to 60 %)",
        "bayes K=2 (2 runs): up to 3 test prompts cut from the left for decoding",
        "naive-soft K=3 seed 0: 40 % of test outputs hit the 96-token cap",
        "bayes K=2 + (c)DPO seed 0: 90 % of DPO candidates (its transfer beams) hit the "
        "96-token cap"]
    assert gen_report.run_warnings(runs.drop(columns=["unfinished_rate"])) == []
    same = runs[runs["method"] == "bayes"].assign(unfinished_rate=0.5, prompt_truncated=0,
                                                  dpo_unfinished_rate=None)
    assert gen_report.run_warnings(same[same["kind"] == "transfer"]) == [
        "bayes K=2 (2 runs): 50 % of test outputs hit the 96-token cap"]  # all alike: no range


def test_report_and_sweep_log_show_the_fallbacks(ws: SimpleNamespace, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    copy_ws = tmp_path / "ws"
    shutil.copytree(ws.ws, copy_ws)
    exp = store.experiment_dir(copy_ws, ws.exp.id)
    teacher = next(iter(ws.stems))
    path = exp.teacher_meta(ws.stems[teacher])
    m = store.read_json(path)
    m.update(outputs_test=300, unfinished_test=12, json_validity_transfer=0.0)
    store.write_json(path, m)
    assert main(["report", "--workspace", str(copy_ws)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (f"warning: teacher {teacher}: 12 of 300 test N-best candidates hit the "
            f"{m['max_new_tokens']}-token cap without EOS") in out
    bad = [s for s in ("test", "transfer") if m[f"json_validity_{s}"] == 0.0]
    assert any(ln.startswith(f"warning: teacher {teacher} never produced valid JSON on "
                             f"{' or '.join(bad)}:") for ln in out)
    # every (kind, method, K) whose runs looped: one line with the mean rate over its runs
    for (kind, method, k), g in ws.runs.groupby(["kind", "method", "k"]):
        if not (g["unfinished_rate"] > 0).any():
            continue
        pct = f"{100 * g['unfinished_rate'].mean():.0f} %"
        who = "ceiling" if kind == "ceiling" else f"{method} K={k}" + (
            " + (c)DPO" if kind == "dpo" else "")
        lines = [ln for ln in out if ln.startswith(f"warning: {who} (") or ln.startswith(
            f"warning: {who} seed")]
        assert any(f": {pct} of test outputs hit the" in ln for ln in lines), (who, lines)
    # the sweep logged its never-valid teachers when it trained them (test or transfer)
    for t, tm in ws.teacher_meta.items():
        never = [s for s in ("test", "transfer") if tm[f"json_validity_{s}"] == 0.0]
        logged = any(f"teacher {t} never produced valid JSON" in x for x in ws.logs)
        assert logged == bool(never), t
