"""The three kinds of run of the W2S protocol, as building blocks for the sweep.

1. weak floors: each teacher learns the weak split's gold labels and predicts soft labels on
   transfer and test; 2. strong ceiling: the student learns transfer gold labels;
3. transfer: the student learns the teachers' labels combined by an ensemble method.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from w2s_core.data.registry import DATASETS, load_dataset
from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.data.splits import make_splits
from w2s_core.device import pick_device
from w2s_core.errors import W2SError
from w2s_core.experiments.config import ExperimentConfig, result_fields
from w2s_core.methods import aggregate
from w2s_core.methods.registry import (
    MethodOptions,
    head_init,
    predictive,
    student_loss,
    weak_class_balance,
)
from w2s_core.models.features import extract_features, resolve_precision
from w2s_core.models.registry import resolve_model
from w2s_core.models.spec import ModelSpec
from w2s_core.models.tfidf import tfidf_fit_predict
from w2s_core.training.finetune import FinetuneConfig, finetune_predict
from w2s_core.training.probe import StudentJob, train_probes


@dataclass
class Splits:
    """One data replicate: the dataset and its split indices (arrays of rows into ``ds``)."""

    ds: TextDataset
    idx: dict[str, np.ndarray]
    data_seed: int = 0
    info: dict = dataclasses.field(default_factory=dict)

    def texts(self, split: str) -> list[str]:
        return [self.ds.texts[i] for i in self.idx[split]]

    def gold(self, split: str) -> np.ndarray:
        return self.ds.labels[self.idx[split]]

    def ids(self, split: str) -> list[str]:
        return [self.ds.ids[i] for i in self.idx[split]]


def load_replicates(cfg: ExperimentConfig) -> list[Splits]:
    """One ``Splits`` per data seed: the data set loaded with that seed (seeded subsamples such
    as the tweets' class balancing follow it) and split with it."""
    out = []
    for seed in cfg.data.replicate_seeds():
        dcfg = dataclasses.replace(cfg.data, seed=seed, seeds=None)
        ds = load_dataset(dcfg)
        missing = [t for t in cfg.given_teachers() if t not in ds.weak]
        if missing:
            raise W2SError(f"given teacher(s) {', '.join(missing)} have no weak labels in the "
                           "data", "name their columns under data.weak_labels")
        idx, info = make_splits(ds, dcfg)
        out.append(Splits(ds, idx, seed, {**info, **({"data": ds.info} if ds.info else {})}))
    return out


def truncation_side(data: DataConfig) -> str:
    """The configured side, or the data set's own default (catalog): CosmosQA and BoolQ put
    the deciding text last, so they lose their start, not their end."""
    if data.truncation_side != "auto":
        return data.truncation_side
    return DATASETS.get(data.name).truncation_side


def resolved_precision(cfg: ExperimentConfig) -> str:
    """What ``precision: auto`` means on this machine (hashed into run and teacher ids, so
    results computed in bf16 on one CPU never pool with fp32 results from another)."""
    return resolve_precision(cfg.precision, pick_device(cfg.device))


def needed_features(cfg: ExperimentConfig) -> list[ModelSpec]:
    """Frozen-feature models of this experiment: probe-mode teachers and a probe-mode student."""
    specs = []
    if cfg.teacher_mode == "probe":
        specs += [resolve_model(t) for t in cfg.teachers if t not in cfg.given_teachers()]
    if cfg.student_mode == "probe":
        specs.append(resolve_model(cfg.student))
    seen: dict[str, ModelSpec] = {}
    for s in specs:
        if s.kind != "tfidf":
            seen.setdefault(s.name, s)
    return list(seen.values())


def compute_features(cfg: ExperimentConfig, reps: list[Splits], progress: bool
                     ) -> list[dict[str, dict[str, np.ndarray]]]:
    """Per replicate: model name → split → (N_split, D). One extraction over the union of every
    replicate's texts (cached on disk; models sharing weights share one forward pass)."""
    specs = needed_features(cfg)
    if not specs:
        return [{} for _ in reps]
    order = ["weak", "transfer", "test"]
    row: dict[str, int] = {}
    for sp in reps:
        for s in order:
            for t in sp.texts(s):
                row.setdefault(t, len(row))
    feats = extract_features(specs, list(row), batch_size=cfg.feature_batch_size,
                             device=cfg.device, precision=cfg.precision, progress=progress,
                             max_length=cfg.data.max_length,
                             truncation_side=truncation_side(cfg.data))
    return [{name: {s: arr[[row[t] for t in sp.texts(s)]] for s in order}
             for name, arr in feats.items()} for sp in reps]


def teacher_identity(cfg: ExperimentConfig, name: str, sp: Splits, precision: str
                     ) -> dict[str, object]:
    """What decides a teacher's predictions (hashed into its cache file's name): a given
    teacher by its weak labels, a trained one by its mode, training config, data replicate,
    resolved precision and token settings."""
    ident: dict[str, object] = {"teacher": name, "data_seed": sp.data_seed}
    if name in sp.ds.weak:
        ident["given"] = hashlib.sha256(np.ascontiguousarray(sp.ds.weak[name])).hexdigest()
        return ident
    train = cfg.probe if cfg.teacher_mode == "probe" else cfg.finetune
    return {**ident, "mode": cfg.teacher_mode, "train": result_fields(dataclasses.asdict(train)),
            "precision": precision, **_tokens(cfg)}


def train_teacher(cfg: ExperimentConfig, name: str, sp: Splits,
                  feats: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
    """Weak floor: train on weak-split gold; soft labels on transfer ++ test (N_tr + N_te, C)."""
    c = sp.ds.n_classes
    if name in sp.ds.weak:  # the user's own weak labels: nothing to train
        given = sp.ds.weak[name]
        return np.concatenate([given[sp.idx["transfer"]], given[sp.idx["test"]]])
    spec = resolve_model(name)
    seed = sp.data_seed
    if spec.kind == "tfidf":
        pred = tfidf_fit_predict(sp.texts("weak"), sp.gold("weak"), c,
                                 {"eval": sp.texts("transfer") + sp.texts("test")}, seed)
        return pred["eval"]
    if cfg.teacher_mode == "probe":
        f = feats[name]
        job = StudentJob("ce", aggregate.onehot(sp.gold("weak"), c)[None], np.ones(1), 0.0, seed)
        x_eval = np.concatenate([f["transfer"], f["test"]])
        return train_probes(f["weak"], [job], x_eval, cfg.probe, cfg.options)[0].probs
    # full fine-tune / LoRA of the teacher on gold
    y = torch.from_numpy(sp.gold("weak"))

    def loss_fn(logits: torch.Tensor, idx: torch.Tensor, tau: float) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), y[idx].to(logits.device))

    ft = _finetune_cfg(cfg, cfg.teacher_mode)
    logits = finetune_predict(spec, sp.texts("weak"), loss_fn,
                              sp.texts("transfer") + sp.texts("test"), c, ft, seed,
                              **_tokens(cfg))
    return torch.softmax(torch.from_numpy(logits).double(), -1).numpy()


