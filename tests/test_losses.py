"""Losses against independent expectations (closed forms, torch.distributions, hand cases)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Dirichlet, kl_divergence

from w2s_core.methods import losses

torch.manual_seed(0)


def test_soft_ce_matches_torch_cross_entropy_with_probability_targets():
    z = torch.randn(7, 4)
    p = torch.softmax(torch.randn(7, 4), -1)
    expected = torch.nn.functional.cross_entropy(z, p, reduction="none")
    assert torch.allclose(losses.soft_cross_entropy(z, p), expected, atol=1e-6)


def test_naive_multi_weak_equals_ce_against_weighted_average_label():
    z = torch.randn(2, 9, 3)
    p = torch.softmax(torch.randn(2, 4, 9, 3), -1)
    lam = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    avg = (lam[:, :, None, None] * p).sum(1)
    assert torch.allclose(losses.naive_multi_weak(z, p, lam),
                          losses.soft_cross_entropy(z, avg), atol=1e-6)


def test_edl_nll_is_cross_entropy_against_dirichlet_mean():
    alpha = torch.rand(5, 3) * 4 + 1
    y = torch.softmax(torch.randn(5, 3), -1)
    mean = alpha / alpha.sum(-1, keepdim=True)
    assert torch.allclose(losses.edl_nll(alpha, y), -(y * mean.log()).sum(-1), atol=1e-6)


def test_kl_to_uniform_matches_torch_distributions():
    alpha = torch.rand(6, 5, dtype=torch.float64) * 5 + 0.2
    ref = kl_divergence(Dirichlet(alpha), Dirichlet(torch.ones(5, dtype=torch.float64)))
    assert torch.allclose(losses.kl_dirichlet_uniform(alpha), ref, atol=1e-10)


def test_edl_kl_removes_target_evidence():
    alpha = torch.tensor([[5.0, 2.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    tilde = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)  # α_target set to 1
    ref = kl_divergence(Dirichlet(tilde), Dirichlet(torch.ones(3, dtype=torch.float64)))
    assert torch.allclose(losses.edl_kl(alpha, y), ref)


def test_each_onehot_kl_closed_form_matches_direct():
    alpha = torch.rand(3, 4, 6, dtype=torch.float64) * 6 + 1
    direct = losses.edl_kl(alpha.unsqueeze(-2), torch.eye(6, dtype=torch.float64))
    assert torch.allclose(losses.edl_kl_each_onehot(alpha), direct, atol=1e-10)


def test_bayesian_modes_share_nll_and_differ_only_in_kl():
    z = torch.randn(8, 3, dtype=torch.float64)
    p = torch.softmax(torch.randn(2, 8, 3, dtype=torch.float64), -1)
    lam = torch.tensor([0.5, 0.5], dtype=torch.float64)
    a = losses.bayesian_multi_weak(z, p, lam, 0.0, mode="expected-onehot")
    b = losses.bayesian_multi_weak(z, p, lam, 0.0, mode="soft-y")
    assert torch.allclose(a, b)  # τ = 0 → KL weight 0 → the NLL parts coincide
    a1 = losses.bayesian_multi_weak(z, p, lam, 1.0, mode="expected-onehot")
    b1 = losses.bayesian_multi_weak(z, p, lam, 1.0, mode="soft-y")
    assert not torch.allclose(a1, b1)


def test_expected_onehot_equals_explicit_sum_over_categorical_draws():
    z = torch.randn(5, 3, dtype=torch.float64)
    p = torch.softmax(torch.randn(1, 5, 3, dtype=torch.float64), -1)
    alpha = torch.exp(z) + 1
    explicit = sum(p[0, :, c] * (losses.edl_nll(alpha, torch.eye(3, dtype=torch.float64)[c])
                                 + 0.7 * losses.edl_kl(alpha, torch.eye(3, dtype=torch.float64)[c]))
                   for c in range(3))
    got = losses.bayesian_multi_weak(z, p, torch.ones(1, dtype=torch.float64), 0.7)
    assert torch.allclose(got, explicit)


@pytest.mark.parametrize("kind", ["exp", "softplus", "relu"])
def test_evidence_functions_are_non_negative(kind):
    z = torch.linspace(-30, 30, 101)
    e = losses.evidence(z, kind)
    assert (e >= 0).all() and torch.isfinite(e).all()


def test_aux_warmup_is_linear_then_flat():
    a = [losses.aux_weight(t, 0.5, warmup=0.2) for t in (0.0, 0.05, 0.1, 0.2, 0.6, 1.0)]
    assert a == pytest.approx([0.0, 0.125, 0.25, 0.5, 0.5, 0.5])


def test_aux_legacy_schedule_jumps():
    assert losses.aux_weight(0.1, 0.5, 0.2, "legacy") == pytest.approx(0.05)
    assert losses.aux_weight(0.2, 0.5, 0.2, "legacy") == pytest.approx(0.5)


def test_kl_anneal():
    assert [losses.kl_anneal(t, 2.0) for t in (0.0, 0.5, 1.0, 3.0)] == [0.0, 1.0, 2.0, 2.0]


def test_binary_hardening_matches_class_balance_per_student():
    z = torch.randn(3, 1000, 2)
    bal = torch.tensor([0.1, 0.5, 0.8])
    h = losses.harden(z, bal)
    assert torch.allclose(h[..., 1].mean(-1), bal, atol=2e-3)
    # the positives are exactly the highest-P(1) examples
    p1 = torch.softmax(z[0], -1)[:, 1]
    top = p1.argsort(descending=True)[:100]
    assert h[0, top, 1].sum() == 100


def test_multiclass_hardening_is_argmax_and_aux_mixes():
    z = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])
    p = torch.full((1, 2, 3), 1 / 3)
    mixed = losses.with_aux(p, z, 0.25)
    expected = torch.tensor([[[0.25 + 0.75 / 3, 0.25, 0.25], [0.25, 0.25 + 0.75 / 3, 0.25]]])
    assert torch.allclose(mixed, 0.75 * p + 0.25 * torch.eye(3)[[0, 1]][None])
    assert torch.allclose(mixed, expected)


def test_gradients_flow_and_are_finite_for_extreme_logits():
    z = torch.tensor([[50.0, -50.0]], requires_grad=True)
    p = torch.tensor([[[0.0, 1.0]]])
    loss = losses.bayesian_multi_weak(z, p, torch.ones(1), 1.0).sum()
    loss.backward()
    assert torch.isfinite(z.grad).all() and math.isfinite(loss.item())


@pytest.mark.parametrize("kind", ["exp", "softplus", "relu"])
def test_log_alpha_is_log_of_evidence_plus_one_without_a_clamp(kind):
    """log α = log(g(z) + 1) written out in Python floats, from small logits to an LM's (where
    the clamped ``evidence`` gives every token e^20) and beyond fp32's exp range."""
    z = [-30.0, -2.0, 0.0, 0.7, 19.0, 25.0, 40.0, 95.0]
    g = {"exp": math.exp, "softplus": lambda x: math.log1p(math.exp(x)) if x < 30 else x,
         "relu": lambda x: max(x, 0.0)}[kind]
    want = [math.log(g(x) + 1.0) for x in z]
    got = losses.log_alpha(torch.tensor(z, dtype=torch.float64), kind).tolist()
    assert got == pytest.approx(want, rel=1e-12, abs=1e-14)


