"""Generation student runs inside the one sweep: ceilings, transfer runs of every method over
every teacher subset × aux × seed, and (c)DPO after chosen transfer runs. Same store, same
``RunSpec`` (``task="generation"``), same resume rule: a run whose metrics.json exists is done.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from w2s_core.device import rows_per_pass
from w2s_core.experiments import gen_protocol as gp
from w2s_core.experiments import gen_store, store
from w2s_core.experiments.gen_teachers import Teachers
from w2s_core.experiments.runspec import RunSpec, plain
from w2s_core.experiments.subsets import subsets
from w2s_core.methods import gen_methods as gm
from w2s_core.metrics.classification import pgr, pgr_defined
from w2s_core.metrics.generation import generation_metrics, per_utterance
from w2s_core.models.causal import CausalLM, load_causal
from w2s_core.models.decode import nbest, score
from w2s_core.training.lm_dpo import pair_table, train_dpo
from w2s_core.training.lm_readouts import token_readouts
from w2s_core.training.lm_train import GenExample, LabelSeq, LossSpec, train_lm

if TYPE_CHECKING:
    from w2s_core.experiments.sweep import Sweep

FAMILY = {"single-hard": "ce", "single-soft": "soft", "naive-soft": "soft", "joint": "ce",
          "bayes": "edl", "bayes-restricted": "edl"}
MIN_K = {"single-hard": (1, 1), "single-soft": (1, 1), "naive-soft": (2, None),
         "joint": (2, None), "bayes": (1, None), "bayes-restricted": (1, None)}


# test utterances (split order, a seeded shuffle) whose token read-outs each run stores: the
# read-outs cost a forward pass per label sequence, and the dashboard shows one at a time
READOUT_EXAMPLES = 64


def applies(method: str, k: int) -> bool:
    lo, hi = MIN_K[method]
    return k >= lo and (hi is None or k <= hi)


class GenerationRuns:
    def __init__(self, sw: Sweep, sp: gp.GenSplits, teach: Teachers, device: str) -> None:
        self.sw, self.sp, self.t, self.device = sw, sp, teach, device
        self.cfg = sw.cfg
        self.opts = plain(dataclasses.asdict(self.cfg.gen_options))
        self.gold_test = sp.pairs("test")
        self._floors: dict[tuple[str, ...], dict[str, float]] = {}
        self._cap: int | None = None

    # ------------------------------------------------------------ planning
    def train_spec(self) -> dict[str, Any]:
        g = self.cfg.generation
        return {"student": self.cfg.student, **plain(dataclasses.asdict(g.student_train)),
                "eval_beams": g.eval_beams, "precision": self.sw.precision}

    def plan(self) -> list[tuple[RunSpec, list[RunSpec]]]:
        """(run, its DPO children) in training order: ceilings first."""
        cfg, ds = self.cfg, self.sp.data_seed
        train, eid = self.train_spec(), self.sw.exp.id
        out: list[tuple[RunSpec, list[RunSpec]]] = []
        for seed in cfg.seeds:
            out.append((RunSpec(eid, "ceiling", "ceiling", (), False, seed, ds, train,
                                task="generation"), []))

        dpo = cfg.generation.dpo
        for sub in subsets(cfg.teachers, cfg.max_subsets, cfg.subset_seed, cfg.sizes):
            for m in cfg.methods:
                if not applies(m, len(sub)) or not cfg.runs_at(m, len(sub)):
                    continue
                for aux in cfg.aux:
                    for seed in cfg.seeds:
                        spec = RunSpec(eid, "transfer", m, sub, bool(aux), seed, ds, train,
                                       self.opts, task="generation")
                        kids = []
                        if m in dpo.after and len(sub) == len(cfg.teachers) and not aux:
                            for eps in dpo.eps:
                                d = plain({**dataclasses.asdict(dpo.train), "eps": eps,
                                           "beams": dpo.beams, "max_prompts": dpo.max_prompts})
                                kids.append(RunSpec(eid, "dpo", m, sub, False, seed, ds, train,
                                                    {**self.opts, "dpo": d}, task="generation"))
                        out.append((spec, kids))
        settings = self.sw.meta.get("settings") or {}
        new = {s.setting: {"train": train, "options": s.options} for p, kids in out
               for s in [p, *kids] if s.setting not in settings}
        defaults = plain(dataclasses.asdict(type(self.cfg.gen_options)()))
        self.sw.record_settings(new, {"options": defaults})
        return out

    # ------------------------------------------------------------ targets
    def lam(self, sub: tuple[str, ...], split: str) -> np.ndarray:
        """(N, K) weights from the λ option (fixed weights are picked for the subset)."""
        mw = np.array([[_mean_word(c) for c in self.t.top1(n, split)] for n in sub]).T
        mode = self.cfg.gen_options.lam
        if not isinstance(mode, str):
            full = dict(zip(self.cfg.teachers, mode, strict=True))
            mode = [full[n] for n in sub]
        return gm.teacher_weights(mode, mw)

    def joint_texts(self, sub: tuple[str, ...], split: str) -> list[str]:
        lam, mode = self.lam(sub, split), self.cfg.gen_options.joint_score
        return [texts[gm.joint_pick(gm.joint_matrix(mode, lp, nm, texts), lam[i])]
                for i, (texts, lp, nm) in enumerate(self.t.pooled(split, sub))]

    def examples(self, spec: RunSpec, split: str = "transfer") -> list[GenExample]:
        """The run's training examples on ``split`` (test: the same targets, made the same way,
        for the stored read-outs)."""
        sp, sub = self.sp, spec.subset
        prompts = sp.prompts(split)
        if spec.kind == "ceiling":
            return gp.gold_examples(sp, split)
        if spec.method == "joint":
            return [GenExample(p, [LabelSeq(t, None)], [1.0])
                    for p, t in zip(prompts, self.joint_texts(sub, split), strict=True)]
        tops = [self.t.top1(n, split) for n in sub]
        lam = self.lam(sub, split)
        soft = spec.method != "single-hard"
        return [GenExample(p, [LabelSeq(top[i].text, list(top[i].word_logps) if soft else None)
                               for top in tops], [float(x) for x in lam[i]])
                for i, p in enumerate(prompts)]

    def loss(self, spec: RunSpec) -> LossSpec:
        o = self.cfg.gen_options
        kind = "ce" if spec.kind == "ceiling" else FAMILY[spec.method]
        return LossSpec(kind=kind, target_mode=o.target_mode, split=o.split,
                        temperature=o.temperature,
                        support=o.support if spec.method == "bayes-restricted" else None,
                        evidence=o.evidence, kl_scale=o.kl_scale,
                        aux_max=o.aux_max if spec.aux else 0.0, aux_warmup=o.aux_warmup)

    # ------------------------------------------------------------ scoring
    def floors(self, sub: tuple[str, ...]) -> dict[str, float]:
        if sub not in self._floors:
            f = [self.t.slu(n) for n in sub]
            joint = (generation_metrics(self.gold_test, self.joint_texts(sub, "test"))["slu_f1"]
                     if len(sub) > 1 else f[0])
            self._floors[sub] = {"mean": float(np.mean(f)), "best": float(np.max(f)),
                                 "joint": float(joint)}
        return self._floors[sub]

    def evaluate(self, lm: CausalLM, spec: RunSpec, ceiling: float) -> tuple[Any, dict]:
        """Test SLU-F1 (+ floors and PGR) and per-utterance outputs, with the token calibration
        read-out (student confidence vs teacher-forced correctness on gold) on the first
        ``READOUT_EXAMPLES`` test utterances."""
        sp = self.sp
        if self._cap is None:
            self._cap = gp.new_tokens_cap(self.cfg, lm, sp)
        beams, length = self.cfg.generation.eval_beams, gp.decode_length(lm, sp, "test",
                                                                          self._cap)
        dec: dict[str, int] = {}
        texts, own = gp.decode_test(lm, sp.prompts("test"), beams, self._cap, length, dec)
        met = generation_metrics(self.gold_test, texts, sp.ds.slot_types)
        met.update(gp.decode_fields(dec, keep=gp.RUN_DECODE_FIELDS), max_new_tokens=self._cap)
        if spec.kind != "ceiling":
            met["ceiling"] = ceiling
            for name, f in self.floors(spec.subset).items():
                met[f"floor_{name}"] = f
                met[f"pgr_{name}"] = pgr(met["slu_f1"], f, ceiling)
                met[f"pgr_{name}_defined"] = bool(pgr_defined(f, ceiling))
        preds = gen_store.student_frame(sp.ids("test"), sp.targets("test"), texts,
                                        per_utterance(self.gold_test, texts), own,
                                        lambda ids: [lm.tokenizer.decode([t]) for t in ids])
        gold = token_readouts(lm, gp.gold_examples(sp, "test")[:READOUT_EXAMPLES], LossSpec(),
                              **self._readout_args(lm))
        gen_store.add_calibration(preds, gold)
        return preds, met

    def _readout_args(self, lm: CausalLM) -> dict[str, Any]:
        st = self.cfg.generation.student_train
        return {"max_length": st.max_length, "batch_size": rows_per_pass(lm.model, st.batch_size)}

    def targets(self, lm: CausalLM, spec: RunSpec,
                fixed_q: list[list[float]] | None = None) -> Any:
        """What the run trained toward, on the first ``READOUT_EXAMPLES`` test utterances."""
        exs = self.examples(spec, "test")[:READOUT_EXAMPLES]
        recs = token_readouts(lm, exs, self.loss(spec), fixed_q=fixed_q,
                              **self._readout_args(lm))
        names = ["joint"] if spec.method == "joint" else list(spec.subset)
        pool = self.t.pooled("test", spec.subset)
        return gen_store.targets_frame(self.sp.ids("test"), exs, names, recs, spec.subset,
                                       pool, self.cfg.gen_options.target_mode)

    # ------------------------------------------------------------ execution
    def run(self) -> None:
        sw = self.sw
        plan = self.plan()
        total = sum(1 + len(k) for _, k in plan)
        done = sum(sw.exp.run_done(s) for p, k in plan for s in [p, *k])
        sw.log(f"data seed {self.sp.data_seed}: {total} generation runs planned, {done} "
               f"already complete, {total - done} to train")
        bar = tqdm(total=total, initial=done, desc="students", disable=not sw.progress)
        for spec, kids in plan:
            todo = [k for k in kids if not sw.exp.run_done(k)]
            if sw.exp.run_done(spec) and not todo:
                continue
            ceiling = self._ceiling(spec.seed)
            t0 = time.time()
            lm = load_causal(self.cfg.student, self.device)
            fixed = None  # frozen targets: q from the initial student, as in training
            if spec.kind == "transfer" and self.cfg.gen_options.target_mode == "frozen":
                fixed = list(self.targets(lm, spec)["q"])
            stats = train_lm(lm, self.examples(spec), self.loss(spec),
                             self.cfg.generation.student_train, spec.seed,
                             progress=sw.progress, log=sw.log, device=self.device)
            parent_slu = None
            if not sw.exp.run_done(spec):
                preds, met = self.evaluate(lm, spec, ceiling)
                met.update(train_seconds=time.time() - t0, tokens_per_s=stats.get(
                    "tokens_per_s"), truncated=stats.get("truncated"))
                extra = {} if spec.kind == "ceiling" else {
                    "targets.parquet": self.targets(lm, spec, fixed)}
                self._save(spec, preds, met, {}, extra)
                parent_slu = float(met["slu_f1"])
                done += 1
                bar.update(1)
            if todo:
                done += self._dpo(lm, spec, todo, ceiling, parent_slu)
                bar.update(len(todo))
            sw._event("students", done, total, f"{done}/{total} runs")
        bar.close()

    def _save(self, spec: RunSpec, preds: Any, met: dict, extra: dict,
              files: dict[str, Any] | None = None) -> None:
        if self.sw.main:
            store.save_run(self.sw.exp, spec.run_id, spec.stored_config(**extra), preds, met,
                           files)

    def _ceiling(self, seed: int) -> float:
        spec = RunSpec(self.sw.exp.id, "ceiling", "ceiling", (), False, seed,
                       self.sp.data_seed, self.train_spec(), task="generation")
        path = self.sw.exp.run_dir(spec.run_id) / "metrics.json"
        return float(store.read_json(path)["slu_f1"]) if path.exists() else float("nan")

    # ------------------------------------------------------------ (c)DPO
    def _dpo(self, lm: CausalLM, parent: RunSpec, kids: list[RunSpec], ceiling: float,
             parent_slu: float | None) -> int:
        """Pairs from the student's own beams on transfer prompts, ranked by the parent's
        weak ensemble under the parent's λ (per prompt for ``dynamic``); one DPO run per ε from
        the same transfer-trained weights. ``parent_slu``: the parent's SLU-F1 when it was
        just evaluated (every rank has it; only rank 0 writes it to disk)."""
        dpo, sp, sub = self.cfg.generation.dpo, self.sp, parent.subset
        prompts, ids = sp.prompts("transfer"), sp.ids("transfer")
        keep = np.arange(len(prompts))
        if dpo.max_prompts is not None and dpo.max_prompts < len(prompts):
            keep = np.sort(np.random.default_rng(parent.seed).choice(
                len(prompts), dpo.max_prompts, replace=False))
        prompts, ids = [prompts[i] for i in keep], [ids[i] for i in keep]
        lams = self.lam(sub, "transfer")[keep]  # (N, K)
        cap = self._cap or gp.new_tokens_cap(self.cfg, lm, sp)
        dec: dict[str, int] = {}
        beams = nbest(lm, prompts, num_beams=dpo.beams, n_best=dpo.beams, max_new_tokens=cap,
                      max_length=gp.decode_length(lm, sp, "transfer", cap),
                      batch_size=rows_per_pass(lm.model, 16), stats=dec)
        looped = gp.decode_fields(dec, "dpo_", gp.RUN_DECODE_FIELDS)  # every ε's candidates
        texts = [[c.text for c in b] for b in beams]
        per_t = [score(t, prompts, texts, max_length=gp.score_length(t, sp, {"transfer": texts}),
                       batch_size=rows_per_pass(t.model, 16))
                 for t in (self.t.lm(n) for n in sub)]
        P, W, L, E, rows = [], [], [], [], []
        for i, p in enumerate(prompts):
            s = np.array([[c.norm for c in per_t[k][i]] for k in range(len(sub))])  # (K, C)
            ens = lams[i] @ s
            pair = gm.dpo_pair(ens) if s.shape[1] >= 2 else None
            if pair is None:
                continue
            w, l_ = pair
            P.append(p)
            W.append(texts[i][w])
            L.append(texts[i][l_])
            E.append(gm.pair_eps(s[:, w], s[:, l_], lams[i]))
            rows.append({"example_id": ids[i], "chosen": W[-1], "rejected": L[-1],
                         "score_chosen": float(ens[w]), "score_rejected": float(ens[l_]),
                         "teacher_chosen": s[:, w].tolist(),
                         "teacher_rejected": s[:, l_].tolist(),
                         "weights": lams[i].tolist(), "pair_eps": E[-1]})
        base = copy.deepcopy(lm.model.state_dict())
        # every ε starts from these weights and pairs: one reference pass serves them all
        ref = pair_table(lm, P, W, L, dpo.train, self.device) if P else None
        if parent_slu is None:
            parent_slu = self._parent_slu(parent)
        n = 0
        for kid in kids:
            eps = kid.options["dpo"]["eps"]  # type: ignore[index]
            lm.model.load_state_dict(base)
            t0 = time.time()
            stats = train_dpo(lm, P, W, L, E if eps == "confidence" else float(eps),
                              dpo.train, kid.seed, reference=ref, progress=self.sw.progress,
                              device=self.device) if P else {}
            preds, met = self.evaluate(lm, kid, ceiling)
            met.update(train_seconds=time.time() - t0, pairs=len(P),
                       mean_eps=(float(np.mean(E)) if E else None)
                       if eps == "confidence" else float(eps),
                       before_slu_f1=parent_slu, delta_slu_f1=met["slu_f1"] - parent_slu,
                       dpo_final_loss=stats.get("final_loss"),
                       dpo_margin_start=stats.get("margin_start"),
                       dpo_margin_end=stats.get("margin_end"), **looped)
            pairs = gen_store.pairs_frame(rows, list(sub), eps)
            self._save(kid, preds, met, {"parent": parent.run_id}, {"pairs.parquet": pairs})
            n += 1
        return n

    def _parent_slu(self, parent: RunSpec) -> float:
        return float(store.read_json(self.sw.exp.run_dir(parent.run_id) / "metrics.json")
                     ["slu_f1"])


def _mean_word(c: gen_store.Candidate) -> float:
    """A candidate's mean word log-prob (its length-normalised score when it has no word)."""
    return float(np.mean(c.word_logps)) if c.word_logps else float(c.norm)
