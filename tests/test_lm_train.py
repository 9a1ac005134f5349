"""Generation student training and DPO on tiny random causal LMs with two tokenizers.

Expectations come from outside the trainer: HF's own forward/loss on full sequences, the soft
target written out token by token, closed forms (DPO's loss is ln 2 at the start; cDPO's optimum
sits at σ(h) = 1 − ε; LoRA's adapter parameter count).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from checks import decoder_tokens, one_line_error

from w2s_core.data.prompts import build_prompt, encode, format_slots
from w2s_core.errors import W2SError
from w2s_core.methods import bridge, gen_losses, losses
from w2s_core.models.causal import CausalLM
from w2s_core.models.features import cpu_has_fast_bf16
from w2s_core.training import lm_train
from w2s_core.training.lm_dpo import DPOConfig, pair_table, train_dpo
from w2s_core.training.lm_loop import shares_prompts
from w2s_core.training.lm_train import (
    GenExample,
    LabelSeq,
    LMTrainConfig,
    LossSpec,
    sequence_losses,
    token_log_q,
    token_targets,
    train_lm,
)

SENTS = ["fly to boston", "book a table in paris", "play jazz", "wake me at six"]
SLOTS = [[("city", "boston")], [("city", "paris")], [("genre", "jazz")], [("time", "six")]]
WRONG = [[("city", "paris")], [("genre", "boston")], [("time", "jazz")], []]
PROMPTS = [build_prompt(s) for s in SENTS]
TARGETS = [format_slots(p) for p in SLOTS]
OTHERS = [format_slots(p) for p in WRONG]

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _byte_bpe(texts: list[str]):  # noqa: ANN202 - transformers type
    """ByteLevel BPE with an EOS and no pad token (ensure_pad falls back to EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>")


@pytest.fixture(scope="module")
def bases() -> dict[str, CausalLM]:
    from transformers import LlamaConfig, LlamaForCausalLM

    from w2s_core.models.scratch_lm import build_scratch_lm

    texts = PROMPTS + TARGETS + OTHERS
    char = build_scratch_lm("char", texts, layers=2, hidden=32, heads=4, seed=0)
    tok = _byte_bpe(texts)
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=256, tie_word_embeddings=False)
    return {"char": char, "bpe": CausalLM("bpe", LlamaForCausalLM(cfg).eval(), tok)}


def fresh(bases: dict[str, CausalLM], kind: str) -> CausalLM:
    lm = bases[kind]
    return CausalLM(lm.name, copy.deepcopy(lm.model), lm.tokenizer)


