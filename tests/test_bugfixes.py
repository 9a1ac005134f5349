"""Regression tests for four bugs: dead relu EDL heads, the LR schedule under N processes,
bare hub ids, and aux hardening on logit margins instead of the predictive probabilities."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from w2s_core.errors import W2SError
from w2s_core.methods import losses
from w2s_core.methods.registry import (
    MethodOptions,
    family_loss,
    head_init,
    student_loss,
    weak_class_balance,
)
from w2s_core.models.registry import MODELS, resolve_model
from w2s_core.training import finetune
from w2s_core.training.finetune import FinetuneConfig, finetune_predict, lr_factor
from w2s_core.training.probe import ProbeConfig, StudentJob, train_probes

pytestmark = pytest.mark.usefixtures("torch_single_thread")

EVIDENCE = ("exp", "softplus", "relu")
EDL = ("edl-onehot", "edl-softy")


# ------------------------------------------------------------------ 1. EDL heads must train

def _blobs(n: int = 400, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs 6σ apart (Bayes accuracy Φ(3) ≈ 0.999), off-centre on purpose."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    mu = rng.normal(size=d)
    mu *= 3.0 / np.linalg.norm(mu)
    x = rng.normal(size=(n, d)) + np.where(y[:, None] == 1, mu, -mu) + 5.0
    return x, y


@pytest.mark.parametrize("family", EDL)
@pytest.mark.parametrize("evidence", EVIDENCE)
def test_edl_probe_trains_with_every_evidence_function(family: str, evidence: str) -> None:
    x, y = _blobs()
    job = StudentJob(family, np.eye(2)[y][None], np.ones(1), 0.0, seed=0)  # type: ignore[arg-type]
    res = train_probes(x, [job], x, ProbeConfig(epochs=20, batch_size=64),
                       MethodOptions(evidence=evidence))[0]  # type: ignore[arg-type]
    assert (res.probs.argmax(1) == y).mean() > 0.9
    assert res.alpha is not None and (res.alpha > 1.0).any()  # evidence was learned


def test_probe_heads_start_zero_for_ce_and_small_random_for_edl() -> None:
    x, _ = _blobs()
    before = ProbeConfig(epochs=0)  # no step: the predictions are the initial head's
    ce = train_probes(x, [StudentJob("ce", np.full((1, 400, 2), 0.5), np.ones(1), 0.0, 0)], x,
                      before, MethodOptions())[0].probs
    assert np.array_equal(ce, np.full_like(ce, 0.5))  # Burns et al.: exactly uniform
    edl = [train_probes(x, [StudentJob("edl-onehot", np.full((1, 400, 2), 0.5), np.ones(1), 0.0,
                                     seed)], x, before, MethodOptions(evidence="relu"))[0]
           for seed in (0, 0, 1)]
    p = edl[0].probs[:, 1]
    assert np.abs(p - 0.5).max() < 0.02 and p.std() > 0  # near uniform, but not a dead zero
    assert (edl[0].alpha[:, 1] > 1).any() and (edl[0].alpha[:, 1] == 1).any()  # straddles 0
    assert np.array_equal(edl[0].probs, edl[1].probs)  # seeded
    assert not np.array_equal(edl[0].probs, edl[2].probs)


def test_head_init_by_family() -> None:
    assert head_init("ce") == "zeros"
    assert head_init("edl-onehot") == head_init("edl-softy") == "random"


POS = ["good day", "great movie", "wonderful happy friends", "amazing fantastic song",
       "i loved it", "excellent good"]
NEG = ["bad day", "terrible movie", "awful sad news", "horrible bad song", "i hated it",
       "awful terrible"]


def _edl_loss(y: torch.Tensor, evidence: str):  # noqa: ANN202
    onehot = torch.eye(2)[y][None]  # (K=1, N, C)

    def loss_fn(logits: torch.Tensor, idx: torch.Tensor, tau: float) -> torch.Tensor:
        return losses.bayesian_multi_weak(logits, onehot[:, idx], torch.ones(1), tau,
                                          evidence_fn=evidence).mean()  # type: ignore[arg-type]
    return loss_fn


def test_zero_head_never_moves_under_relu_evidence(tiny_encoder_dir: Path) -> None:
    """Why EDL needs ``head_init="random"``: relu'(0) = 0, so a zero head gets no gradient."""
    spec = resolve_model(str(tiny_encoder_dir))
    texts, y = POS + NEG, torch.tensor([1] * len(POS) + [0] * len(NEG))
    cfg = FinetuneConfig(lr=3e-3, epochs=2, batch_size=4, progress=False, bf16="off",
                         device="cpu")
    zero = finetune_predict(spec, texts, _edl_loss(y, "relu"), texts, 2, cfg, seed=0)
    assert np.array_equal(zero, np.zeros_like(zero))


