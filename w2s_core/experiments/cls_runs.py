"""Classification runs inside the one sweep: the weak floors (teachers' soft labels, cached per
data replicate), then the ceilings and every subset × method × aux × seed transfer run, trained
as batched probe programs in chunks (``protocol.train_students``). The generation counterparts
are ``gen_teachers`` and ``gen_runs``; ``sweep.Sweep`` drives both."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from w2s_core.errors import W2SError
from w2s_core.experiments import protocol, scoring, store
from w2s_core.experiments.config import result_fields
from w2s_core.experiments.runspec import RunSpec, plain
from w2s_core.experiments.subsets import subsets
from w2s_core.methods import aggregate
from w2s_core.methods.registry import METHODS
from w2s_core.metrics.classification import accuracy, run_metrics
from w2s_core.training.probe import StudentJob

if TYPE_CHECKING:
    from w2s_core.experiments.sweep import Sweep

CHUNK = 256  # students per batch: bounds the work lost to Ctrl-C and keeps progress live
Entry = tuple[RunSpec, dict[str, Any], Callable[[], StudentJob] | None]


class ClassificationRuns:
    """One data replicate's floors and student runs, written through the sweep ``sw``."""

    def __init__(self, sw: Sweep, sp: protocol.Splits, feats: dict) -> None:
        self.sw, self.sp, self.feats = sw, sp, feats

    def run(self) -> None:
        teach = self.teachers()
        self.students(self.plan(teach), teach)

    def teachers(self) -> dict[str, dict[str, np.ndarray]]:
        """Teacher name → {"transfer": (N, C), "test": (N, C)} soft labels (cached on disk)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        sp = self.sp
        n_tr = len(sp.idx["transfer"])
        ids = sp.ids("transfer") + sp.ids("test")
        gold = np.concatenate([sp.gold("transfer"), sp.gold("test")])
        split = ["transfer"] * n_tr + ["test"] * len(sp.idx["test"])
        files = self.sw.meta["teacher_files"].setdefault(str(sp.data_seed), {})
        bar = tqdm(self.sw.cfg.teachers, desc=f"weak floors (data seed {sp.data_seed})",
                   disable=not self.sw.progress)
        for i, name in enumerate(bar):
            ident = protocol.teacher_identity(self.sw.cfg, name, sp, self.sw.precision)
            stem = store.teacher_stem(name, ident)
            path = self.sw.exp.teacher_preds(stem)
            probs = None
            if path.exists():
                try:
                    df = store.read_parquet(path)
                    if list(df["example_id"]) == ids:
                        probs = store.probs_of(df)
                except W2SError as e:
                    self.sw.log(f"warning: {e}; recomputing teacher {name}")
            if probs is None:
                t0 = time.time()
                probs = protocol.train_teacher(self.sw.cfg, name, sp, self.feats)
                if self.sw.main:
                    store.write_parquet(path, store.predictions_frame(ids, gold, probs,
                                                                      split=split))
                    store.write_json(self.sw.exp.teacher_meta(stem), {
                        "teacher": name, "identity": ident, "seconds": time.time() - t0,
                        "data_seed": sp.data_seed, "given": name in sp.ds.weak,
                        "accuracy_transfer": accuracy(probs[:n_tr], gold[:n_tr]),
                        "accuracy_test": accuracy(probs[n_tr:], gold[n_tr:])})
            out[name] = {"transfer": probs[:n_tr], "test": probs[n_tr:]}
            if files.get(name) != stem:
                files[name] = stem
                self.sw._save_meta()
            self.sw._event("teachers", i + 1, len(self.sw.cfg.teachers), name)
        return out

    # ------------------------------------------------------------ planning
    def _train_spec(self) -> dict[str, Any]:
        cfg = self.sw.cfg
        train = cfg.probe if cfg.student_mode == "probe" else cfg.finetune
        return {"student": cfg.student, "student_mode": cfg.student_mode,
                **result_fields(dataclasses.asdict(train)), "precision": self.sw.precision}

    def plan(self, teach: dict) -> list[Entry]:
        """(spec, extra stored fields, job factory or None if complete): ceilings first."""
        sp = self.sp
        cfg, c = self.sw.cfg, sp.ds.n_classes
        train = self._train_spec()
        options = plain(dataclasses.asdict(cfg.options))
        plan: list[Entry] = []
        gold_t = aggregate.onehot(sp.gold("transfer"), c)[None]
        for seed in cfg.seeds:
            spec = RunSpec(self.sw.exp.id, "ceiling", "ceiling", (), False, seed, sp.data_seed,
                           train)
            plan.append(self._entry(spec, {}, lambda s=seed: StudentJob(
                "ce", gold_t, np.ones(1), 0.0, s)))
        for sub in subsets(cfg.teachers, cfg.max_subsets, cfg.subset_seed, cfg.sizes):
            p = np.stack([teach[t]["transfer"] for t in sub])  # (K, N, C)
            lam = self._weights(sub, p)
            for m in cfg.methods:
                method = METHODS.get(m)
                if not method.applies_to(len(sub)) or not cfg.runs_at(m, len(sub)):
                    continue
                cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

                def targets(method=method, p=p, lam=lam, cache=cache
                            ) -> tuple[np.ndarray, np.ndarray]:
                    if "t" not in cache:  # DS is costly: once per (subset, method)
                        cache["t"] = method.targets(p, lam)
                    return cache["t"]

                extra = {"lambda": [round(float(x), 6) for x in lam]}
                for aux in cfg.aux:
                    for seed in cfg.seeds:
                        spec = RunSpec(self.sw.exp.id, "transfer", m, sub, bool(aux), seed,
                                       sp.data_seed, train, options)
                        plan.append(self._entry(spec, extra, lambda method=method, aux=aux,
                                                seed=seed, targets=targets: StudentJob(
                                                    method.family, *targets(),
                                                    cfg.options.aux_max if aux else 0.0, seed)))
        settings = self.sw.meta.get("settings") or {}
        new = {e[0].setting: {"train": train, "options": None if e[0].options is None
                              else options} for e in plan if e[0].setting not in settings}
        self.sw.record_settings(new, {"options": plain(dataclasses.asdict(type(cfg.options)()))})
        return plan

    def _entry(self, spec: RunSpec, extra: dict[str, Any],
               make: Callable[[], StudentJob]) -> Entry:
        return spec, extra, None if self.sw.exp.run_done(spec) else make

    def _weights(self, sub: tuple[str, ...], p: np.ndarray) -> np.ndarray:
        w = self.sw.cfg.options.weights
        if isinstance(w, str):
            return aggregate.teacher_weights(w, p)
        full = dict(zip(self.sw.cfg.teachers, w, strict=True))
        return aggregate.teacher_weights([full[t] for t in sub], p)

    # ------------------------------------------------------------ students
    def students(self, plan: list[Entry], teach: dict) -> None:
        sp = self.sp
        todo = [e for e in plan if e[2] is not None]
        n_done = len(plan) - len(todo)
        self.sw.log(f"data seed {sp.data_seed}: {len(plan)} runs planned, {n_done} already "
                 f"complete, {len(todo)} to train")
        bar = tqdm(total=len(plan), initial=n_done, desc="students", disable=not self.sw.progress)
        y, test_ids = sp.gold("test"), sp.ids("test")
        ceilings = [e for e in todo if e[0].kind == "ceiling"]
        rest = [e for e in todo if e[0].kind != "ceiling"]
        # group by (seed, family) so each chunk batches well in the probe trainer
        rest.sort(key=lambda e: (e[0].seed, METHODS.get(e[0].method).family))
        refs: dict[tuple[tuple[str, ...], str], np.ndarray] = {}
        for chunk in [ceilings] + [rest[i:i + CHUNK] for i in range(0, len(rest), CHUNK)]:
            if not chunk:
                continue
            ceil = self._ceilings(plan)
            jobs = [make() for _, _, make in chunk]  # type: ignore[misc]
            t0 = time.time()
            results = protocol.train_students(self.sw.cfg, jobs, sp, self.feats)
            per_run = (time.time() - t0) / len(chunk)
            for (spec, extra, _), (probs, alpha) in zip(chunk, results, strict=True):
                if spec.kind == "ceiling":
                    ref, met = None, run_metrics(probs, y, alpha=alpha)
                else:
                    p = np.stack([teach[t]["test"] for t in spec.subset])  # (K, N_test, C)
                    key = (spec.subset, spec.method)  # DS on test is costly: once per key
                    if key not in refs:
                        refs[key] = scoring.weak_reference(spec.method, p, extra["lambda"])
                    ref = refs[key]
                    met = scoring.transfer_metrics(probs, alpha, y, p, ref,
                                                   ceil.get(spec.seed, float("nan")))
                met["train_seconds"] = per_run
                preds = store.predictions_frame(test_ids, y, probs, alpha, weak=ref)
                if self.sw.main:
                    store.save_run(self.sw.exp, spec.run_id, spec.stored_config(**extra), preds,
                                   met)
            n_done += len(chunk)
            bar.update(len(chunk))
            self.sw._event("students", n_done, len(plan), f"{n_done}/{len(plan)} runs")
        bar.close()

    def _ceilings(self, plan: list[Entry]) -> dict[int, float]:
        """Seed → accuracy of this replicate's strong ceiling (the PGR denominator's top)."""
        out: dict[int, float] = {}
        for spec, _, _ in plan:
            path = self.sw.exp.run_dir(spec.run_id) / "metrics.json"
            if spec.kind == "ceiling" and path.exists():
                out[spec.seed] = store.read_json(path)["accuracy"]
        return out