def word_logps(text: str, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    return (-torch.rand(len(text.split()), generator=g) * 2).tolist()


def examples(soft: bool, n: int = 4) -> list[GenExample]:
    return [GenExample(PROMPTS[i], [LabelSeq(TARGETS[i], word_logps(TARGETS[i], i)
                                             if soft else None)], [1.0]) for i in range(n)]


def full_ids(lm: CausalLM, prompt: str, target: str) -> tuple[list[int], int]:
    """prompt + target + EOS straight from the tokenizer, and where the target starts."""
    p = lm.tokenizer(prompt)["input_ids"]
    t = lm.tokenizer(target, add_special_tokens=False)["input_ids"] + [lm.tokenizer.eos_token_id]
    return p + t, len(p)


def target_logits(lm: CausalLM, prompt: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """HF full forward; (T, V) logits predicting each target token, and the (T,) labels."""
    ids, s = full_ids(lm, prompt, target)
    with torch.no_grad():
        z = lm.model(torch.tensor([ids])).logits[0].float()
    return z[s - 1:-1], torch.tensor(ids[s:])


def label_logp(lm: CausalLM, prompt: str, target: str) -> float:
    z, y = target_logits(lm, prompt, target)
    return float(torch.log_softmax(z, -1).gather(-1, y[:, None]).sum())


def one_step(**kw: object) -> LMTrainConfig:
    return LMTrainConfig(epochs=1, batch_size=1, warmup=0.0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("tok", ["char", "bpe"])
@pytest.mark.parametrize("kind", ["ce", "soft", "edl"])
def test_each_loss_lowers_itself_and_raises_the_label_logprob(bases, tok: str, kind: str):
    lm = fresh(bases, tok)
    before = sum(label_logp(lm, PROMPTS[i], TARGETS[i]) for i in range(4))
    cfg = LMTrainConfig(epochs=15, lr=5e-3, batch_size=4, warmup=0.0)
    stats = train_lm(lm, examples(kind != "ce"), LossSpec(kind=kind, kl_scale=0.0), cfg, 0)
    after = sum(label_logp(lm, PROMPTS[i], TARGETS[i]) for i in range(4))
    assert stats["final_loss"] < 0.9 * stats["first_loss"]
    assert after > before + 30.0  # summed over 4 labels of ~20 tokens, from ≈ −260
    assert stats["steps"] == 15 and stats["lora"] is False
    assert stats["precision"] == ("bf16" if cpu_has_fast_bf16() else "fp32")
    n_tokens = sum(len(full_ids(lm, PROMPTS[i], TARGETS[i])[0]) for i in range(4))
    assert stats["train_tokens"] == 15 * n_tokens
    assert stats["tokens_per_s"] == pytest.approx(n_tokens * 15 / stats["seconds"])
    assert stats["truncated"] == {"prompt": 0, "target": 0}
    assert not lm.model.training


@pytest.mark.parametrize("tok", ["char", "bpe"])
def test_ce_loss_is_hf_loss_and_lambda_weights_combine_sequences(bases, tok: str):
    lm = fresh(bases, tok)

    def hf_loss(target: str) -> float:  # HF's own shifted CE, prompt masked with −100
        ids, s = full_ids(lm, PROMPTS[0], target)
        labels = torch.tensor([[-100] * s + ids[s:]])
        with torch.no_grad():
            return float(lm.model(torch.tensor([ids]), labels=labels).loss)

    ex = [GenExample(PROMPTS[0], [LabelSeq(TARGETS[0]), LabelSeq(OTHERS[0])], [0.3, 0.7])]
    stats = train_lm(fresh(bases, tok), ex, LossSpec("ce"), one_step(), 0)
    expect = 0.3 * hf_loss(TARGETS[0]) + 0.7 * hf_loss(OTHERS[0])
    assert stats["first_loss"] == pytest.approx(expect, rel=1e-5)


@pytest.mark.parametrize("tok", ["char", "bpe"])
def test_soft_loss_equals_the_bridge_target_written_out(bases, tok: str):
    """y_t = q_t·onehot + (1−q_t)·p_rest, q_t = P(word)^ω_t, ω = softmax(−m/T) over the word's
    tokens (whitespace tokens belong to the next word, EOS has q = 1), token-mean soft CE."""
    lm, temp = fresh(bases, tok), 0.5
    target, wl = TARGETS[1], word_logps(TARGETS[1], 7)
    z, labels = target_logits(lm, PROMPTS[1], target)
    p = torch.softmax(z.double(), -1)
    enc = lm.tokenizer(target, add_special_tokens=False, return_offsets_mapping=True)
    words = []
    for a, _ in enc["offset_mapping"]:  # a token's word = spaces before its first non-space
        first = a + len(target[a:]) - len(target[a:].lstrip())
        words.append(target[:first].count(" "))
    m = p.max(-1).values
    total = 0.0
    for t in range(len(labels)):
        if t < len(words):
            same = [u for u in range(len(words)) if words[u] == words[t]]
            omega = math.exp(-m[t] / temp) / sum(math.exp(-m[u] / temp) for u in same)
            q = math.exp(omega * wl[words[t]])
        else:
            q = 1.0  # EOS
        rest = p[t].clone()
        rest[labels[t]] = 0
        y = (1 - q) * rest / rest.sum()
        y[labels[t]] = q
        total += float(-(y * p[t].log()).sum())
    ex = [GenExample(PROMPTS[1], [LabelSeq(target, wl)], [1.0])]
    stats = train_lm(lm, ex, LossSpec("soft", split="softmax", temperature=temp), one_step(), 0)
    assert stats["first_loss"] == pytest.approx(total / len(labels), rel=1e-4)


def test_soft_with_hard_labels_or_certain_words_equals_ce(bases):
    ce = train_lm(fresh(bases, "bpe"), examples(False), LossSpec("ce"), one_step(), 0)
    hard = train_lm(fresh(bases, "bpe"), examples(False), LossSpec("soft"), one_step(), 0)
    sure = [GenExample(PROMPTS[i], [LabelSeq(TARGETS[i], [0.0] * len(TARGETS[i].split()))],
                       [1.0]) for i in range(4)]
    certain = train_lm(fresh(bases, "bpe"), sure, LossSpec("soft"), one_step(), 0)
    assert hard["first_loss"] == pytest.approx(ce["first_loss"], rel=1e-6)
    assert certain["first_loss"] == pytest.approx(ce["first_loss"], rel=1e-6)


def _record_log_q(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The log q of every soft target built: dense (``soft_targets``: live soft, EDL) or in
    closed form (``fixed_target_ce``: detached / frozen soft)."""
    seen: list[torch.Tensor] = []
    real, closed = bridge.soft_targets, bridge.fixed_target_ce

    def spy(labels, log_q, logp, mode):  # noqa: ANN001, ANN202
        seen.append(log_q.detach().clone())
        return real(labels, log_q, logp, mode)

    def spy_closed(logp, pick, labels, log_q, values=None):  # noqa: ANN001, ANN202
        seen.append(log_q.detach().clone())
        return closed(logp, pick, labels, log_q, values)

    monkeypatch.setattr(bridge, "soft_targets", spy)
    monkeypatch.setattr(bridge, "fixed_target_ce", spy_closed)
    return seen


@pytest.mark.parametrize("kind", ["soft", "edl"])
def test_frozen_targets_stay_put_while_detached_ones_follow_the_student(bases, monkeypatch,
                                                                        kind: str):
    ex = examples(True, n=1)
    cfg = LMTrainConfig(epochs=4, lr=3e-2, batch_size=1, warmup=0.0)
    seen = _record_log_q(monkeypatch)
    train_lm(fresh(bases, "char"), ex, LossSpec(kind, target_mode="frozen"), cfg, 0)
    frozen = list(seen)
    seen.clear()
    train_lm(fresh(bases, "char"), ex, LossSpec(kind, target_mode="detached"), cfg, 0)
    assert len(frozen) == len(seen) == 4
    assert all(torch.equal(f, frozen[0]) for f in frozen)
    torch.testing.assert_close(frozen[0], seen[0], rtol=1e-5, atol=1e-6)  # same initial student
    assert (seen[-1] - seen[0]).abs().max() > 1e-3


def test_live_targets_pass_gradient_only_where_the_target_depends_on_the_student(bases):
    """Same loss value either way; the update differs for soft labels (gradient through q and
    p_rest) but not for hard ones (q = 1: the target is a constant one-hot)."""
    def run(soft: bool, mode: str) -> tuple[float, dict[str, torch.Tensor]]:
        lm = fresh(bases, "bpe")
        stats = train_lm(lm, examples(soft), LossSpec("soft", target_mode=mode),
                         LMTrainConfig(epochs=1, batch_size=4, lr=1e-2, warmup=0.0), 0)
        return stats["first_loss"], lm.model.state_dict()

    for soft in (True, False):
        (l_det, w_det), (l_live, w_live) = run(soft, "detached"), run(soft, "live")
        # live reports KL(y ‖ p) = CE − H(y), detached the CE (same gradient for a fixed y);
        # a one-hot target has H(y) = 0
        assert (l_live < l_det - 1e-3) if soft else l_live == pytest.approx(l_det, rel=1e-6)
        diff = max(float((w_det[k] - w_live[k]).abs().max()) for k in w_det)
        assert (diff > 1e-6) if soft else (diff == 0.0)


def test_live_soft_loss_is_the_kl_to_the_moving_target_and_its_gradient():
    """METHOD.md §3: the soft loss is KL(y ‖ p). With live targets y depends on the student,
    so KL's gradient is not cross-entropy's (they differ by −∇H(y)); checked against torch's
    kl_div on a target written out by hand, value and gradient in the logits."""
    g = torch.Generator().manual_seed(3)
    r, t, v = 2, 3, 6
    z0 = torch.randn(r, t, v, generator=g) * 2
    labels = torch.randint(0, v, (r, t), generator=g)
    log_q = -torch.rand(r, t, generator=g)
    tmask = torch.tensor([[True, True, True], [True, True, False]])
    b = {"labels": labels, "tmask": tmask, "log_q": log_q, "pick": torch.arange(r * t).view(r, t)}
    zs = z0.flatten(0, 1).clone().requires_grad_(True)
    got = sequence_losses(zs, b, LossSpec("soft", target_mode="live"), 0.5)
    got.sum().backward()

    hot = torch.nn.functional.one_hot(labels, v).float()
    q = log_q.exp().unsqueeze(-1)

    def target(z: torch.Tensor) -> torch.Tensor:  # q on the label, 1 − q spread as p elsewhere
        p = torch.softmax(z, -1)
        return q * hot + (1 - q) * p * (1 - hot) / (1 - (p * hot).sum(-1, keepdim=True))

    z = z0.clone().requires_grad_(True)
    kl = torch.nn.functional.kl_div(torch.log_softmax(z, -1), target(z),
                                    reduction="none").sum(-1)
    m = tmask.float()
    expect = (kl * m).sum(-1) / m.sum(-1)
    expect.sum().backward()
    torch.testing.assert_close(got.detach(), expect.detach())
    torch.testing.assert_close(zs.grad.view(r, t, v), z.grad)
    # and it is not cross-entropy's gradient (the revision-1 loss)
    z.grad = None
    ce = (-(target(z) * torch.log_softmax(z, -1)).sum(-1) * m).sum(-1) / m.sum(-1)
    ce.sum().backward()
    assert (z.grad - zs.grad.view(r, t, v)).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["ce", "soft", "edl"])
def test_aux_mixes_in_the_students_argmax_with_the_ramped_weight(kind: str):
    g = torch.Generator().manual_seed(0)
    r, t, v = 2, 3, 7
    z = torch.randn(r, t, v, generator=g) * 3
    labels = torch.randint(0, v, (r, t), generator=g)
    log_q = -torch.rand(r, t, generator=g)
    tmask = torch.ones(r, t, dtype=torch.bool)
    b = {"labels": labels, "tmask": tmask, "log_q": log_q, "pick": torch.arange(r * t).view(r, t)}
    zs = z.flatten(0, 1)  # one state per (row, position): sequence_losses reads them via pick
    spec = LossSpec(kind, aux_max=0.6, aux_warmup=0.2, kl_scale=0.0, evidence="exp")
    logp = torch.log_softmax(z, -1)
    own = torch.nn.functional.one_hot(z.argmax(-1), v).float()  # exp evidence is monotone
    for tau in (0.05, 0.5):
        a = 0.6 * min(tau / 0.2, 1.0)
        if kind == "ce":
            hard = torch.nn.functional.one_hot(labels, v).float()
            y = (1 - a) * hard + a * own
            expect = -(y * logp).sum(-1).mean(-1)
            torch.testing.assert_close(sequence_losses(zs, b, spec, tau), expect)
            continue
        base = bridge.soft_targets(labels, log_q, logp)
        got = token_targets(z, logp, labels, log_q, spec, tau)
        torch.testing.assert_close(got, (1 - a) * base + a * own)
        if kind == "soft":
            expect = losses.soft_cross_entropy(z, (1 - a) * base + a * own).mean(-1)
            torch.testing.assert_close(sequence_losses(zs, b, spec, tau), expect)


def test_edl_aux_hardens_the_students_argmax_at_lm_scale_logits():
    """At an LM's logits (most above the e^20 evidence clamp) the aux term must harden the
    student's true argmax; argmax of the clamped evidence returned the lowest token id among
    the thousands tied at e^20 (revision 1)."""
    g = torch.Generator().manual_seed(1)
    r, t, v = 2, 3, 50
    z = 30.0 + 3.0 * torch.randn(r, t, v, generator=g)
    labels = torch.randint(0, v, (r, t), generator=g)
    log_q = -torch.rand(r, t, generator=g)
    logp = torch.log_softmax(z, -1)
    spec = LossSpec("edl", aux_max=0.6, aux_warmup=0.2, kl_scale=0.0)
    own = torch.nn.functional.one_hot(z.argmax(-1), v).float()
    assert (z.argmax(-1) != (z > 20).float().argmax(-1)).any()  # the clamp's pick differs
    base = bridge.soft_targets(labels, log_q, logp)
    torch.testing.assert_close(token_targets(z, logp, labels, log_q, spec, 0.5),
                               0.4 * base + 0.6 * own)


@pytest.mark.parametrize(("scale", "support", "kl_scale", "on_states"),
                         [(30.0, None, 1e-3, True), (1.0, None, 0.0, True),
                          (1.0, None, 1e-3, False), (30.0, 4, 1e-3, False)])
@pytest.mark.parametrize("mode", ["detached", "frozen"])
def test_token_edl_on_states_equals_the_dense_loss(monkeypatch, scale: float,
                                                   support: int | None, kl_scale: float,
                                                   on_states: bool, mode: str):
    """Token EDL with fixed targets takes the N-state path (no (R, T, V) target) exactly when
    its KL has no gradient: full support and either every position's KL provably at KL_MAX, as
    at an LM's logits (scale 30), or no KL (at logits of scale 1 α/S is far from softmax(z),
    so EDL's NLL is not cross-entropy there). Its loss and gradient equal
    ``gen_losses.token_edl_loss`` on the dense targets ``token_targets`` builds, with aux on.
    A KL below its clamp, or a restricted support (its top-k follows each row's target), takes
    the dense path."""
    g = torch.Generator().manual_seed(3)
    n, v = 5, 2048  # a vocabulary large enough for the KL to pass KL_MAX = 1e4
    zs = (scale + 3.0 * torch.randn(n, v, generator=g, dtype=torch.float64)).requires_grad_()
    pick = torch.tensor([[0, 1, 2, 0], [0, 1, 3, 4], [0, 4, 0, 0]])
    tmask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    labels = torch.randint(0, v, pick.shape, generator=g)
    labels[1, 2] = int(zs[3].argmax())  # one label that is its state's argmax
    b = {"labels": labels, "tmask": tmask, "pick": pick,
         "word_ids": torch.tensor([[0, 0, 1, -1], [0, 1, 1, 2], [0, 0, -1, -1]]),
         "word_logp": -torch.rand(3, 3, generator=g, dtype=torch.float64)}
    if mode == "frozen":
        b["log_q"] = -torch.rand(pick.shape, generator=g, dtype=torch.float64)
    spec = LossSpec("edl", target_mode=mode, support=support, kl_scale=kl_scale, aux_max=0.5,
                    aux_warmup=0.1)
    calls = []
    real = bridge.soft_targets
    monkeypatch.setattr(bridge, "soft_targets", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = sequence_losses(zs, b, spec, 0.5)
    assert bool(calls) is not on_states
    (g_got,) = torch.autograd.grad(got.sum(), zs)
    z = zs[pick.flatten()].view(*pick.shape, v)  # dense, by the library's definitions
    logp = torch.log_softmax(z, -1)
    log_q = b["log_q"] if mode == "frozen" else token_log_q(logp, b, spec)
    y = token_targets(z, logp, labels, log_q, spec, 0.5)
    expect = gen_losses.token_edl_loss(z, y, tmask, 0.5, kl_scale=kl_scale, support=support)
    (g_exp,) = torch.autograd.grad(expect.sum(), zs)
    torch.testing.assert_close(got, expect)
    torch.testing.assert_close(g_got, g_exp)
    assert bool(gen_losses.kl_at_clamp(zs.detach(), "exp").all()) is (scale == 30.0)


@pytest.mark.parametrize("kind", ["ce", "soft", "edl"])
def test_losses_on_shared_states_equal_the_losses_on_their_spread_logits(kind: str):
    """Rows that share a prefix pick the same state (``collate``): the loss read through
    ``pick`` from the N distinct states (for ce and detached soft targets without any (R, T, V)
    tensor: ``bridge.fixed_target_ce``) equals the loss on (R, T, V) logits copied out per row
    and position, and so does its gradient with respect to the states."""
    g = torch.Generator().manual_seed(1)
    n, v = 5, 11
    zs = (torch.randn(n, v, generator=g, dtype=torch.float64) * 2).requires_grad_()
    pick = torch.tensor([[0, 1, 2, 0], [0, 1, 3, 4], [0, 4, 0, 0]])  # row 2: two real tokens
    tmask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    labels = torch.randint(0, v, pick.shape, generator=g)
    word_ids = torch.tensor([[0, 0, 1, -1], [0, 1, 1, 2], [0, 0, -1, -1]])
    b = {"labels": labels, "tmask": tmask, "pick": pick, "word_ids": word_ids,
         "word_logp": -torch.rand(3, 3, generator=g, dtype=torch.float64)}
    spec = LossSpec(kind, aux_max=0.5, aux_warmup=0.1, kl_scale=1e-2)
    got = sequence_losses(zs, b, spec, 0.5)
    (g_got,) = torch.autograd.grad(got.sum(), zs)
    spread = zs[pick.flatten()]  # (R·T, V): the copy the shared path avoids building for ce
    if kind == "edl":  # spread logits through the library's dense path
        flat = torch.arange(pick.numel()).view(pick.shape)
        expect = sequence_losses(spread, {**b, "pick": flat}, spec, 0.5)
    else:  # dense and by definition: −Σ_v y_v log p_v with y built in full (R, T, V)
        z = spread.view(*pick.shape, v)
        logp = torch.log_softmax(z, -1)
        log_q = token_log_q(logp, b, spec) if kind == "soft" else torch.zeros(pick.shape,
                                                                               dtype=z.dtype)
        y = token_targets(z, logp, labels, log_q, spec, 0.5)
        tok = -(y * logp).sum(-1)
        expect = (tok * tmask).sum(-1) / tmask.sum(-1)
    (g_exp,) = torch.autograd.grad(expect.sum(), zs)
    torch.testing.assert_close(got, expect)
    torch.testing.assert_close(g_got, g_exp)
    if kind == "ce":  # and the closed form: mean over real positions of −log softmax[label]
        logp = torch.log_softmax(zs.detach(), -1)
        a = 0.5
        for r in range(3):
            toks = [-(1 - a) * logp[pick[r, j], labels[r, j]] - a * logp[pick[r, j]].max()
                    for j in range(4) if tmask[r, j]]
            assert float(got[r].detach()) == pytest.approx(float(sum(toks) / len(toks)), rel=1e-12)


def test_a_zero_weight_teacher_has_no_effect(bases):
    a = [GenExample(PROMPTS[i], [LabelSeq(TARGETS[i]), LabelSeq(OTHERS[i])], [1.0, 0.0])
         for i in range(4)]
    b = [GenExample(PROMPTS[i], [LabelSeq(TARGETS[i])], [1.0]) for i in range(4)]
    c = [GenExample(PROMPTS[i], [LabelSeq(TARGETS[i]), LabelSeq(OTHERS[i])], [0.9, 0.1])
         for i in range(4)]
    cfg = LMTrainConfig(epochs=3, lr=1e-2, batch_size=2, warmup=0.0)
    out = []
    for ex in (a, b, c):
        lm = fresh(bases, "char")
        stats = train_lm(lm, ex, LossSpec("ce"), cfg, 3)
        out.append((stats, lm.model.state_dict()))
    assert out[0][0]["final_loss"] == out[1][0]["final_loss"]
    assert all(torch.equal(out[0][1][k], out[1][1][k]) for k in out[0][1])
    assert any(not torch.equal(out[0][1][k], out[2][1][k]) for k in out[0][1])  # λ matters


def test_lora_trains_only_adapters_then_merges_into_a_plain_model(bases):
    lm = fresh(bases, "char")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cfg = LMTrainConfig(epochs=3, lr=1e-2, batch_size=4, warmup=0.0, lora=True, lora_r=4,
                        lora_alpha=8, lora_dropout=0.0)
    stats = train_lm(lm, examples(False), LossSpec("ce"), cfg, 0)
    h, i, n_layers = 32, 128, 2  # scratch model: MLP 4 × hidden
    per_layer = 4 * (4 * (h + h)) + 4 * 2 * (h + i) + 4 * (i + h)  # q k v o, gate up, down
    assert stats["trainable_params"] == n_layers * per_layer and stats["lora"] is True
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    after = lm.model.state_dict()
    assert set(after) == set(before)
    for k in after:
        changed = not torch.equal(after[k], before[k])
        assert changed == any(p in k for p in lm_train.LORA_PROJ), k


def test_bf16_autocast_keeps_fp32_weights_and_matches_fp32(bases):
    ex = examples(True, n=2)
    lm = fresh(bases, "char")
    s16 = train_lm(lm, ex, LossSpec("soft"), one_step(precision="bf16"), 0)
    s32 = train_lm(fresh(bases, "char"), ex, LossSpec("soft"), one_step(precision="fp32"), 0)
    assert (s16["precision"], s32["precision"]) == ("bf16", "fp32")
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())
    assert s16["first_loss"] == pytest.approx(s32["first_loss"], rel=0.02)


def test_truncation_is_counted_and_cut_targets_keep_their_words(bases):
    lm = fresh(bases, "char")
    long_t = format_slots([("city", "boston"), ("date", "next friday morning")])
    ex = [GenExample(PROMPTS[0], [LabelSeq(long_t, word_logps(long_t, 0))], [1.0])]
    enc = encode(lm.tokenizer, [PROMPTS[0]], [long_t], max_length=24)
    assert enc.truncated["target"] == 1  # the case under test really cuts the target
    stats = train_lm(lm, ex, LossSpec("soft"), LMTrainConfig(epochs=1, max_length=24), 0,
                     log=lambda s: None)
    assert stats["truncated"] == enc.truncated
    assert math.isfinite(stats["final_loss"])


def test_bad_inputs_raise_one_line_errors(bases):
    lm = fresh(bases, "char")
    bad_w = [GenExample(PROMPTS[0], [LabelSeq(TARGETS[0])], [0.5])]
    bad_lp = [GenExample(PROMPTS[0], [LabelSeq(TARGETS[0], [-0.1])], [1.0])]
    with pytest.raises(W2SError, match="distribution"):
        train_lm(lm, bad_w, LossSpec("ce"), one_step(), 0)
    with pytest.raises(W2SError, match="word log-probs"):
        train_lm(lm, bad_lp, LossSpec("soft"), one_step(), 0)
    with pytest.raises(W2SError, match="precision"):
        train_lm(lm, examples(False), LossSpec("ce"), one_step(precision="fp16"), 0)
    with pytest.raises(W2SError, match="ε"):
        train_dpo(lm, PROMPTS, TARGETS, OTHERS, 1.5, DPOConfig(), 0)


def _margin(lm: CausalLM) -> float:
    return sum(label_logp(lm, p, c) - label_logp(lm, p, r)
               for p, c, r in zip(PROMPTS, TARGETS, OTHERS, strict=True)) / len(PROMPTS)


@pytest.mark.parametrize("tok", ["char", "bpe"])
def test_dpo_starts_at_ln2_and_widens_the_margin_with_a_cached_reference(bases, tok: str):
    lm = fresh(bases, tok)
    start = _margin(lm)
    calls = []
    lm.model.model.register_forward_hook(lambda *a: calls.append(1))
    cfg = DPOConfig(beta=1.0, lr=3e-3, epochs=6, batch_size=4, warmup=0.0)
    stats = train_dpo(lm, PROMPTS, TARGETS, OTHERS, 0.0, cfg, 0)
    # a pass runs the decoder three times when chosen and rejected share their prompt's pass:
    # the prompts' common instruction, the rest of each prompt, each row's own target
    per_pass = 3 if shares_prompts(lm.model) else 1
    assert len(calls) == per_pass * (1 + 6 + 1)  # reference once, one per step, final margin
    assert stats["first_loss"] == pytest.approx(math.log(2), abs=1e-5)  # π = reference: h = 0
    assert stats["margin_start"] == pytest.approx(start, abs=1e-4)  # reference = initial model
    assert stats["final_loss"] < 0.5 * math.log(2)
    assert stats["margin_end"] == pytest.approx(_margin(lm), abs=1e-4)
    assert stats["margin_end"] > start + 1.0


def test_cdpo_eps_per_pair_matches_scalar_and_half_holds_the_margin(bases):
    cfg = DPOConfig(beta=1.0, lr=3e-3, epochs=6, batch_size=4, warmup=0.0)
    runs = {}
    for name, eps in (("scalar", 0.5), ("list", [0.5] * 4), ("dpo", 0.0)):
        lm = fresh(bases, "char")
        runs[name] = (train_dpo(lm, PROMPTS, TARGETS, OTHERS, eps, cfg, 0), lm.model.state_dict())
    w_s, w_l = runs["scalar"][1], runs["list"][1]
    assert all(torch.equal(w_s[k], w_l[k]) for k in w_s)
    half, dpo = runs["scalar"][0], runs["dpo"][0]
    assert half["first_loss"] == pytest.approx(math.log(2), abs=1e-5)
    # cDPO's optimum is σ(h) = 1 − ε: at ε = ½ the start (h = 0) is already optimal
    assert abs(half["margin_end"] - half["margin_start"]) < 0.1 * (
        dpo["margin_end"] - dpo["margin_start"])


def test_a_shared_reference_gives_the_same_dpo_run_with_one_forward_less(bases):
    """Several ε runs from one set of weights share ``pair_table``'s reference: each run then
    skips its own reference pass and ends with the weights and margins of an unshared run."""
    cfg = DPOConfig(beta=1.0, lr=3e-3, epochs=2, batch_size=4, warmup=0.0)
    lm = fresh(bases, "bpe")
    own = train_dpo(lm, PROMPTS, TARGETS, OTHERS, 0.1, cfg, 0)
    w_own = {k: v.clone() for k, v in lm.model.state_dict().items()}
    lm = fresh(bases, "bpe")
    ref = pair_table(lm, PROMPTS, TARGETS, OTHERS, cfg)
    hand = torch.tensor([[label_logp(lm, p, c), label_logp(lm, p, r)]
                         for p, c, r in zip(PROMPTS, TARGETS, OTHERS, strict=True)])
    assert torch.allclose(ref, hand, atol=1e-4)  # independent: per-pair teacher forcing
    calls = []
    lm.model.model.register_forward_hook(lambda *a: calls.append(1))
    shared = train_dpo(lm, PROMPTS, TARGETS, OTHERS, 0.1, cfg, 0, reference=ref)
    per_pass = 3 if shares_prompts(lm.model) else 1  # instruction, prompts, own targets
    assert len(calls) == per_pass * (2 + 1)  # two steps and the final margin: no reference
    assert shared["margin_start"] == pytest.approx(own["margin_start"], abs=1e-5)
    assert shared["final_loss"] == pytest.approx(own["final_loss"], abs=1e-5)
    assert all(torch.allclose(w_own[k], v, atol=1e-6) for k, v in lm.model.state_dict().items())
    with pytest.raises(W2SError, match="reference"):
        train_dpo(lm, PROMPTS, TARGETS, OTHERS, 0.1, cfg, 0, reference=ref[:2])


@pytest.mark.parametrize("kind", ["ce", "soft", "edl"])
def test_length_chunked_rows_give_the_unchunked_loss_and_update(bases, kind: str, monkeypatch):
    """A batch's rows go through the model in length-sorted chunks of ROW_CHUNK (less padding);
    the loss and the trained weights must equal one forward over the whole padded batch."""
    from w2s_core.training import lm_train

    assert lm_train.length_chunks([5, 2, 9, 2, 7], 2) == [[1, 3], [0, 4], [2]]
    soft = kind != "ce"
    ex = [GenExample(PROMPTS[i], [LabelSeq(TARGETS[i], word_logps(TARGETS[i], i) if soft
                                           else None),
                                  LabelSeq(OTHERS[i], word_logps(OTHERS[i], 9 + i) if soft
                                           else None)], [0.4, 0.6]) for i in range(4)]
    cfg = LMTrainConfig(epochs=2, lr=1e-2, batch_size=4, warmup=0.0)
    out = {}
    for chunk in (lm_train.ROW_CHUNK, 1000):  # 8 rows per batch: 2 chunks, then one
        monkeypatch.setattr(lm_train, "ROW_CHUNK", chunk)
        lm = fresh(bases, "bpe")
        stats = train_lm(lm, ex, LossSpec(kind=kind), cfg, 0)
        out[chunk] = (stats["first_loss"], stats["final_loss"],
                      torch.cat([p.detach().flatten() for p in lm.model.parameters()]))
    (a1, a2, wa), (b1, b2, wb) = out.values()
    assert a1 == pytest.approx(b1, rel=1e-5) and a2 == pytest.approx(b2, rel=1e-5)
    # float summation order differs; a different gradient would move weights by ~lr = 1e-2
    assert torch.allclose(wa, wb, atol=1e-4)


def test_a_shared_prompt_pass_gives_the_unshared_logits(bases):
    """K label rows of an example share one prompt pass (KV cache copied to each row): the
    target logits must equal the full prompt + target forward of each row, for prompts of
    different lengths (a short prompt leaves a masked gap before its target)."""
    from w2s_core.training.lm_batches import Rows, collate, example_chunks, flatten
    from w2s_core.training.lm_loop import TargetLogits, shares_prompts

    lm = fresh(bases, "bpe")
    assert shares_prompts(lm.model)
    ex = [GenExample(PROMPTS[i] + " x" * (3 * i), [LabelSeq(TARGETS[i]), LabelSeq(OTHERS[i]),
                                                   LabelSeq("{}")], [0.5, 0.3, 0.2])
          for i in range(3)]
    rows = flatten(lm.tokenizer, ex, 256)
    net = TargetLogits(lm.model).eval()
    idx = [r for g in example_chunks(rows, [2, 0, 1], 100) for r in g]
    assert sorted(idx) == list(range(9))
    assert all(idx[3 * j: 3 * j + 3] in rows.by_example for j in range(3))  # whole examples
    pad = lm.tokenizer.pad_token_id
    with torch.no_grad():
        a = collate(rows, idx, pad, torch.device("cpu"))
        b = collate(rows, idx, pad, torch.device("cpu"), shared=True)
        assert b["prompt_ids"].shape[0] == 3 and b["input_ids"].shape[1] < a["input_ids"].shape[1]
        # the three prompts' common instruction runs once: its tokens, each prompt keeping ≥ 1
        instruction = PROMPTS[0][: PROMPTS[0].index('"') + 1]
        assert all(p.startswith(instruction) for p in PROMPTS)
        assert int(b["root"]) >= len(lm.tokenizer(instruction)["input_ids"]) - 1 > 0
        za = net(a["input_ids"], a["attention_mask"], a["state"], a["pick"])
        zb = net(b["input_ids"], b["attention_mask"], b["state"], b["pick"], b["prompt_ids"],
                 b["prompt_mask"], b["row_prompt"], int(b["root"]))
    m = a["tmask"]
    assert torch.equal(m, b["tmask"]) and torch.equal(a["labels"], b["labels"])
    assert torch.allclose(za[m], zb[m], atol=1e-4)
    # a long target cuts its row's prompt from the left: that row gets a prompt of its own
    room = len(lm.tokenizer(PROMPTS[0])["input_ids"]) + 4  # "{}" + EOS fits, a long one not
    cut = flatten(lm.tokenizer, [GenExample(PROMPTS[0], [LabelSeq("{}"), LabelSeq(
        TARGETS[1])], [0.5, 0.5])], max(16, room))
    assert cut.truncated["prompt"] == 1 and cut.ids[0][:cut.start[0]] != cut.ids[1][:cut.start[1]]
    with torch.no_grad():
        a = collate(cut, [0, 1], pad, torch.device("cpu"))
        b = collate(cut, [0, 1], pad, torch.device("cpu"), shared=True)
        assert b["prompt_ids"].shape[0] == 2
        za = net(a["input_ids"], a["attention_mask"], a["state"], a["pick"])
        zb = net(b["input_ids"], b["attention_mask"], b["state"], b["pick"], b["prompt_ids"],
                 b["prompt_mask"], b["row_prompt"], int(b["root"]))
    assert torch.allclose(za[a["tmask"]], zb[b["tmask"]], atol=1e-4)
    # grouping: whole examples, shortest first, a group closed before it passes `size` rows
    assert [len(g) for g in example_chunks(rows, [0, 1, 2], 6)] == [6, 3]
    assert [len(g) for g in example_chunks(rows, [0, 1, 2], 2)] == [3, 3, 3]
    # ⌈rows / size⌉ groups as even as whole examples allow, not full groups and a runt: 16
    # examples of 3 rows at size 16 are 48 rows in 3 groups (cuts nearest rows 16 and 32),
    # not 15 + 15 + 15 + 3; 40 one-row examples in 3 groups of 13-14
    k3 = Rows(ids=[[1, 2]] * 48, start=[1] * 48, by_example=[[3 * i, 3 * i + 1, 3 * i + 2]
                                                             for i in range(16)])
    assert [len(g) for g in example_chunks(k3, range(16), 16, by_length=False)] == [15, 18, 15]
    k1 = Rows(ids=[[1, 2]] * 40, start=[1] * 40, by_example=[[i] for i in range(40)])
    assert [len(g) for g in example_chunks(k1, range(40), 16, by_length=False)] == [13, 14, 13]


def test_rows_of_one_prompt_also_share_the_common_prefix_of_their_targets(bases):
    """The shared pass covers the prompt and the longest common prefix of its rows' targets
    (identical targets: all but their last token); each row's own pass holds only the rest,
    and the target logits still equal each row's full prompt + target forward."""
    from w2s_core.models.shared_prompt import common_prefix, shared_root
    from w2s_core.training.lm_batches import Rows, collate, example_chunks, flatten
    from w2s_core.training.lm_loop import TargetLogits

    assert common_prefix([[1, 2, 3, 9], [1, 2, 4]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each keeps its last token
    assert common_prefix([[5], [5, 6]]) == 0 and common_prefix([[1, 2], [3, 2]]) == 0
    assert common_prefix([[7, 8, 9]]) == 2
    # the prompts' own common prefix (the instruction) runs once per batch; one prompt: no root
    assert shared_root([[1, 2, 3], [1, 2, 4], [1, 2, 3, 5]]) == 2
    assert shared_root([[1, 2], [1, 2, 3]]) == 1 and shared_root([[1, 2, 3]]) == 0
    # chunks sort examples by their own passes' length, then the shared pass's (hand case:
    # (own, shared) = (1, 9), (3, 2), (1, 2); sorted by whole rows it would be 2, 1, 0)
    hand = Rows(ids=[[1, 2, 3, 4, 5, 9, 9, 9, 9, 1], [1, 2, 3, 4, 5, 9, 9, 9, 9, 2],
                     [1, 2, 7, 1, 2], [1, 2, 8, 1, 2], [1, 5, 5]], start=[5, 5, 2, 2, 1],
                by_example=[[0, 1], [2, 3], [4]])
    assert example_chunks(hand, [0, 1, 2], 2) == [[4], [0, 1], [2, 3]]
    lm = fresh(bases, "char")
    same = format_slots([("city", "boston"), ("time", "six")])
    labels = [same, format_slots([("city", "boston"), ("time", "ten")]), same]
    ex = [GenExample(PROMPTS[0], [LabelSeq(t) for t in labels], [0.4, 0.4, 0.2]),
          GenExample(PROMPTS[1], [LabelSeq(TARGETS[1]), LabelSeq(OTHERS[1])], [0.5, 0.5])]
    rows = flatten(lm.tokenizer, ex, 256)
    net = TargetLogits(lm.model).eval()
    pad = lm.tokenizer.pad_token_id
    idx = list(range(5))
    with torch.no_grad():
        a = collate(rows, idx, pad, torch.device("cpu"))
        b = collate(rows, idx, pad, torch.device("cpu"), shared=True)
        za = net(a["input_ids"], a["attention_mask"], a["state"], a["pick"])
        zb = net(b["input_ids"], b["attention_mask"], b["state"], b["pick"], b["prompt_ids"],
                 b["prompt_mask"], b["row_prompt"], int(b["root"]))
    # char tokens: the first example's targets agree up to "ten"/"six", so its rows carry only
    # their differing tail (+ '"}'; the EOS after it is a target, but predicts nothing: no
    # input) in their own pass
    tail = len(lm.tokenizer('six"}')["input_ids"])
    own = b["attention_mask"].sum(-1).tolist()
    assert own[:3] == [tail, tail, tail]
    assert int(a["tokens"]) == int(b["tokens"]) == sum(len(rows.ids[i]) for i in idx)
    n_common = len(lm.tokenizer(same[: same.index("six")])["input_ids"])
    assert b["prompt_mask"].sum(-1)[b["row_prompt"][0]] == rows.start[0] + n_common
    assert b["prompt_ids"].shape[0] == 2 and b["row_prompt"].tolist() == [0, 0, 0, 1, 1]
    # a row counts its full prompt + target tokens once, shared or not
    assert (b["prompt_mask"][b["row_prompt"]].sum(-1) + b["attention_mask"].sum(-1)).tolist() \
        == a["attention_mask"].sum(-1).tolist()
    m = a["tmask"]
    assert torch.equal(m, b["tmask"]) and torch.equal(a["labels"], b["labels"])
    assert torch.allclose(za[m], zb[m], atol=1e-4)
    # the head runs once per predicting state: unshared, on every real target position (not
    # padding); shared, the K rows of a prompt pick one state for each target token of their
    # common prefix and for the first token after it (the prefix's last state predicts it)
    assert a["state"].numel() == int(m.sum())
    c1 = common_prefix([rows.ids[r][rows.start[r]:] for r in (3, 4)])
    assert b["state"].numel() == int(m.sum()) - 2 * (n_common + 1) - (c1 + 1)
    # identical targets share all but their EOS, which is no input: their own passes would be
    # empty, so that chunk keeps the EOS as its one own token
    with torch.no_grad():
        a2 = collate(rows, [0, 2], pad, torch.device("cpu"))
        b2 = collate(rows, [0, 2], pad, torch.device("cpu"), shared=True)
        za2 = net(a2["input_ids"], a2["attention_mask"], a2["state"], a2["pick"])
        zb2 = net(b2["input_ids"], b2["attention_mask"], b2["state"], b2["pick"],
                  b2["prompt_ids"], b2["prompt_mask"], b2["row_prompt"], int(b2["root"]))
    assert b2["attention_mask"].sum(-1).tolist() == [1, 1]
    assert b2["state"].numel() == len(rows.ids[0]) - rows.start[0]  # both rows: one head
    assert torch.allclose(za2[a2["tmask"]], zb2[b2["tmask"]], atol=1e-4)


@pytest.mark.parametrize(("kind", "mode", "base", "chunk"), [
    ("ce", "detached", "bpe", 16), ("ce", "detached", "char", 16), ("soft", "live", "bpe", 16),
    ("edl", "frozen", "char", 16), ("ce", "detached", "char", 6), ("soft", "detached", "bpe", 6)])
def test_shared_prompt_training_gives_the_unshared_loss_and_update(bases, kind: str, mode: str,
                                                                   base: str, chunk: int,
                                                                   monkeypatch):
    """train_lm shares each example's prompt among its K rows; switching that off must give
    the same losses and weights (float summation order aside); "char" ties its embedding to
    its head, "bpe" does not. ``chunk`` 6: a batch's 12 rows in two shared chunks, which run
    their common instruction once between them."""
    from w2s_core.training import lm_loop, lm_train

    monkeypatch.setattr(lm_train, "SHARED_CHUNK", chunk)

    soft = kind != "ce"
    ex = [GenExample(PROMPTS[i], [LabelSeq(t, word_logps(t, 3 * i + j) if soft else None)
                                  for j, t in enumerate((TARGETS[i], OTHERS[i], TARGETS[i - 1]))],
                     [0.5, 0.3, 0.2]) for i in range(4)]
    cfg = LMTrainConfig(epochs=2, lr=1e-2, batch_size=4, warmup=0.0)
    out, calls = [], {}
    for on in (True, False):
        monkeypatch.setattr(lm_loop, "shares_prompts", lambda _m, on=on: on)
        lm = fresh(bases, base)
        seen: list[int] = []  # tokens (padding included) of each decoder call
        lm.model.model.register_forward_pre_hook(
            lambda _m, _a, kw, seen=seen: seen.append(math.prod(decoder_tokens(kw))),
            with_kwargs=True)
        stats = train_lm(lm, ex, LossSpec(kind=kind, target_mode=mode), cfg, 0)
        # frozen first computes the initial q unshared: 12 rows in passes of batch_size 4
        calls[on] = len(seen) - (12 // 4 if mode == "frozen" else 0), sum(seen)
        out.append((stats["first_loss"], stats["final_loss"], stats["train_tokens"],
                    torch.cat([p.detach().flatten() for p in lm.model.parameters()])))
    (a1, a2, ta, wa), (b1, b2, tb, wb) = out
    assert a1 == pytest.approx(b1, rel=1e-4) and a2 == pytest.approx(b2, rel=1e-4)
    assert ta == tb  # throughput counts each row's prompt, shared or not
    # the paths really differ: 2 steps of 12 rows; shared, one 16-row chunk = 3 decoder calls a
    # step (the 4 prompts' common instruction, the rest of each prompt, each row's own target),
    # two 6-row chunks 1 + 2 × 2; unshared, three 4-row chunks = 3 calls a step, with every
    # prompt in every row
    assert calls[False][0] == 2 * 3
    assert calls[True][0] == 2 * (3 if chunk == 16 else 5)
    assert calls[True][1] < 0.7 * calls[False][1]
    assert torch.allclose(wa, wb, atol=1e-4)



def test_mixed_precision_accelerate_refuses_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing bf16 on a GPU without bf16 units: accelerate raises a ValueError; the user gets
    one line naming the setting to change, not a traceback (simulated: no such GPU here)."""
    import accelerate

    from w2s_core.training import finetune

    def refuse(**kw):  # noqa: ANN003, ANN202
        raise ValueError("bf16 mixed precision requires PyTorch >= 1.10 and a supported device.")

    monkeypatch.setattr(accelerate, "Accelerator", refuse)
    msg = one_line_error(lambda: finetune._accelerator(torch.device("cuda"), True),
                         "accelerate refused mixed_precision='bf16'")
    assert "precision: fp32" in msg