def test_edl_predictive_is_the_dirichlet_mean_at_any_logit():
    """The classification read-outs (α/S, α, log α/S) at logits above the e^20 clamp: α/S and
    its log from float64 α = e^z + 1 (the clamped α ties every class above 20 at 1/C)."""
    from w2s_core.methods.registry import MethodOptions, log_predictive, predictive

    z = torch.tensor([[30.0, 25.0, 0.0], [1.0, -1.0, 0.5], [80.0, 85.0, 10.0]])
    alpha = z.double().exp() + 1.0
    mean = alpha / alpha.sum(-1, keepdim=True)
    probs, a = predictive("edl-onehot", z, MethodOptions())
    assert torch.allclose(probs.double(), mean, rtol=1e-5) and a is not None
    assert torch.allclose(a, alpha, rtol=1e-6)  # log α is fp32, exponentiated in float64
    lp = log_predictive("edl-onehot", z, MethodOptions())
    assert torch.allclose(lp.double(), alpha.log() - alpha.sum(-1, keepdim=True).log(),
                          atol=1e-4)
    assert probs.argmax(-1).tolist() == [0, 0, 1]  # the clamp tied row 2 (both above 20)


@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])
def test_kl_uniform_lower_bound_holds_and_is_tight(scale):
    """The Stirling bound under KL(Dir(α̃) ‖ Dir(1)) from torch.distributions (float64) for both
    EDL targets' α̃ (one entry of α set to 1; y + (1 − y)α), and within 0.582·C + 1 nats of
    KL(Dir(α) ‖ Dir(1)) once taken at S itself."""
    g = torch.Generator().manual_seed(int(scale * 10))
    c = 40
    for _ in range(5):
        alpha = torch.exp(scale * torch.randn(c, generator=g, dtype=torch.float64)).clamp(
            max=math.exp(20.0)) + 1.0
        bound = float(losses.kl_uniform_lower_bound(alpha.log()))
        y = torch.softmax(torch.randn(c, generator=g, dtype=torch.float64), -1)
        tilde = [y + (1 - y) * alpha] + [alpha.clone().index_fill_(0, torch.tensor([j]), 1.0)
                                         for j in range(c)]
        for a in tilde:
            kl = float(kl_divergence(Dirichlet(a), Dirichlet(torch.ones_like(a))))
            assert bound <= kl + 1e-9
        full = float(kl_divergence(Dirichlet(alpha), Dirichlet(torch.ones_like(alpha))))
        top = float(alpha.max())
        # the bound at S itself (no entry removed) is within the Stirling slack of the KL
        tight = bound + (c - 0.5) * (math.log(float(alpha.sum())) - math.log(
            float(alpha.sum()) - top + 1.0))
        assert 0.0 <= full - tight <= 0.582 * c + 1.0
