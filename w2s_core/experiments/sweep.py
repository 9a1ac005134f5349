"""The ensemble sweep: every teacher subset × method × ±aux × seed, resumable.

Teacher predictions and student features are computed once per experiment and re-used by every
run; a run whose ``metrics.json`` exists is never recomputed, so an interrupted sweep resumes
where it stopped.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from w2s_core import __version__
from w2s_core.data.registry import load_dataset
from w2s_core.data.splits import make_splits
from w2s_core.errors import W2SError
from w2s_core.experiments import protocol, store
from w2s_core.experiments.config import ExperimentConfig, config_hash, result_fields
from w2s_core.methods import aggregate
from w2s_core.methods.registry import METHODS
from w2s_core.metrics.classification import accuracy, pgr, pgr_defined, run_metrics

CHUNK = 256  # students per batch: bounds the work lost to Ctrl-C and keeps progress live


def subsets(teachers: tuple[str, ...], max_subsets: int | None, seed: int) -> list[tuple[str, ...]]:
    """All non-empty subsets in config order, by size; a stratified seeded sample if capped."""
    out: list[tuple[str, ...]] = []
    total = 2 ** len(teachers) - 1
    rng = np.random.default_rng(seed)
    for k in range(1, len(teachers) + 1):
        combos = list(itertools.combinations(teachers, k))
        if max_subsets is not None and total > max_subsets:
            take = max(1, math.ceil(max_subsets * len(combos) / total))
            keep = sorted(rng.choice(len(combos), size=min(take, len(combos)), replace=False))
            combos = [combos[i] for i in keep]
        out += combos
    return out


class Sweep:
    """Runs one experiment into a workspace. ``run()`` is the whole protocol."""

    def __init__(self, cfg: ExperimentConfig, workspace: Path, progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.cfg = cfg.validate()
        self.exp = store.experiment_dir(workspace, cfg.experiment_id())
        # Under `accelerate launch`/torchrun every rank runs the same deterministic plan (so the
        # fine-tunes' collectives line up), but only rank 0 writes to the workspace.
        self.main = int(os.environ.get("RANK", "0")) == 0
        self.progress = progress and self.main
        self.log = log if self.main else (lambda _msg: None)

    # ------------------------------------------------------------ driver
    def run(self) -> str:
        try:
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
        except BaseException:
            self._set_status("failed")
            raise
        return self.exp.id

    def _event(self, stage: str, done: int, total: int, message: str = "") -> None:
        if not self.main:
            return
        store.append_progress(self.exp, {"time": time.time(), "stage": stage, "done": done,
                                         "total": total, "message": message})

    def _set_status(self, status: str) -> None:
        if self.main and self.exp.meta.exists():
            try:
                meta = store.read_json(self.exp.meta)
            except W2SError:
                return
            meta["status"] = status
            store.write_json(self.exp.meta, meta)
            self._event("status", 0, 0, status)

    def _run(self) -> None:
        cfg = self.cfg
        ds = load_dataset(cfg.data)
        idx, info = make_splits(ds, cfg.data)
        sp = protocol.Splits(ds, idx)
        self._write_meta(sp, info)
        self.log(f"experiment {self.exp.id}: {len(ds)} examples, splits {info['sizes']}")
        self._event("features", 0, 1, "extracting frozen features")
        feats = protocol.compute_features(cfg, sp, self.progress)
        self._event("features", 1, 1, "features ready")
        teach = self._teachers(sp, feats)
        pending = self._plan(sp, teach)
        self._students(pending, sp, feats, teach)
        if self.main:
            df = store.write_run_index(self.exp)
            self._set_status("done")
            self.log(f"done: {len(df)} runs in {self.exp.root}")

    def _write_meta(self, sp: protocol.Splits, info: dict[str, Any]) -> None:
        """experiment.json + examples.parquet. The data's fingerprint is stored so that a data
        file that changed under the same path cannot silently mix with the results already
        computed from the old one (the config, and so the run ids, would look the same)."""
        ds = sp.ds
        rows = [(ds.ids[i], s, int(ds.labels[i]), ds.texts[i])
                for s in ("weak", "transfer", "test") for i in sp.idx[s]]
        fingerprint = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
        meta = {"id": self.exp.id, "name": self.cfg.name, "status": "running",
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "config": self.cfg.to_dict(), "splits": info, "data_fingerprint": fingerprint,
                "class_names": list(ds.class_names), "n_classes": ds.n_classes,
                "w2s_version": __version__}
        if self.exp.meta.exists():
            try:
                old = store.read_json(self.exp.meta)
            except W2SError:
                old = {}  # corrupt meta: rewrite it
            if old.get("data_fingerprint", fingerprint) != fingerprint:
                raise W2SError(f"the data of experiment {self.exp.id} changed since its runs "
                               "were computed", "give the config a new `name`, or delete "
                               f"{self.exp.root} to recompute")
            meta["created"] = old.get("created", meta["created"])
        if not self.main:
            return
        store.write_json(self.exp.meta, meta)
        if not self.exp.examples.exists():
            store.write_parquet(self.exp.examples, pd.DataFrame(
                rows, columns=["example_id", "split", "gold", "text"]))

    # ------------------------------------------------------------ floors
    def _teachers(self, sp: protocol.Splits, feats: dict) -> dict[str, dict[str, np.ndarray]]:
        """Teacher name → {"transfer": (N, C), "test": (N, C)} soft labels (cached on disk)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        n_tr = len(sp.idx["transfer"])
        ids = sp.ids("transfer") + sp.ids("test")
        gold = np.concatenate([sp.gold("transfer"), sp.gold("test")])
        split = ["transfer"] * n_tr + ["test"] * len(sp.idx["test"])
        bar = tqdm(self.cfg.teachers, desc="weak floors", disable=not self.progress)
        for i, name in enumerate(bar):
            path = self.exp.teacher_preds(name)
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
                if not self.main:
                    out[name] = {"transfer": probs[:n_tr], "test": probs[n_tr:]}
                    continue
                store.write_parquet(path, store.predictions_frame(ids, gold, probs, split=split))
                store.write_json(self.exp.teacher_meta(name), {
                    "teacher": name, "seconds": time.time() - t0,
                    "accuracy_transfer": accuracy(probs[:n_tr], gold[:n_tr]),
                    "accuracy_test": accuracy(probs[n_tr:], gold[n_tr:])})
            out[name] = {"transfer": probs[:n_tr], "test": probs[n_tr:]}
            self._event("teachers", i + 1, len(self.cfg.teachers), name)
        return out

    # ------------------------------------------------------------ planning
    def _base(self) -> dict[str, Any]:
        cfg = self.cfg
        train = cfg.probe if cfg.student_mode == "probe" else cfg.finetune
        return {"experiment_id": self.exp.id, "data": asdict(cfg.data), "student": cfg.student,
                "student_mode": cfg.student_mode, "train": result_fields(asdict(train)),
                "precision": cfg.precision, "teachers_all": list(cfg.teachers),
                "teacher_mode": cfg.teacher_mode,
                # transfer runs are trained for a fixed number of epochs: no validation
                # labels at all, so gold can never leak through model selection
                "validation_labels": "none"}

    def _plan(self, sp: protocol.Splits, teach: dict) -> list[tuple[str, dict, Any]]:
        """(run_id, config, job-or-None-if-complete) for ceilings first, then transfer runs."""
        cfg, base, c = self.cfg, self._base(), sp.ds.n_classes
        plan: list[tuple[str, dict, Any]] = []
        gold_t = protocol.onehot(sp.gold("transfer"), c)[None]
        for seed in cfg.seeds:
            plan.append(self._entry(self._ceiling_config(seed), lambda s=seed: protocol.StudentJob(
                "ce", gold_t, np.ones(1), False, s)))
        for sub in subsets(cfg.teachers, cfg.max_subsets, cfg.subset_seed):
            p = np.stack([teach[t]["transfer"] for t in sub])  # (K, N, C)
            lam = self._weights(sub, p)
            for m in cfg.methods:
                spec = METHODS.get(m)
                if not spec.applies_to(len(sub)):
                    continue
                cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

                def targets(spec=spec, p=p, lam=lam, cache=cache
                            ) -> tuple[np.ndarray, np.ndarray]:
                    if "t" not in cache:  # DS is costly: once per (subset, method)
                        cache["t"] = spec.targets(p, lam)
                    return cache["t"]

                for aux in cfg.aux:
                    for seed in cfg.seeds:
                        rc = {**base, "kind": "transfer", "method": m, "subset": list(sub),
                              "k": len(sub), "aux": bool(aux), "seed": seed,
                              "options": {**asdict(cfg.options), "weights": cfg.options.weights},
                              "lambda": [round(float(x), 6) for x in lam]}
                        plan.append(self._entry(rc, lambda spec=spec, aux=aux, seed=seed,
                                                targets=targets: protocol.StudentJob(
                            spec.family, *targets(), bool(aux), seed)))
        return plan

    def _entry(self, rc: dict, make: Callable[[], protocol.StudentJob]
               ) -> tuple[str, dict, Any]:
        rid = config_hash(rc)
        rc = {"run_id": rid, **rc}
        return rid, rc, None if self.exp.run_complete(rid) else make

    def _weights(self, sub: tuple[str, ...], p: np.ndarray) -> np.ndarray:
        w = self.cfg.options.weights
        if isinstance(w, str):
            return aggregate.teacher_weights(w, p)
        full = dict(zip(self.cfg.teachers, w, strict=True))
        return aggregate.teacher_weights([full[t] for t in sub], p)

    # ------------------------------------------------------------ students
    def _students(self, plan: list[tuple[str, dict, Any]], sp: protocol.Splits, feats: dict,
                  teach: dict) -> None:
        todo = [(rid, rc, make) for rid, rc, make in plan if make is not None]
        n_done = len(plan) - len(todo)
        self.log(f"{len(plan)} runs planned, {n_done} already complete, {len(todo)} to train")
        bar = tqdm(total=len(plan), initial=n_done, desc="students", disable=not self.progress)
        y, test_ids = sp.gold("test"), sp.ids("test")
        ceilings = [e for e in todo if e[1]["kind"] == "ceiling"]
        rest = [e for e in todo if e[1]["kind"] != "ceiling"]
        # group by (seed, family) so each chunk batches well in the probe trainer
        rest.sort(key=lambda e: (e[1]["seed"], METHODS.get(e[1]["method"]).family))
        for chunk in [ceilings] + [rest[i:i + CHUNK] for i in range(0, len(rest), CHUNK)]:
            if not chunk:
                continue
            ceil = self._ceilings()
            jobs = [make() for _, _, make in chunk]
            t0 = time.time()
            results = protocol.train_students(self.cfg, jobs, sp, feats)
            per_run = (time.time() - t0) / len(chunk)
            for (rid, rc, _), (probs, alpha) in zip(chunk, results, strict=True):
                met = self._metrics(rc, probs, alpha, y, teach, ceil)
                met["train_seconds"] = per_run
                preds = store.predictions_frame(test_ids, y, probs, alpha)
                if self.main:
                    store.save_run(self.exp, rid, rc, preds, met)
            n_done += len(chunk)
            bar.update(len(chunk))
            self._event("students", n_done, len(plan), f"{n_done}/{len(plan)} runs")
        bar.close()

    def _ceiling_config(self, seed: int) -> dict[str, Any]:
        return {**self._base(), "kind": "ceiling", "method": "ceiling", "subset": [], "k": 0,
                "aux": False, "seed": seed}

    def _ceilings(self) -> dict[int, float]:
        """Seed → accuracy of that seed's strong ceiling (the PGR denominator's top)."""
        out: dict[int, float] = {}
        for seed in self.cfg.seeds:
            path = self.exp.run_dir(config_hash(self._ceiling_config(seed))) / "metrics.json"
            if path.exists():
                out[seed] = store.read_json(path)["accuracy"]
        return out

    def _metrics(self, rc: dict, probs: np.ndarray, alpha: np.ndarray | None, y: np.ndarray,
                 teach: dict, ceil: dict[int, float]) -> dict[str, Any]:
        if rc["kind"] == "ceiling":
            return run_metrics(probs, y, alpha=alpha)
        sub = rc["subset"]
        p = np.stack([teach[t]["test"] for t in sub])  # (K, N_test, C)
        lam = np.asarray(rc["lambda"])
        lam = lam / lam.sum()
        met = run_metrics(probs, y, weak_probs=aggregate.soft_vote(p, lam), alpha=alpha)
        accs = [accuracy(p[k], y) for k in range(len(sub))]
        floors = {"mean": float(np.mean(accs)), "best": float(np.max(accs)),
                  "vote": float(np.mean(aggregate.majority_vote(p) == y))}
        ceiling = ceil.get(rc["seed"], float("nan"))
        met["ceiling"] = ceiling
        for name, f in floors.items():
            met[f"floor_{name}"] = f
            met[f"pgr_{name}"] = pgr(met["accuracy"], f, ceiling)
            met[f"pgr_{name}_defined"] = bool(pgr_defined(f, ceiling))
        return met
