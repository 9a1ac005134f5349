"""Generation losses against independent computations: torch.distributions, loops, hand cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Dirichlet, kl_divergence

from w2s_core.errors import W2SError
from w2s_core.methods import gen_losses, losses


def _kl_uniform(alpha: list[float]) -> float:
    a = torch.tensor(alpha, dtype=torch.float64)
    return float(kl_divergence(Dirichlet(a), Dirichlet(torch.ones_like(a))))


def _edl_position(alpha: list[float], y: list[float], w: float, kl_target: str) -> float:
    """One position's EDL loss written out: NLL by a loop, KL by torch.distributions."""
    s = sum(alpha)
    nll = sum(yv * (math.log(s) - math.log(av)) for av, yv in zip(alpha, y, strict=True))
    if kl_target == "soft-y":
        kl = _kl_uniform([yv + (1 - yv) * av for av, yv in zip(alpha, y, strict=True)])
    else:  # Σ_v y_v KL(Dir(α with α_v := 1) ‖ Dir(1))
        kl = sum(yv * _kl_uniform([1.0 if j == v else a for j, a in enumerate(alpha)])
                 for v, yv in enumerate(y))
    return nll + w * kl


@pytest.mark.parametrize("kl_target", ["expected-onehot", "soft-y"])
def test_token_edl_full_support_matches_loop_and_torch_dirichlet(kl_target: str):
    gen = torch.Generator().manual_seed(0)
    b, t, v = 2, 4, 5
    z = torch.randn(b, t, v, generator=gen, dtype=torch.float64)
    y = torch.softmax(torch.randn(b, t, v, generator=gen, dtype=torch.float64) * 2, -1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]])
    tau, scale = 0.5, 0.3
    got = gen_losses.token_edl_loss(z, y, mask, tau, kl_scale=scale, kl_target=kl_target)
    for i in range(b):
        per = [_edl_position((z[i, j].exp() + 1).tolist(), y[i, j].tolist(), tau * scale,
                             kl_target) for j in range(t) if mask[i, j]]
        assert math.isclose(float(got[i]), sum(per) / len(per), rel_tol=1e-9)


def test_token_edl_restricted_support_hand_case():
    z = torch.tensor([[[2.0, -1.0, 0.5, 1.0, -0.5]]], dtype=torch.float64)  # (1, 1, 5)
    y = torch.tensor([[[0.1, 0.05, 0.6, 0.2, 0.05]]], dtype=torch.float64)
    mask = torch.ones(1, 1)
    got = gen_losses.token_edl_loss(z, y, mask, tau=1.0, kl_scale=0.5, support=2)
    e = z[0, 0].exp().tolist()
    # top-2 of the target: token 2 (0.6), token 3 (0.2); "other" = tokens 0, 1, 4 summed
    alpha = [e[2] + 1, e[3] + 1, e[0] + e[1] + e[4] + 1]
    expected = _edl_position(alpha, [0.6, 0.2, 0.2], 0.5, "expected-onehot")
    assert math.isclose(float(got[0]), expected, rel_tol=1e-9)
    with pytest.raises(W2SError, match="restricted support"):
        gen_losses.token_edl_loss(z, y, mask, tau=1.0, support=5)


def test_token_edl_softplus_restricted_other_bucket_is_softplus_of_logsumexp():
    z = torch.tensor([[[0.3, -2.0, 1.5, 0.0]]], dtype=torch.float64)
    y = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]], dtype=torch.float64)
    got = gen_losses.token_edl_loss(z, y, torch.ones(1, 1), tau=0.0, evidence="softplus",
                                    support=1)
    other = math.log(math.exp(0.3) + math.exp(-2.0) + math.exp(0.0))
    a_top, a_other = math.log1p(math.exp(1.5)) + 1, math.log1p(math.exp(other)) + 1
    assert math.isclose(float(got[0]), math.log(a_top + a_other) - math.log(a_top), rel_tol=1e-9)


