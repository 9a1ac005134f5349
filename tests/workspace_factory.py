"""A synthetic but realistic workspace written through the store API (docs/STORAGE.md).

The dashboard tests need results without training anything: this writes teachers, ceilings and
transfer runs whose predictions come from a seeded latent-noise model, and whose metrics are
computed from those predictions by ``w2s_core.metrics`` (so every number on a page is consistent
with the per-example files). It also writes the awkward cases the real engine rarely produces on
demand: a 3-class experiment (ternary simplex view), an undefined PGR (ceiling ≤ floor) and one
corrupt run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from w2s_core.experiments import store
from w2s_core.experiments.runspec import RunSpec
from w2s_core.metrics import pgr, run_metrics

ROOT = Path(__file__).resolve().parents[1]
TEACHERS_2 = {"tfidf-logreg": 0.70, "minilm-l3": 0.66, "minilm-l6": 0.72, "mpnet-2l": 0.75,
              "mpnet-4l": 0.78}
TEACHERS_3 = {"tfidf-logreg": 0.58, "minilm-l6": 0.64, "mpnet-4l": 0.69}
# How much of the weak→strong gap each method recovers at K=1 and how it grows per extra teacher.
RECOVERY = {"single": (0.30, 0.0), "naive": (0.30, 0.06), "joint": (0.28, 0.05),
            "vote": (0.27, 0.05), "dawid-skene": (0.29, 0.06), "bayes": (0.34, 0.09),
            "bayes-softy": (0.33, 0.08)}
OPTIONS = {"evidence": "exp", "kl_scale": 1.0, "aux_max": 0.5, "aux_warmup": 0.2,
           "weights": "uniform"}
WORDS = {0: ["awful", "broken", "late", "rude", "boring", "sad", "worst", "noisy", "cold", "slow"],
         1: ["great", "lovely", "fast", "kind", "fun", "happy", "best", "quiet", "warm", "smooth"],
         2: ["okay", "plain", "usual", "average", "fine", "normal", "standard", "regular", "so-so",
             "typical"]}
FILLER = ["the", "my", "this", "our", "that", "your", "new", "old"]
NOUNS = ["flight", "phone", "coffee", "service", "movie", "hotel", "app", "update", "train", "game"]


def _hash_id(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _probs(gold: np.ndarray, acc: float, shared: np.ndarray, rng: np.random.Generator,
           n_classes: int, sharp: float = 1.6) -> np.ndarray:
    """Soft labels whose argmax is right ≈ ``acc`` of the time; ``shared`` makes models err on
    the same hard examples, as real teachers do (so agreement is above chance)."""
    n = len(gold)
    mu = norm.ppf(acc) if n_classes == 2 else norm.ppf(acc) + 0.55
    noise = 0.6 * shared + 0.8 * rng.standard_normal(n)
    logits = rng.standard_normal((n, n_classes)) * (0.0 if n_classes == 2 else 0.7)
    logits[np.arange(n), gold] += mu + noise
    z = sharp * logits
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _transfer_metrics(p: np.ndarray, y: np.ndarray, weak: np.ndarray, alpha: np.ndarray | None,
                      floors: dict[str, float], ceiling: float, rng: np.random.Generator
                      ) -> dict[str, Any]:
    """A transfer run's metrics.json, computed from its predictions as the sweep does."""
    met = run_metrics(p, y, weak_probs=weak, alpha=alpha)
    met.update(floors, ceiling=ceiling, train_seconds=float(rng.uniform(1, 4)))
    for conv in ("mean", "best", "vote"):
        v = pgr(met["accuracy"], floors[f"floor_{conv}"], ceiling)
        met[f"pgr_{conv}"] = v
        met[f"pgr_{conv}_defined"] = bool(np.isfinite(v))
    return met


