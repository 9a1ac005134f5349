"""Aggregation (vote, Dawid–Skene, weights), the method registry, and the batched probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2s_core.errors import W2SError
from w2s_core.methods import aggregate
from w2s_core.methods.registry import METHODS, MethodOptions, family_loss
from w2s_core.training.probe import ProbeConfig, StudentJob, train_probes


def _synthetic_votes(acc, n=3000, c=3, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    hard = np.stack([np.where(rng.random(n) < a, y, (y + rng.integers(1, c, n)) % c)
                     for a in acc])
    p = np.eye(c)[hard] * 0.8 + 0.2 / c  # soft labels whose argmax is the vote
    return p, y


def test_dawid_skene_recovers_known_teacher_accuracies():
    acc = [0.9, 0.8, 0.7, 0.6, 0.55]
    p, y = _synthetic_votes(acc)
    res = aggregate.dawid_skene(p)
    true_acc = (p.argmax(-1) == y).mean(1)
    assert np.allclose(res.accuracy, true_acc, atol=0.03)
    assert (res.posterior.argmax(-1) == y).mean() > (aggregate.majority_vote(p) == y).mean()


def test_majority_vote_breaks_ties_by_mean_probability():
    # 2 teachers split 1–1 on every example; mean probability decides
    p = np.array([[[0.9, 0.1], [0.6, 0.4]],
                  [[0.4, 0.6], [0.1, 0.9]]])
    assert aggregate.majority_vote(p).tolist() == [0, 1]
    # a clear majority wins even against a confident minority
    q = np.array([[[0.45, 0.55]], [[0.45, 0.55]], [[0.99, 0.01]]])
    assert aggregate.majority_vote(q).tolist() == [1]


def test_teacher_weights():
    p, _ = _synthetic_votes([0.9, 0.6, 0.5], n=2000)
    assert np.allclose(aggregate.teacher_weights("uniform", p), 1 / 3)
    w = aggregate.teacher_weights("ds", p)
    assert w[0] > w[1] > w[2] and np.isclose(w.sum(), 1)
    assert np.allclose(aggregate.teacher_weights([2, 1, 1], p), [0.5, 0.25, 0.25])
    with pytest.raises(W2SError, match="3 teachers"):
        aggregate.teacher_weights([1, 1], p)
    with pytest.raises(W2SError, match="non-negative"):
        aggregate.teacher_weights([1, -1, 1], p)


def test_method_targets_shapes_and_semantics():
    p = np.array([[[0.9, 0.1], [0.3, 0.7]], [[0.6, 0.4], [0.45, 0.55]]])
    lam = np.array([0.5, 0.5])
    t, w = METHODS.get("joint").targets(p, lam)
    assert t.shape == (1, 2, 2) and t[0].argmax(-1).tolist() == [0, 1]
    t, w = METHODS.get("naive").targets(p, lam)
    assert t is p and np.allclose(w, lam)
    assert not METHODS.get("single").applies_to(2) and METHODS.get("naive").applies_to(2)
    with pytest.raises(W2SError, match="known:"):
        METHODS.get("nope")


def _separable(n=600, d=16, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    x = rng.normal(size=(n, d))
    return x, (x @ w > 0).astype(int)


def test_batched_probe_equals_training_each_student_alone():
    x, y = _separable()
    oh = np.eye(2)[y]
    noisy = np.clip(oh * 0.7 + 0.15, 0, 1)
    jobs = [StudentJob("ce", oh[None], np.ones(1), 0.0, 0),
            StudentJob("ce", np.stack([oh, noisy]), np.array([0.3, 0.7]), 0.5, 0),
            StudentJob("edl-softy", np.stack([oh, noisy]), np.array([0.5, 0.5]), 0.0, 0),
            StudentJob("edl-onehot", noisy[None], np.ones(1), 0.5, 1)]
    cfg = ProbeConfig(epochs=5, batch_size=128)
    together = train_probes(x, jobs, x, cfg, MethodOptions())
    for job, res in zip(jobs, together, strict=True):
        alone = train_probes(x, [job], x, cfg, MethodOptions())[0]
        assert np.allclose(res.probs, alone.probs, atol=1e-5)
    assert together[2].alpha is not None and together[0].alpha is None


def test_probe_learns_and_is_deterministic():
    x, y = _separable()
    jobs = [StudentJob("ce", np.eye(2)[y][None], np.ones(1), 0.0, 3)]
    cfg = ProbeConfig(epochs=30, batch_size=64, lr=2e-2)
    a = train_probes(x, jobs, x, cfg, MethodOptions())[0].probs
    b = train_probes(x, jobs, x, cfg, MethodOptions())[0].probs
    assert (a.argmax(1) == y).mean() > 0.95
    assert np.array_equal(a, b)


def test_collapsed_targets_give_the_per_teacher_loss():
    """The trainer averages teacher targets for linear losses; check the identity it relies on."""
    z = torch.randn(6, 3, dtype=torch.float64)
    p = torch.softmax(torch.randn(4, 6, 3, dtype=torch.float64), -1)
    lam = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    avg = (lam[:, None, None] * p).sum(0, keepdim=True)
    one = torch.ones(1, dtype=torch.float64)
    for fam in ("ce", "edl-onehot"):
        assert torch.allclose(family_loss(fam, z, p, lam, 0.6, MethodOptions()),
                              family_loss(fam, z, avg, one, 0.6, MethodOptions()))
    assert not torch.allclose(family_loss("edl-softy", z, p, lam, 0.6, MethodOptions()),
                              family_loss("edl-softy", z, avg, one, 0.6, MethodOptions()))