@pytest.mark.parametrize("evidence", EVIDENCE)
def test_edl_finetune_trains_with_every_evidence_function(evidence: str,
                                                          tiny_encoder_dir: Path) -> None:
    spec = resolve_model(str(tiny_encoder_dir))
    texts, y = POS + NEG, torch.tensor([1] * len(POS) + [0] * len(NEG))
    cfg = FinetuneConfig(lr=3e-3, epochs=24, batch_size=4, progress=False, bf16="off",
                         device="cpu")
    seen: list[float] = []
    logits = finetune_predict(spec, texts, _edl_loss(y, evidence), texts, 2, cfg, seed=0,
                              head_init="random", on_step=lambda s, loss: seen.append(float(loss)))
    assert (logits.argmax(1) == y.numpy()).mean() == 1.0
    assert np.mean(seen[-3:]) < 0.7 * seen[0]  # learned, not a lucky tie-break of α = 1


def test_centered_head_logits_sum_to_zero_over_each_training_batch(tiny_encoder_dir: Path
                                                                   ) -> None:
    from w2s_core.models.assets import load_encoder
    from w2s_core.models.features import pad_batch

    backbone, tok = load_encoder(resolve_model(str(tiny_encoder_dir)), "cpu")
    model = finetune.PooledClassifier(backbone, 2, "mean", centered=True).eval()
    ids = tok(POS + NEG)["input_ids"]
    input_ids, mask = pad_batch(ids, list(range(len(ids))), tok.pad_token_id,
                                torch.device("cpu"))
    torch.nn.init.normal_(model.head.weight)
    for m in model.modules():  # train mode below must see the same states as eval mode
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        h = model.embed(input_ids, mask)
        z_eval = model(input_ids, mask)  # running centre still 0: the plain head
        assert torch.allclose(z_eval, model.head(h))
        z = model.train()(input_ids, mask)
        assert torch.allclose(z.sum(0), torch.zeros(2), atol=1e-4)  # some positive per class
        assert ((z > 0).any(0) & (z < 0).any(0)).all()
        assert torch.allclose(z, model.head(h - h.mean(0)), atol=1e-5)
        assert torch.allclose(model.center, finetune.CENTER_MOMENTUM * h.mean(0))
        assert torch.allclose(model.eval()(input_ids, mask), model.head(h - model.center))


def test_random_head_logits_straddle_zero_on_uncentred_states(tiny_encoder_dir: Path) -> None:
    """Pooled states share a large common direction; the head must not see it, or a class's
    logits start with one sign on every example (a dead class under relu)."""
    from w2s_core.models.assets import load_encoder
    from w2s_core.models.features import pad_batch

    backbone, tok = load_encoder(resolve_model(str(tiny_encoder_dir)), "cpu")
    model = finetune.PooledClassifier(backbone, 3, "mean").eval()
    ids = tok(POS + NEG)["input_ids"]
    input_ids, mask = pad_batch(ids, list(range(len(ids))), tok.pad_token_id,
                                torch.device("cpu"))
    with torch.no_grad():
        h = model.embed(input_ids, mask)
    h_shifted = h + 10.0  # an uncentred embedding, as real pooled states are
    finetune.init_random_head(model.head, h_shifted, seed=3)
    with torch.no_grad():
        z = model.head(h_shifted)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-6)
    assert torch.allclose(z.std(0, unbiased=False), torch.full((3,), finetune.HEAD_LOGIT_STD),
                          rtol=1e-4)
    assert ((z > 0).any(0) & (z < 0).any(0)).all()  # every class has live examples
    w = model.head.weight.detach().clone()
    finetune.init_random_head(model.head, h_shifted, seed=3)
    assert torch.equal(w, model.head.weight)
    finetune.init_random_head(model.head, h_shifted, seed=4)
    assert not torch.equal(w, model.head.weight)


# ------------------------------------------------------------------ 2. LR schedule

def _closed_form(step: int, total: int, warm: int) -> float:
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))


def test_lr_factor_is_warmup_then_clamped_cosine() -> None:
    total, warm = 20, 4
    got = [lr_factor(s, total, warm) for s in range(3 * total)]
    assert got == pytest.approx([_closed_form(s, total, warm) for s in range(3 * total)])
    assert got[warm - 1] == 1.0 and got[total] == 0.0 and got[-1] == 0.0  # never climbs back
    after = got[warm - 1:]
    assert all(b <= a for a, b in zip(after, after[1:], strict=False))
    assert lr_factor(0, 1, 0) == 1.0  # no warm-up, one step: full lr