def _student(y: np.ndarray, frac: float, floor: float, ceiling: float, shared: np.ndarray,
             rng: np.random.Generator, c: int, edl: bool
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """A student's test probabilities recovering ``frac`` of the floor→ceiling gap (and its
    Dirichlet parameters when it is an EDL student)."""
    target = float(np.clip(floor + frac * (ceiling - floor), 1.0 / c + 0.05, 0.97))
    p = _probs(y, target, shared, rng, c, sharp=1.0 if edl else 1.8)
    if not edl:
        return p, None
    # evidence grows with the margin: confident examples get a large S
    strength = np.exp(rng.normal(2.2, 0.6, len(y))) * (0.3 + p.max(1))
    alpha = 1.0 + p * strength[:, None] * c
    return alpha / alpha.sum(1, keepdims=True), alpha


def _floors(tprobs: dict[str, np.ndarray], sub: tuple[str, ...], y: np.ndarray) -> dict[str, float]:
    acc = {t: float((tprobs[t].argmax(1) == y).mean()) for t in sub}
    soft = np.mean([tprobs[t] for t in sub], axis=0)
    return {"floor_mean": float(np.mean(list(acc.values()))), "floor_best": max(acc.values()),
            "floor_vote": float((soft.argmax(1) == y).mean())}


def _texts(gold: np.ndarray, rng: np.random.Generator) -> list[str]:
    out = []
    for g in gold:
        w = rng.choice(WORDS[int(g)], 2, replace=False)
        out.append(f"{rng.choice(FILLER)} {rng.choice(NOUNS)} was {w[0]} and {w[1]}")
    return out


def make_experiment(ws: Path, *, name: str, dataset: str, teachers: dict[str, float],
                    class_names: list[str], methods: list[str], seeds: list[int],
                    aux: list[bool], subsets_per_k: int, n_test: int, n_transfer: int,
                    ceiling_acc: list[float], seed: int = 0,
                    recovery: dict[str, tuple[float, float]] | None = None,
                    data: dict[str, Any] | None = None) -> str:
    """Write one complete experiment; returns its id.

    ``recovery``: method → (fraction of the gap recovered at K=1, change per extra teacher), as
    RECOVERY (the default); a negative change makes recovery shrink with K. ``data``: extra keys
    of the config's ``data`` section (e.g. ``path`` for the ``file`` dataset).
    """
    rng = np.random.default_rng(seed)
    recovery = RECOVERY if recovery is None else recovery
    c = len(class_names)
    cfg = {"name": name, "data": {"name": dataset, "n_weak": n_transfer, "n_transfer": n_transfer,
                                  "n_test": n_test, "seed": seed, **(data or {})},
           "teachers": list(teachers), "student": "mpnet-base", "student_mode": "probe",
           "methods": methods, "aux": aux, "seeds": seeds}
    exp_id = f"{name}-{_hash_id(cfg)}"
    exp = store.experiment_dir(ws, exp_id)
    n_weak = n_transfer
    split = ["weak"] * n_weak + ["transfer"] * n_transfer + ["test"] * n_test
    gold = rng.integers(0, c, len(split))
    ids = [f"{dataset}-{i}" for i in range(len(split))]
    store.write_json(exp.meta, {
        "id": exp_id, "name": name, "created": "2025-01-01T00:00:00", "status": "done",
        "config": cfg, "class_names": class_names, "n_classes": c, "w2s_version": "0.1.0",
        "splits": {"sizes": {"weak": n_weak, "transfer": n_transfer, "test": n_test},
                   "requested": {"weak": n_weak, "transfer": n_transfer, "test": n_test},
                   "shrunk": False, "seed": seed, "n_total": len(split)}})
    ex = store.predictions_frame(ids, gold, np.eye(c)[gold], split=split)[
        ["example_id", "split", "gold"]]
    ex["text"] = _texts(gold, rng)
    store.write_parquet(exp.examples, ex)

    keep = np.array([s != "weak" for s in split])
    k_ids = [i for i, k in zip(ids, keep, strict=True) if k]
    k_split = [s for s, k in zip(split, keep, strict=True) if k]
    k_gold = gold[keep]
    test = np.array([s == "test" for s in k_split])
    shared = rng.standard_normal(len(k_gold))
    tprobs: dict[str, np.ndarray] = {}
    for t, acc in teachers.items():
        p = _probs(k_gold, acc, shared, rng, c, sharp=1.2)
        tprobs[t] = p[test]
        store.write_parquet(exp.teacher_preds(t),
                            store.predictions_frame(k_ids, k_gold, p, split=k_split))
        hit = p.argmax(1) == k_gold
        store.write_json(exp.teacher_meta(t), {
            "teacher": t, "accuracy_transfer": float(hit[~test].mean()),
            "accuracy_test": float(hit[test].mean()), "seconds": 1.5})

    test_ids = [i for i, s in zip(k_ids, test, strict=True) if s]
    y = k_gold[test]
    ceil = {}
    for s_i, s in enumerate(seeds):
        p = _probs(y, ceiling_acc[s_i % len(ceiling_acc)], shared[test], rng, c)
        conf = {"kind": "ceiling", "method": "ceiling", "subset": [], "k": 0, "aux": False,
                "seed": s, "experiment_id": exp_id, "validation_labels": "none"}
        run_id = _hash_id(conf)
        met = run_metrics(p, y)
        met["train_seconds"] = 3.0
        store.save_run(exp, run_id, {"run_id": run_id, **conf},
                       store.predictions_frame(test_ids, y, p), met)
        ceil[s] = met["accuracy"]

    names = list(teachers)
    for k in range(1, len(names) + 1):
        subsets = list(itertools.combinations(names, k))[:subsets_per_k]
        for sub, m, a, s in itertools.product(subsets, methods, aux, seeds):
            if (k == 1) != (m == "single") and not (k == 1 and m.startswith("bayes")):
                continue  # K=1 trains the single-teacher baseline and the Bayesian student
            weak = np.mean([tprobs[t] for t in sub], axis=0)
            floors = _floors(tprobs, sub, y)
            base, slope = recovery[m]
            frac = base + slope * (k - 1) + (0.04 if a else 0.0) + rng.normal(0, 0.03)
            edl = m.startswith("bayes")
            p, alpha = _student(y, frac, floors["floor_mean"], ceil[s], shared[test], rng, c, edl)
            conf = {"kind": "transfer", "method": m, "subset": list(sub), "k": k, "aux": a,
                    "seed": s, "experiment_id": exp_id, "validation_labels": "none",
                    "evidence": "exp" if edl else None, "kl_scale": 1.0 if edl else None,
                    "aux_max": 0.5 if a else 0.0, "aux_warmup": 0.2, "weights": "uniform",
                    "training": {"lr": 1e-3, "epochs": 20, "batch_size": 64}}
            # The method options as the store's RunSpec reads them: one option set for the whole
            # experiment, as a sweep with one set of options writes (so all runs share a setting).
            conf["options"] = dict(OPTIONS)
            run_id = _hash_id(conf)
            met = _transfer_metrics(p, y, weak, alpha, floors, ceil[s], rng)
            store.save_run(exp, run_id, {"run_id": run_id, **conf},
                           store.predictions_frame(test_ids, y, p, alpha), met)
    store.write_run_index(exp)
    store.append_progress(exp, {"time": 0.0, "stage": "done", "done": 1, "total": 1,
                                "message": "synthetic workspace"})
    return exp_id


TRAIN = {"student": "mpnet-base", "student_mode": "probe", "lr": 1e-3, "epochs": 20,
         "precision": "fp32"}
# Two option settings of one experiment; the second recovers SETTING_BOOST more of the gap.
SETTINGS = ({**OPTIONS, "evidence": "exp", "kl_scale": 1.0},
            {**OPTIONS, "evidence": "relu", "kl_scale": 0.1})
SETTING_BOOST = 0.35


def _majority(probs: np.ndarray) -> np.ndarray:
    """One-hot majority vote of the teachers' argmax labels (K, N, C) → (N, C); a tie goes to
    the lowest class, so it differs from the soft vote on split examples."""
    c = probs.shape[-1]
    counts = np.eye(c)[probs.argmax(-1)].sum(0)
    return np.eye(c)[counts.argmax(1)]


def make_identity_experiment(ws: Path, *, name: str = "identity", data_seeds: tuple[int, ...]
                             = (0, 1), methods: tuple[str, ...] = ("single", "naive", "vote",
                                                                   "bayes"),
                             n: tuple[int, int] = (60, 150), seed: int = 7) -> str:
    """A format-2 experiment as a sweep over two option settings (``SETTINGS``) and several
    data replicates writes it: RunSpec configs, an index built by ``store.run_row``, teacher
    caches per replicate (``teacher_stem`` + ``teacher_files``), examples per replicate (one
    example id is test in one replicate and transfer in another), and each run's own weak
    labels in ``w_*`` (majority vote for ``vote``, the soft mean otherwise). ``n``: (transfer,
    test) examples per replicate."""
    rng = np.random.default_rng(seed)
    teachers = dict(list(TEACHERS_2.items())[:3])
    n_tr, n_te = n
    pool = [f"{name}-{i}" for i in range(2 * n_tr + n_te)]  # weak + transfer + test
    gold_all = rng.integers(0, 2, len(pool))
    texts = _texts(gold_all, rng)
    cfg = {"name": name, "data": {"name": "tweets", "n_weak": n_tr, "n_transfer": n_tr,
                                  "n_test": n_te, "seeds": list(data_seeds)},
           "teachers": list(teachers), "student": TRAIN["student"], "methods": list(methods)}
    exp_id = f"{name}-{_hash_id(cfg)}"
    exp = store.experiment_dir(ws, exp_id)
    files: dict[str, dict[str, str]] = {}
    settings: dict[str, dict[str, Any]] = {}
    examples = []
    for d in data_seeds:
        order = rng.permutation(len(pool))  # this replicate's split draw
        split = np.array(["weak"] * n_tr + ["transfer"] * n_tr + ["test"] * n_te)
        ids, gold = [pool[i] for i in order], gold_all[order]
        examples.append(pd.DataFrame({"data_seed": d, "example_id": ids, "split": split,
                                      "gold": gold, "text": [texts[i] for i in order]}))
        keep, test = split != "weak", split[split != "weak"] == "test"
        k_ids, y_all = [i for i, k in zip(ids, keep, strict=True) if k], gold[keep]
        shared = rng.standard_normal(len(y_all))
        tprobs = {}
        for t, acc in teachers.items():  # retrained per replicate: new predictions
            stem = store.teacher_stem(t, {"teacher": t, "data_seed": d})
            files.setdefault(str(d), {})[t] = stem
            p = _probs(y_all, acc, shared, rng, 2, sharp=1.2)
            tprobs[t] = p[test]
            store.write_parquet(exp.teacher_preds(stem), store.predictions_frame(
                k_ids, y_all, p, split=list(split[keep])))
            hit = p[test].argmax(1) == y_all[test]
            store.write_json(exp.teacher_meta(stem), {"teacher": t, "data_seed": d,
                                                      "accuracy_test": float(hit.mean())})
        y, test_ids = y_all[test], [i for i, t in zip(k_ids, test, strict=True) if t]
        spec = RunSpec(exp_id, "ceiling", "ceiling", (), False, 0, d, TRAIN)
        p = _probs(y, 0.9, shared[test], rng, 2)
        ceil = run_metrics(p, y)
        store.save_run(exp, spec.run_id, spec.stored_config(), store.predictions_frame(
            test_ids, y, p), {**ceil, "train_seconds": 3.0})
        for (i, opts), k in itertools.product(enumerate(SETTINGS), range(1, len(teachers) + 1)):
            for sub, m in itertools.product(itertools.combinations(teachers, k), methods):
                if (k == 1) != (m == "single") and not (k == 1 and m == "bayes"):
                    continue
                stack = np.stack([tprobs[t] for t in sub])
                weak = _majority(stack) if m == "vote" else stack.mean(0)
                floors = _floors(tprobs, sub, y)
                frac = RECOVERY[m][0] + RECOVERY[m][1] * (k - 1) + SETTING_BOOST * i
                p, alpha = _student(y, frac, floors["floor_mean"], ceil["accuracy"],
                                    shared[test], rng, 2, m == "bayes")
                spec = RunSpec(exp_id, "transfer", m, sub, False, 0, d, TRAIN, opts)
                settings[spec.setting] = {"train": TRAIN, "options": opts}
                met = _transfer_metrics(p, y, weak, alpha, floors, ceil["accuracy"], rng)
                store.save_run(exp, spec.run_id, spec.stored_config(**{"lambda": [1 / k] * k}),
                               store.predictions_frame(test_ids, y, p, alpha, weak=weak), met)
    store.write_parquet(exp.examples, pd.concat(examples, ignore_index=True))
    sizes = {"weak": n_tr, "transfer": n_tr, "test": n_te}
    store.write_json(exp.meta, {
        "id": exp_id, "name": name, "created": "2025-01-01T00:00:00", "status": "done",
        "format": 2, "config": cfg, "class_names": ["negative", "positive"], "n_classes": 2,
        "settings": settings,
        "data_seeds": list(data_seeds), "teacher_files": files, "splits": {"sizes": sizes},
        "replicates": {str(d): {"splits": {"sizes": sizes, "seed": d}} for d in data_seeds}})
    store.write_run_index(exp)  # one store.run_row per run, as the sweep's index
    return exp_id


def corrupt_run(ws: Path, exp_id: str) -> str:
    """Add a run whose metrics.json is truncated (a crash mid-copy); returns its id.

    Written after the run index, so loading rebuilds the index and meets the bad file.
    """
    exp = store.experiment_dir(ws, exp_id)
    run_id = "badc0ffee000"
    d = exp.run_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text('{"run_id": "badc0ffee000", "kind": "transfer"}')
    (d / "metrics.json").write_text('{"accuracy": 0.8')
    return run_id


def build_workspace(ws: Path, *, corrupt: bool = True, three_class: bool = True) -> dict[str, str]:
    """A binary 5-teacher experiment (+ corrupt run) and a 3-class one; returns their ids."""
    ws = Path(ws)
    out = {"binary": make_experiment(
        ws, name="synthetic-tweets", dataset="tweets", teachers=TEACHERS_2,
        class_names=["negative", "positive"], methods=list(RECOVERY), seeds=[0, 1],
        aux=[False, True], subsets_per_k=2, n_test=240, n_transfer=240,
        ceiling_acc=[0.88, 0.86])}
    if three_class:
        out["ternary"] = make_experiment(
            ws, name="synthetic-3class", dataset="tweets-3class", teachers=TEACHERS_3,
            class_names=["negative", "neutral", "positive"],
            methods=["single", "naive", "vote", "bayes"], seeds=[0, 1], aux=[False],
            subsets_per_k=3, n_test=180, n_transfer=180,
            ceiling_acc=[0.80, 0.66], seed=1)  # seed 1's weak ceiling → undefined PGRs
    if corrupt:
        out["corrupt_run"] = corrupt_run(ws, out["binary"])
    return out


def demo_workspace(base: Path) -> Path:
    """The main dashboard test workspace, built once per test session under ``base``.

    A real ``w2s demo --quick`` run (set ``W2S_TEST_WORKSPACE=synthetic`` to use the synthetic
    workspace above, without its corrupt run, while changing the engine).
    """
    ws = Path(base) / "demo-ws"
    marker = ws / ".built"
    if marker.exists():
        return ws
    mode = os.environ.get("W2S_TEST_WORKSPACE", "auto")
    if mode != "synthetic":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        r = subprocess.run([sys.executable, "-m", "w2s_core.cli", "demo", "--quick",
                            "--no-progress", "--workspace", str(ws)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            raise RuntimeError(f"`w2s demo --quick` failed with exit code {r.returncode}:\n"
                               f"{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        source = "w2s demo --quick"
    else:
        build_workspace(ws, corrupt=False)
        source = "synthetic"
    marker.write_text(source, encoding="utf-8")
    return ws


if __name__ == "__main__":
    print(build_workspace(Path(sys.argv[1] if len(sys.argv) > 1 else "w2s_workspace")))