def _tokens(cfg: ExperimentConfig) -> dict[str, object]:
    """The token cap and truncation side: data settings, shared by features and fine-tuning."""
    return {"max_length": cfg.data.max_length, "truncation_side": truncation_side(cfg.data)}


def _finetune_cfg(cfg: ExperimentConfig, mode: str) -> FinetuneConfig:
    return dataclasses.replace(cfg.finetune, mode=mode, device=cfg.device)


def train_students(cfg: ExperimentConfig, jobs: list[StudentJob], sp: Splits,
                   feats: dict[str, dict[str, np.ndarray]],
                   on_done: Callable[[int], None] | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Train students on the transfer split; (probs, alpha) on test for each job, in order."""
    opts = cfg.options
    if cfg.student_mode == "probe":
        f = feats[resolve_model(cfg.student).name]
        res = train_probes(f["transfer"], jobs, f["test"], cfg.probe, opts, on_done=on_done)
        return [(r.probs, r.alpha) for r in res]
    out = []
    for j in jobs:
        out.append(_finetune_student(cfg, j, sp, opts))
        if on_done:
            on_done(1)
    return out


def _finetune_student(cfg: ExperimentConfig, j: StudentJob, sp: Splits, opts: MethodOptions
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    t = torch.from_numpy(j.targets).float()  # (K, N, C)
    lam = torch.from_numpy(j.lam).float()  # (K,)
    c = t.shape[-1]
    balance = weak_class_balance(t, lam)  # over the whole transfer split, as in the probe

    def loss_fn(logits: torch.Tensor, idx: torch.Tensor, tau: float) -> torch.Tensor:
        z = logits.float()
        tb = t[:, idx.cpu()].to(z.device)  # (K, B, C)
        bal = None if balance is None else balance.to(z.device)
        return student_loss(j.family, z, tb, lam.to(z.device), tau, opts, j.aux_max,
                            bal).mean()

    spec = resolve_model(cfg.student)
    logits = finetune_predict(spec, sp.texts("transfer"), loss_fn, sp.texts("test"), c,
                              _finetune_cfg(cfg, cfg.student_mode), j.seed,
                              head_init=head_init(j.family), **_tokens(cfg))
    probs, alpha = predictive(j.family, torch.from_numpy(logits).float(), opts)
    return probs.double().numpy(), None if alpha is None else alpha.double().numpy()
