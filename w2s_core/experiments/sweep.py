"""The ensemble sweep: every data replicate × teacher subset × method × ±aux × seed, resumable.

Teacher predictions and student features are computed once per replicate and re-used by every
run; a run whose ``metrics.json`` exists is never recomputed, so an interrupted sweep resumes
where it stopped. Every run's identity is a ``RunSpec`` (run id, stored config, index columns).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from w2s_core.device import pick_device
from w2s_core.errors import W2SError
from w2s_core.experiments import meta as expmeta
from w2s_core.experiments import protocol, store
from w2s_core.experiments.cls_runs import ClassificationRuns
from w2s_core.experiments.config import ExperimentConfig
from w2s_core.experiments.lock import ExperimentLocked, experiment_lock


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
            ClassificationRuns(self, sp, f).run()
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

    def record_settings(self, new: dict[str, Any], defaults: dict[str, Any]) -> None:
        """Add ``new`` option settings to experiment.json, with the library's option defaults
        (which side of a one-option contrast is the reference: ``tables.setting_contrasts``)."""
        if new or self.meta.get("option_defaults") != defaults:
            self.meta.setdefault("settings", {}).update(new)
            self.meta["option_defaults"] = defaults
            self._save_meta()
