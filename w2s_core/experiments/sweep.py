"""The ensemble sweep: every data replicate × teacher subset × method × ±aux × seed, resumable.

Teacher predictions and student features are computed once per replicate and re-used by every
run; a run whose ``metrics.json`` exists is never recomputed, so an interrupted sweep resumes
where it stopped. Every run's identity is a ``RunSpec`` (run id, stored config, index columns).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from w2s_core.device import pick_device
from w2s_core.errors import W2SError
from w2s_core.experiments import meta as expmeta
from w2s_core.experiments import protocol, scoring, store
from w2s_core.experiments.config import ExperimentConfig, result_fields
from w2s_core.experiments.lock import ExperimentLocked, experiment_lock
from w2s_core.experiments.runspec import RunSpec, plain
from w2s_core.methods import aggregate
from w2s_core.methods.registry import METHODS
from w2s_core.metrics.classification import accuracy, run_metrics
from w2s_core.training.probe import StudentJob

CHUNK = 256  # students per batch: bounds the work lost to Ctrl-C and keeps progress live
Entry = tuple[RunSpec, dict[str, Any], Callable[[], StudentJob] | None]


def subsets(teachers: tuple[str, ...], max_subsets: int | None, seed: int,
            sizes: tuple[int, ...] | None = None) -> list[tuple[str, ...]]:
    """All non-empty subsets in config order, by size; a stratified seeded sample if capped.
    ``sizes`` keeps only subsets of those sizes K; the sample drawn for a K does not depend on
    ``sizes`` (the same seeded draw, then filtered), so adding a K later adds runs only."""
    out: list[tuple[str, ...]] = []
    total = 2 ** len(teachers) - 1
    rng = np.random.default_rng(seed)
    for k in range(1, len(teachers) + 1):
        combos = list(itertools.combinations(teachers, k))
        if max_subsets is not None and total > max_subsets:
            take = max(1, math.ceil(max_subsets * len(combos) / total))
            keep = sorted(rng.choice(len(combos), size=min(take, len(combos)), replace=False))
            combos = [combos[i] for i in keep]
        if sizes is None or k in sizes:
            out += combos
    return out


class Sweep:
    """Runs one experiment into a workspace. ``run()`` is the whole protocol."""

    def __init__(self, cfg: ExperimentConfig, workspace: Any, progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.cfg = cfg.validate()
        self.exp = store.experiment_dir(workspace, cfg.experiment_id())
        # Under `accelerate launch`/torchrun every rank runs the same deterministic plan (so the
        # fine-tunes' collectives line up), but only rank 0 writes to the workspace.
        self.main = int(os.environ.get("RANK", "0")) == 0
        self.progress = progress and self.main
        self.log = log if self.main else (lambda _msg: None)
        self.job_id = os.environ.get("W2S_JOB_ID")
        self.precision = "fp32"
        self.meta: dict[str, Any] = {}

    # ------------------------------------------------------------ driver
    def run(self) -> str:
        try:
            with self._lock():
                self._run()
        except KeyboardInterrupt:
            self._set_status("interrupted")
            raise
        except OSError as e:
            self._set_status("interrupted")
            if e.errno == errno.ENOSPC:
                raise W2SError(f"disk full while writing to {self.exp.root}",
                               "free space and rerun the same command; finished runs are kept"
                               ) from None
            raise
        except ExperimentLocked:
            raise  # another sweep owns this experiment: never touch its status
        except BaseException:
            self._set_status("failed")
            raise
        return self.exp.id

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Two sweeps writing one experiment would interleave runs and progress: refused."""
        if not self.main:
            yield
            return
        self.exp.root.mkdir(parents=True, exist_ok=True)
        with experiment_lock(self.exp.root):
            yield

    def _event(self, stage: str, done: int, total: int, message: str = "") -> None:
        if not self.main:
            return
        store.append_progress(self.exp, {"time": time.time(), "stage": stage, "done": done,
                                         "total": total, "message": message,
                                         "job_id": self.job_id})

    def _set_status(self, status: str) -> None:
        if self.main and self.exp.meta.exists():
            try:
                meta = store.read_json(self.exp.meta)
            except W2SError:
                return
            meta["status"] = status
            store.write_json(self.exp.meta, meta)
            self._event("status", 0, 0, status)

    def _save_meta(self) -> None:
        if self.main:
            store.write_json(self.exp.meta, self.meta)

    def _run(self) -> None:
        if self.cfg.task == "generation":
            self._run_generation()
            return
        cfg = self.cfg
        reps = protocol.load_replicates(cfg)
        self.precision = protocol.resolved_precision(cfg)
        self._write_meta(reps)
        for sp in reps:
            extra = sp.info.get("data") or {}
            self.log(f"experiment {self.exp.id}: data seed {sp.data_seed}, {len(sp.ds)} examples"
                     f"{' ' + json.dumps(extra) if extra else ''}, splits {sp.info['sizes']}")
        self._event("features", 0, 1, "extracting frozen features")
        feats = protocol.compute_features(cfg, reps, self.progress)
        self._event("features", 1, 1, "features ready")
        for sp, f in zip(reps, feats, strict=True):
            teach = self._teachers(sp, f)
            self._students(self._plan(sp, teach), sp, f, teach)
        if self.main:
            df = store.write_run_index(self.exp)
            self._set_status("done")
            self.log(f"done: {len(df)} runs in {self.exp.root}")

    def _run_generation(self) -> None:
        """Slot filling: same store, run identity, lock and resume rule; the teachers and the
        students are causal LMs (``gen_teachers``, ``gen_runs``)."""
        from w2s_core.experiments import gen_protocol
        from w2s_core.experiments.gen_runs import GenerationRuns
        from w2s_core.experiments.gen_teachers import Teachers

        reps = gen_protocol.load_replicates(self.cfg)
        device = str(pick_device(self.cfg.device))
        self.precision = gen_protocol.resolved_precision(self.cfg, device)
        self._write_meta(reps)  # type: ignore[arg-type]
        for sp in reps:
            self.log(f"experiment {self.exp.id} (generation): data seed {sp.data_seed}, "
                     f"{len(sp.ds)} utterances, {len(sp.ds.slot_types)} slot types, splits "
                     f"{sp.info['sizes']}")
            teach = Teachers(self, sp, device).build()
            GenerationRuns(self, sp, teach, device).run()
        if self.main:
            df = store.write_run_index(self.exp)
            self._set_status("done")
            self.log(f"done: {len(df)} runs in {self.exp.root}")

    # ------------------------------------------------------------ experiment.json
    def _write_meta(self, reps: list[protocol.Splits]) -> None:
        """experiment.json (merged with what earlier sweeps recorded) and examples.parquet."""
        old: dict[str, Any] = {}
        if self.exp.meta.exists():
            try:
                old = store.read_json(self.exp.meta)
            except W2SError:
                old = {}  # corrupt meta: rewrite it
        self.meta, examples = expmeta.merge(old, self.exp.id, self.cfg, reps,
                                            device=str(pick_device(self.cfg.device)),
                                            precision=self.precision)
        if not self.main:
            return
        self._save_meta()
        if self.exp.examples.exists():
            try:
                examples = expmeta.merge_examples(store.read_parquet(self.exp.examples),
                                                  examples)
            except W2SError:
                pass  # a corrupt examples file is rewritten from the data
        store.write_parquet(self.exp.examples, examples)

    # ------------------------------------------------------------ floors
    def _teachers(self, sp: protocol.Splits, feats: dict) -> dict[str, dict[str, np.ndarray]]:
        """Teacher name → {"transfer": (N, C), "test": (N, C)} soft labels (cached on disk)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        n_tr = len(sp.idx["transfer"])
        ids = sp.ids("transfer") + sp.ids("test")
        gold = np.concatenate([sp.gold("transfer"), sp.gold("test")])
        split = ["transfer"] * n_tr + ["test"] * len(sp.idx["test"])
        files = self.meta["teacher_files"].setdefault(str(sp.data_seed), {})
        bar = tqdm(self.cfg.teachers, desc=f"weak floors (data seed {sp.data_seed})",
                   disable=not self.progress)
        for i, name in enumerate(bar):
            ident = protocol.teacher_identity(self.cfg, name, sp, self.precision)
            stem = store.teacher_stem(name, ident)
            path = self.exp.teacher_preds(stem)
            probs = None
            if path.exists():
                try:
                    df = store.read_parquet(path)
                    if list(df["example_id"]) == ids:
                        probs = store.probs_of(df)
                except W2SError as e:
                    self.log(f"warning: {e}; recomputing teacher {name}")
            if probs is None:
                t0 = time.time()
                probs = protocol.train_teacher(self.cfg, name, sp, feats)
                if self.main:
                    store.write_parquet(path, store.predictions_frame(ids, gold, probs,
                                                                      split=split))
                    store.write_json(self.exp.teacher_meta(stem), {
                        "teacher": name, "identity": ident, "seconds": time.time() - t0,
                        "data_seed": sp.data_seed, "given": name in sp.ds.weak,
                        "accuracy_transfer": accuracy(probs[:n_tr], gold[:n_tr]),
                        "accuracy_test": accuracy(probs[n_tr:], gold[n_tr:])})
            out[name] = {"transfer": probs[:n_tr], "test": probs[n_tr:]}
            if files.get(name) != stem:
                files[name] = stem
                self._save_meta()
            self._event("teachers", i + 1, len(self.cfg.teachers), name)
        return out

    # ------------------------------------------------------------ planning
    def _train_spec(self) -> dict[str, Any]:
        cfg = self.cfg
        train = cfg.probe if cfg.student_mode == "probe" else cfg.finetune
        return {"student": cfg.student, "student_mode": cfg.student_mode,
                **result_fields(dataclasses.asdict(train)), "precision": self.precision}

    def _plan(self, sp: protocol.Splits, teach: dict) -> list[Entry]:
        """(spec, extra stored fields, job factory or None if complete): ceilings first."""
        cfg, c = self.cfg, sp.ds.n_classes
        train = self._train_spec()
        options = plain(dataclasses.asdict(cfg.options))
        plan: list[Entry] = []
        gold_t = aggregate.onehot(sp.gold("transfer"), c)[None]
        for seed in cfg.seeds:
            spec = RunSpec(self.exp.id, "ceiling", "ceiling", (), False, seed, sp.data_seed,
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
                        spec = RunSpec(self.exp.id, "transfer", m, sub, bool(aux), seed,
                                       sp.data_seed, train, options)
                        plan.append(self._entry(spec, extra, lambda method=method, aux=aux,
                                                seed=seed, targets=targets: StudentJob(
                                                    method.family, *targets(),
                                                    cfg.options.aux_max if aux else 0.0, seed)))
        settings = self.meta.get("settings") or {}
        new = {e[0].setting: {"train": train, "options": None if e[0].options is None
                              else options} for e in plan if e[0].setting not in settings}
        self.record_settings(new, {"options": plain(dataclasses.asdict(type(cfg.options)()))})
        return plan

    def record_settings(self, new: dict[str, Any], defaults: dict[str, Any]) -> None:
        """Add ``new`` option settings to experiment.json, with the library's option defaults
        (which side of a one-option contrast is the reference: ``tables.setting_contrasts``)."""
        if new or self.meta.get("option_defaults") != defaults:
            self.meta.setdefault("settings", {}).update(new)
            self.meta["option_defaults"] = defaults
            self._save_meta()

    def _entry(self, spec: RunSpec, extra: dict[str, Any],
               make: Callable[[], StudentJob]) -> Entry:
        return spec, extra, None if self.exp.run_done(spec) else make

    def _weights(self, sub: tuple[str, ...], p: np.ndarray) -> np.ndarray:
        w = self.cfg.options.weights
        if isinstance(w, str):
            return aggregate.teacher_weights(w, p)
        full = dict(zip(self.cfg.teachers, w, strict=True))
        return aggregate.teacher_weights([full[t] for t in sub], p)

    # ------------------------------------------------------------ students
    def _students(self, plan: list[Entry], sp: protocol.Splits, feats: dict,
                  teach: dict) -> None:
        todo = [e for e in plan if e[2] is not None]
        n_done = len(plan) - len(todo)
        self.log(f"data seed {sp.data_seed}: {len(plan)} runs planned, {n_done} already "
                 f"complete, {len(todo)} to train")
        bar = tqdm(total=len(plan), initial=n_done, desc="students", disable=not self.progress)
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
            results = protocol.train_students(self.cfg, jobs, sp, feats)
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
                if self.main:
                    store.save_run(self.exp, spec.run_id, spec.stored_config(**extra), preds,
                                   met)
            n_done += len(chunk)
            bar.update(len(chunk))
            self._event("students", n_done, len(plan), f"{n_done}/{len(plan)} runs")
        bar.close()

    def _ceilings(self, plan: list[Entry]) -> dict[int, float]:
        """Seed → accuracy of this replicate's strong ceiling (the PGR denominator's top)."""
        out: dict[int, float] = {}
        for spec, _, _ in plan:
            path = self.exp.run_dir(spec.run_id) / "metrics.json"
            if spec.kind == "ceiling" and path.exists():
                out[spec.seed] = store.read_json(path)["accuracy"]
        return out