def test_token_edl_mask_ignores_masked_positions_and_empty_sequence_is_zero():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 6, 7, generator=gen)
    y = torch.softmax(torch.randn(3, 6, 7, generator=gen), -1)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    base = gen_losses.token_edl_loss(z, y, mask, tau=0.4, kl_scale=1e-2)
    z2 = z.clone()
    z2[mask == 0] = torch.randn(int((mask == 0).sum()), 7, generator=gen) * 10
    assert torch.allclose(gen_losses.token_edl_loss(z2, y, mask, tau=0.4, kl_scale=1e-2), base)
    assert base[2] == 0
    per_pos = gen_losses.token_edl_loss(z.reshape(18, 1, 7), y.reshape(18, 1, 7),
                                        torch.ones(18, 1), tau=0.4, kl_scale=1e-2).reshape(3, 6)
    assert torch.allclose(base[0], per_pos[0, [0, 1, 3]].mean())
    assert torch.allclose(base[1], per_pos[1].mean())
    with pytest.raises(W2SError, match="shapes differ"):
        gen_losses.token_edl_loss(z, y, mask[:, :5], tau=0.4)


def _h(pw: float, pl: float, rw: float, rl: float, beta: float) -> float:
    return beta * ((pw - rw) - (pl - rl))


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_dpo_eps_zero_is_plain_dpo_and_constant_eps_hand_values():
    pw, pl = torch.tensor([-3.0, -10.0]), torch.tensor([-5.0, -4.0])
    rw, rl = torch.tensor([-4.0, -9.0]), torch.tensor([-4.5, -4.5])
    hs = [_h(-3, -5, -4, -4.5, 0.5), _h(-10, -4, -9, -4.5, 0.5)]  # 0.75, −0.75
    got = gen_losses.dpo_loss(pw, pl, rw, rl, beta=0.5, eps=0.0)
    assert torch.allclose(got, torch.tensor([-_log_sigmoid(h) for h in hs]))
    got = gen_losses.dpo_loss(pw, pl, rw, rl, beta=0.5, eps=0.1)
    expected = [-0.9 * _log_sigmoid(h) - 0.1 * _log_sigmoid(-h) for h in hs]
    assert torch.allclose(got, torch.tensor(expected))
    assert math.isclose(expected[0], 0.9 * math.log1p(math.exp(-0.75))
                        + 0.1 * math.log1p(math.exp(0.75)), rel_tol=1e-12)


def test_dpo_per_pair_eps_and_stability():
    pw, pl = torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-2.0, -1.0, -3.5])
    zero = torch.zeros(3)
    eps = torch.tensor([0.0, 0.25, 0.5])
    got = gen_losses.dpo_loss(pw, pl, zero, zero, beta=2.0, eps=eps)
    hs = [2.0, -2.0, 1.0]
    expected = [-(1 - e) * _log_sigmoid(h) - e * _log_sigmoid(-h)
                for h, e in zip(hs, eps.tolist(), strict=True)]
    assert torch.allclose(got, torch.tensor(expected))
    # ε = ½, h = 1: ½[log(1 + e^−1) + log(1 + e)] = log(1 + e^−1) + ½
    assert math.isclose(float(got[2]), math.log1p(math.exp(-1)) + 0.5, rel_tol=1e-6)
    big = gen_losses.dpo_loss(torch.tensor([500.0]), torch.tensor([-500.0]), torch.zeros(1),
                              torch.zeros(1), beta=5.0, eps=0.1)
    assert torch.isfinite(big).all() and math.isclose(float(big[0]), 0.1 * 5000, rel_tol=1e-6)
    with pytest.raises(W2SError, match="ε"):
        gen_losses.dpo_loss(pw, pl, zero, zero, beta=1.0, eps=torch.tensor([0.0, 1.5, 0.0]))
    with pytest.raises(W2SError, match="β"):
        gen_losses.dpo_loss(pw, pl, zero, zero, beta=0.0)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_dpo_gradient_raising_chosen_logprob_lowers_loss_when_eps_below_half(eps: float):
    pw = torch.tensor([-2.0, 3.0, -7.0], requires_grad=True)
    pl = torch.tensor([-1.0, -3.0, -6.0], requires_grad=True)
    ref = torch.tensor([-1.5, -1.5, -1.5])
    # pair 1 has h = 6 > log((1−ε)/ε): past cDPO's optimum only when ε > 0, so check pairs 0, 2
    gen_losses.dpo_loss(pw, pl, ref, ref, beta=1.0, eps=eps).sum().backward()
    assert pw.grad is not None and pl.grad is not None
    assert torch.all(pw.grad[[0, 2]] < 0) and torch.all(pl.grad[[0, 2]] > 0)
    if eps > 0:  # cDPO pushes back once σ(h) > 1 − ε
        assert pw.grad[1] > 0