def test_lr_steps_once_per_optimizer_step_with_two_processes(
        tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """accelerate's prepared scheduler steps ``num_processes`` times per call; simulate N = 2."""
    from accelerate.state import AcceleratorState, PartialState

    spec = resolve_model(str(tiny_encoder_dir))
    texts = (POS + NEG) * 3  # 36 texts, 2 per process × 2 processes → 9 steps per epoch
    y = torch.tensor(([1] * len(POS) + [0] * len(NEG)) * 3)
    cfg = FinetuneConfig(lr=1e-3, epochs=2, batch_size=2, warmup_frac=0.2, progress=False,
                         bf16="off", device="cpu")
    lrs: list[float] = []
    real_step, real_acc = torch.optim.AdamW.step, finetune._accelerator

    def spy(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    states: list[tuple[dict, int]] = []

    def two_processes(device: torch.device, bf16: bool):  # noqa: ANN202
        acc = real_acc(device, bf16)
        # AcceleratorState() re-reads PartialState's dict on every construction: set both
        for shared in (PartialState._shared_state, AcceleratorState._shared_state):
            states.append((shared, shared["num_processes"]))
            shared["num_processes"] = 2  # process-wide singletons: restored below
        return acc

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    monkeypatch.setattr(finetune, "_accelerator", two_processes)
    try:
        finetune_predict(spec, texts, lambda z, i, t: torch.nn.functional.cross_entropy(z, y[i]),
                         texts[:2], 2, cfg, seed=0)
    finally:
        for shared, n in states:
            shared["num_processes"] = n
    total, warm = 18, 3
    assert len(lrs) == total
    assert lrs == pytest.approx([1e-3 * _closed_form(s, total, warm) for s in range(total)])
    assert all(b <= a for a, b in zip(lrs[warm - 1:], lrs[warm:], strict=False))


# ------------------------------------------------------------------ 3. bare hub ids

@pytest.mark.parametrize("name", ["gpt2-large", "gpt2", "distilbert-base-uncased",
                                  "bert-base-cased", "facebook/opt-1.3b"])
def test_bare_and_owner_hub_ids_resolve_offline(name: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    def no_network(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("resolving a model name must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    spec = resolve_model(name)
    assert (spec.name, spec.base, spec.kind) == (name, name, "encoder")
    assert name not in MODELS


@pytest.mark.parametrize("typo,suggested", [("minilm-l7", "minilm-l6"), ("mpnet-bse", "mpnet-base"),
                                             ("MiniLM-L6", "minilm-l6"), ("mpnet", "mpnet-base"),
                                             ("smollm2-135", "smollm2-135m"),
                                             ("tfidf", "tfidf-logreg")])
def test_near_miss_of_a_registry_name_is_an_error_with_a_suggestion(typo: str, suggested: str
                                                                    ) -> None:
    with pytest.raises(W2SError) as err:
        resolve_model(typo)
    msg = str(err.value)
    assert "\n" not in msg and "did you mean" in msg
    assert suggested in msg.split("did you mean", 1)[1].split("?", 1)[0]


def test_malformed_model_names_are_errors() -> None:
    for bad in ("not a model", "-gpt2", "gpt2/", "a/b/c/d e"):
        with pytest.raises(W2SError, match="unknown model"):
            resolve_model(bad)


# ------------------------------------------------------------------ 4. aux hardening on α/S

def test_hardening_follows_dirichlet_mean_not_logit_margin() -> None:
    # softplus evidence: A = (0, 0.5) has margin 0.5 and α/S = 0.538 for class 1;
    # B = (10, 11) has margin 1.0 but α = (11.00005, 12.00002), α/S = 0.5217: order flips.
    z = torch.tensor([[0.0, 0.5], [10.0, 11.0]])
    opts = MethodOptions(evidence="softplus", aux_max=1.0, aux_warmup=0.2)
    alpha = losses.evidence(z, "softplus") + 1
    mean1 = alpha[:, 1] / alpha.sum(-1)
    assert mean1[0] > mean1[1] and (z[0, 1] - z[0, 0]) < (z[1, 1] - z[1, 0])  # they disagree
    t = torch.full((1, 2, 2), 0.5)  # uninformative weak labels, class-1 share 0.5
    lam = torch.ones(1)
    bal = weak_class_balance(t, lam)
    follows_mean = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # A positive, B negative
    follows_margin = follows_mean.flip(-1)
    for family in EDL:
        # tau past the warm-up: a_t = a_max = 1, so the target is the hardened label alone
        got = student_loss(family, z, t, lam, 0.5, opts, 1.0, bal)  # type: ignore[arg-type]
        want = family_loss(family, z, follows_mean, lam, 0.5, opts)  # type: ignore[arg-type]
        wrong = family_loss(family, z, follows_margin, lam, 0.5, opts)  # type: ignore[arg-type]
        assert torch.allclose(got, want) and not torch.allclose(got, wrong)
    h = losses.harden(torch.log(alpha / alpha.sum(-1, keepdim=True)), bal)
    assert torch.equal(h, follows_mean[0])