def test_sequence_logprob_matches_manual_gather_with_ignored_labels():
    gen = torch.Generator().manual_seed(4)
    b, t, v = 2, 5, 9
    logits = torch.randn(b, t, v, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, v, (b, t), generator=gen)
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    labels[0, 0], labels[0, 4] = -100, -100  # masked prompt / pad labels are never read
    got = gen_losses.sequence_logprob(logits, labels, mask)
    for i in range(b):
        total = 0.0
        for j in range(t):
            if mask[i, j]:
                row = logits[i, j]
                total += float(row[labels[i, j]] - torch.log(torch.exp(row).sum()))
        assert math.isclose(float(got[i]), total, rel_tol=1e-12)
    half = gen_losses.sequence_logprob(logits.to(torch.bfloat16), labels, mask)
    assert half.dtype == torch.float32 and torch.allclose(half.double(), got, atol=0.1)
    with pytest.raises(W2SError, match="shapes differ"):
        gen_losses.sequence_logprob(logits, labels[:, :4], mask)
    # the same from one row of logits per distinct state, read through pick
    flat = logits.flatten(0, 1)  # (b·t, V) states, then shuffled with one duplicated
    order = torch.tensor([3, 7, 0, 9, 1, 4, 2, 8, 5, 6, 3])
    where = {int(o): j for j, o in enumerate(order)}
    pick = torch.tensor([where[i] for i in range(b * t)]).view(b, t)
    by_state = gen_losses.sequence_logprob(flat[order], labels, mask, pick)
    torch.testing.assert_close(by_state, got, rtol=1e-12, atol=1e-12)
    with pytest.raises(W2SError, match="shapes differ"):
        gen_losses.sequence_logprob(flat[order], labels, mask, pick[:, :4])


def _lm_scale_logits(v: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits as a pretrained LM gives them (SmolLM2-135M on ATIS targets: the target's logit
    is 25–37 at 80 % of positions, far above the e^20 evidence clamp) and a soft target whose
    label token is not the student's argmax."""
    gen = torch.Generator().manual_seed(3)
    z = 30.0 + 3.0 * torch.randn(2, 3, v, generator=gen, dtype=torch.float64)
    y = torch.softmax(torch.randn(2, 3, v, generator=gen, dtype=torch.float64), -1) * 0.2
    label = (z.argmax(-1) + 1) % v
    y.scatter_add_(-1, label.unsqueeze(-1), torch.full((2, 3, 1), 0.8, dtype=torch.float64))
    return z, y


@pytest.mark.parametrize("support", [None, 4])
def test_token_edl_nll_is_exact_and_trains_at_lm_scale_logits(support: int | None):
    """At an LM's logits the NLL (kl_scale 0) equals the loop over α = e^z + 1 (Python floats,
    no clamp) and its gradient is the closed form ∂/∂z_v = Σ_c y_c (e_v/S − [v = c] e_v/α_v).
    Revision 1 clamped the evidence at e^20: every token here got α = e^20 + 1, so the loss
    was log V for any z and its gradient 0 — the student learnt nothing from it."""
    z, y = _lm_scale_logits()
    z.requires_grad_(True)
    mask = torch.ones(2, 3)
    loss = gen_losses.token_edl_loss(z, y, mask, tau=1.0, kl_scale=0.0, support=support)
    loss.sum().backward()
    for i in range(2):
        per = []
        for t in range(3):
            zz, yy = z[i, t].detach().tolist(), y[i, t].tolist()
            if support is not None:  # top-k of the target + the rest's evidence summed
                top = sorted(range(len(yy)), key=lambda j: -yy[j])[:support]
                rest = [j for j in range(len(yy)) if j not in top]
                e = [math.exp(zz[j]) for j in top] + [sum(math.exp(zz[j]) for j in rest)]
                yy = [yy[j] for j in top] + [1.0 - sum(yy[j] for j in top)]
            else:
                e = [math.exp(x) for x in zz]
            per.append(_edl_position([x + 1.0 for x in e], yy, 0.0, "expected-onehot"))
        assert math.isclose(float(loss[i].detach()), sum(per) / 3, rel_tol=1e-9)
    if support is None:
        e = z.detach().exp()
        s = (e + 1).sum(-1, keepdim=True)
        want = (e / s - y * e / (e + 1)) / 3  # Σ_c y_c = 1; each sequence averages 3 positions
        assert torch.allclose(z.grad, want, rtol=1e-9, atol=1e-12)
        # Σe ≫ V: the NLL is the soft cross-entropy, and the label's logit is pushed up hard
        ce = -(y * torch.log_softmax(z.detach(), -1)).sum(-1).mean(-1)
        assert torch.allclose(loss.detach(), ce, rtol=1e-12)
        label = y.argmax(-1, keepdim=True)
        assert (z.grad.gather(-1, label) < -0.1).all()


def test_token_kl_is_float64_exact_and_clamped_at_lm_scale_logits():
    """Moderate logits: the fp32 loss's KL matches torch.distributions in float64. An LM's
    logits: the per-position KL (~10^5 and more) is held at KL_MAX, so the loss is the NLL plus
    kl_scale·KL_MAX at each position and its gradient is the NLL's alone (the fp32 KL there
    was rounding noise of ±4·10^6 nats, and its gradient ~e^z per token)."""
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(1, 2, 6, generator=gen)
    y = torch.softmax(torch.randn(1, 2, 6, generator=gen), -1)
    got = gen_losses.token_edl_loss(z, y, torch.ones(1, 2), tau=1.0, kl_scale=0.3)
    per = [_edl_position((z[0, j].double().exp() + 1).tolist(), y[0, j].double().tolist(), 0.3,
                         "expected-onehot") for j in range(2)]
    assert math.isclose(float(got[0]), sum(per) / 2, rel_tol=1e-5)

    # an LM-like spread of logits over a 4,096-token vocabulary: KL(Dir(α̃) ‖ Dir(1)) ≈ 5·10^4
    zl = 10.0 + 8.0 * torch.randn(1, 3, 4096, generator=gen)
    yl = torch.softmax(torch.randn(1, 3, 4096, generator=gen), -1)
    alpha = torch.exp(zl.double().clamp(max=20.0)) + 1.0
    exact = [float(kl_divergence(Dirichlet(x), Dirichlet(torch.ones_like(x))))
             for x in yl[0].double() + (1 - yl[0].double()) * alpha[0]]
    assert min(exact) > gen_losses.KL_MAX
    mask, w = torch.ones(1, 3), 1e-4
    a = zl.clone().requires_grad_(True)
    with_kl = gen_losses.token_edl_loss(a, yl, mask, tau=1.0, kl_scale=w, kl_target="soft-y")
    with_kl.sum().backward()
    b = zl.clone().requires_grad_(True)
    nll = gen_losses.token_edl_loss(b, yl, mask, tau=1.0, kl_scale=0.0)
    nll.sum().backward()
    assert torch.allclose(with_kl, nll + w * gen_losses.KL_MAX, rtol=1e-6)
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("kl_target", ["expected-onehot", "soft-y"])
def test_token_kl_skips_only_positions_the_bound_proves_clamped(kl_target: str):
    """Positions of small and of LM-scale logits side by side: every position's loss is the
    NLL plus kl_scale·min(KL, KL_MAX), KL from torch.distributions in float64 on the clamped
    evidence, whichever way ``_token_kl`` got it; masked positions score nothing."""
    gen = torch.Generator().manual_seed(11)
    v = 2048
    z = torch.randn(1, 4, v, generator=gen)
    z[0, 1] = 10.0 + 8.0 * torch.randn(v, generator=gen)  # KL ~ 2·10^4: the bound decides
    z[0, 3] = 10.0 + 8.0 * torch.randn(v, generator=gen)  # masked out
    y = torch.softmax(torch.randn(1, 4, v, generator=gen), -1)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = 1e-3
    got = gen_losses.token_edl_loss(z, y, mask, tau=1.0, kl_scale=w, kl_target=kl_target)
    nll = gen_losses.token_edl_loss(z, y, mask, tau=1.0, kl_scale=0.0)
    kls = []
    for j in range(3):
        alpha = torch.exp(z[0, j].double().clamp(max=20.0)) + 1.0
        yd = y[0, j].double()
        if kl_target == "soft-y":
            kls.append(_kl_uniform((yd + (1 - yd) * alpha).tolist()))
        else:  # the label's evidence removed, weighted by y: 2,048 Dirichlet KLs
            s = losses.edl_kl_each_onehot(alpha[None])[0]
            kls.append(float((yd * s).sum()))
    assert kls[1] > gen_losses.KL_MAX > max(kls[0], kls[2])
    want = float(nll[0]) + w * sum(min(k, gen_losses.KL_MAX) for k in kls) / 3
    assert math.isclose(float(got[0]), want, rel_tol=1e-5)
