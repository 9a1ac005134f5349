"""Student training for slot filling as generation: K weak label sequences per prompt.

Every example's K label sequences become K rows (prompt + target + EOS, right-padded); the loss
reads only the target tokens. Logits are computed only at the positions that predict a target
token (``TargetLogits``), so a 49k vocabulary costs rows × target length × V, not × the prompt.
The K rows of one example share one pass over its prompt and the common prefix of their targets
(its KV cache feeds the rest of each target), so a prompt costs once per example, not K times,
and the instruction all prompts begin with once per pass (``lm_batches.collate(shared=True)``).
Per row: loss = mean over its target tokens; per example Σ_k λ_k L_k; per batch the mean over
examples. Soft targets come from the word bridge (METHOD.md §3, ``methods.bridge``).
The optimisation loop (``run_loop``) is shared with DPO (``training.lm_dpo``): the conventions of
``training.finetune`` — fp32 master weights under bf16 autocast, linear warm-up + cosine, set per
optimizer step, accelerate for placement/DDP, seeded shuffling — and peft LoRA merged at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from w2s_core.device import rows_per_pass
from w2s_core.errors import W2SError
from w2s_core.methods import bridge, gen_losses, losses
from w2s_core.models.causal import CausalLM
from w2s_core.training.lm_batches import (  # noqa: F401  (re-exported for callers)
    GenExample,
    LabelSeq,
    Rows,
    batch_root,
    collate,
    example_chunks,
    flatten,
    length_chunks,
)
from w2s_core.training.lm_loop import (  # noqa: F401  (re-exported for lm_dpo and callers)
    _PRECISION,
    LORA_PROJ,
    BatchLoss,
    Forward,
    TargetLogits,
    run_loop,
)


@dataclass(frozen=True)
class LMTrainConfig:
    """``batch_size`` examples (each with its K rows) per micro-batch and device; ``precision``:
    auto = bf16 autocast on CUDA with bf16 or CPUs with bf16 units, else fp32."""

    epochs: float = 2.0
    lr: float = 1e-4
    batch_size: int = 8
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup: float = 0.1
    max_length: int = 256
    grad_clip: float = 1.0
    precision: str = "auto"
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05


@dataclass(frozen=True)
class LossSpec:
    kind: Literal["ce", "soft", "edl"] = "ce"
    target_mode: Literal["detached", "frozen", "live"] = "detached"
    split: Literal["softmax", "equal"] = "softmax"
    temperature: float = 1.0
    support: int | None = None
    evidence: str = "exp"
    kl_scale: float = 1e-4
    aux_max: float = 0.0
    aux_warmup: float = 0.2


# rows per forward pass inside one batch: a batch's rows are sorted by length and cut into
# chunks of this many, so a short row is padded to a similar row, not to the batch's longest
# (with K label rows per example, padding was ~40 % of the tokens a batch computed). Per-row
# losses are summed, so the batch's loss and gradient are the unchunked ones. On a GPU a small
# model's chunks are larger (``device.rows_per_pass``): there launches, not padding, cost.
ROW_CHUNK = 4
# rows per shared-prompt pass, about: a batch runs in ⌈rows / this⌉ passes of whole examples,
# as even as they allow (``example_chunks``); on a GPU 2 × rows_per_pass if larger
SHARED_CHUNK = 16


def token_log_q(logp: torch.Tensor, b: dict[str, torch.Tensor], loss: LossSpec) -> torch.Tensor:
    """Bridge log q_t = ω_t log P_k(word(t)), ω from the student's confidence m_t = max_v P_t.
    Gradients flow through ω only for ``live`` targets. logp: (R, T, V), or the states' (N, V)
    read through ``b["pick"]`` → (R, T)."""
    conf = logp.amax(-1).exp()
    if loss.target_mode != "live":
        conf = conf.detach()
    if logp.ndim == 2:  # per state: each position reads its state's confidence
        conf = conf[b["pick"]]
    omega = bridge.split_weights(conf, b["word_ids"], loss.split, loss.temperature)
    return bridge.token_log_targets(b["word_logp"], b["word_ids"], omega)


def _student_argmax(z: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """argmax of the student's predictive: softmax(z) for ce/soft, α/S = (g(z)+1)/S for edl."""
    z = z.detach()
    # log α, not the clamped evidence: at an LM's logits (> 20) the clamp ties thousands of
    # tokens and argmax would return the lowest token id among them
    return (losses.log_alpha(z, loss.evidence) if loss.kind == "edl" else z).argmax(-1)


def token_targets(z: torch.Tensor, logp: torch.Tensor, labels: torch.Tensor,
                  log_q: torch.Tensor, loss: LossSpec, tau: float) -> torch.Tensor:
    """y_t = soft_targets(label_t, q_t, P_student) (p_rest from softmax(z) for every kind), then
    the aux term y ← (1 − a_t)·y + a_t·onehot(argmax student), a_t = aux_weight(τ).
    z, logp = log_softmax(z): (R, T, V); labels, log_q: (R, T) → (R, T, V)."""
    y = bridge.soft_targets(labels, log_q, logp, loss.target_mode)
    a = losses.aux_weight(tau, loss.aux_max, loss.aux_warmup)
    if a > 0:
        y = (1 - a) * y + a * F.one_hot(_student_argmax(z, loss), y.shape[-1]).to(y.dtype)
    return y


def sequence_losses(zs: torch.Tensor, b: dict[str, torch.Tensor], loss: LossSpec,
                    tau: float) -> torch.Tensor:
    """Per-row loss, the mean over its target tokens. zs: (N, V) fp32 logits of the batch's
    distinct predicting states, read per row and target position through ``b["pick"]`` (R, T)
    (``Forward.states``) → (R,)."""
    m = b["tmask"].to(zs.dtype)
    kl = 0.0 if loss.kind != "edl" else losses.kl_anneal(tau, loss.kl_scale)
    if loss.kind == "ce" or (loss.target_mode != "live"
                             and (loss.kind == "soft" or _edl_on_states(zs, b, loss, kl))):
        # a fixed target: the loss reads log p of given tokens (and for soft targets one
        # vocabulary-wide sum per state), all on the N states, no (R, T, V) tensor
        logp = F.log_softmax(zs, -1)  # (N, V)
        # EDL's NLL is cross-entropy against the Dirichlet mean α/S: the same sums over x
        x = logp if loss.kind != "edl" else losses.log_dirichlet_mean(zs, loss.evidence)
        if loss.kind == "ce":
            tok = -logp[b["pick"], b["labels"]]  # (R, T)
        else:
            log_q = b["log_q"] if "log_q" in b else token_log_q(logp, b, loss)
            tok = bridge.fixed_target_ce(logp, b["pick"], b["labels"], log_q, x)
        a = losses.aux_weight(tau, loss.aux_max, loss.aux_warmup)
        if a > 0:
            own = -x.gather(-1, _student_argmax(zs, loss).unsqueeze(-1)).squeeze(-1)  # (N,)
            tok = (1 - a) * tok + a * own[b["pick"]]
        if kl:  # every position's KL is at its clamp: a constant (``_edl_on_states``)
            tok = tok + kl * gen_losses.KL_MAX
        return (tok * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    # live soft and EDL targets differ per row where rows share a state: spread to (R, T, V)
    z = zs.index_select(0, b["pick"].flatten()).view(*b["pick"].shape, -1)
    logp = F.log_softmax(z, -1)
    log_q = b["log_q"] if "log_q" in b else token_log_q(logp, b, loss)
    y = token_targets(z, logp, b["labels"], log_q, loss, tau)
    if loss.kind == "soft":
        # KL(y ‖ p) = Σ y log y − Σ y log p (METHOD.md §3). With a fixed target the Σ y log y
        # term is a constant, but live targets carry gradient, and cross-entropy alone would add
        # −∇H(y): a push to sharpen the targets themselves. The clamp keeps 0·log 0 (a token
        # whose probability underflowed) at 0 with a finite gradient.
        tok = (y * (y.clamp_min(1e-30).log() - logp)).sum(-1)
        return (tok * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return gen_losses.token_edl_loss(z, y, b["tmask"], tau, evidence=loss.evidence,  # type: ignore[arg-type]
                                     kl_scale=loss.kl_scale, support=loss.support)


def _edl_on_states(zs: torch.Tensor, b: dict[str, torch.Tensor], loss: LossSpec,
                   kl: float) -> bool:
    """Whether token EDL can take the N-state path: full support (a restricted support's top-k
    follows each row's target) and no KL gradient — λ_τ = 0, or every target position's KL
    provably at its clamp (``gen_losses.kl_at_clamp``; at an LM's logits it always is). Then the
    loss is the NLL, cross-entropy against α/S, plus a constant. On SmolLM2-135M at K = 3 the
    (R, T, V) path trained at 0.60× naive-soft's speed, this one at 1.01×
    (benchmarks/bench_token_losses.py)."""
    if loss.support is not None:
        return False
    if not kl:
        return True
    used = b["pick"][b["tmask"].bool()].unique()
    return bool(gen_losses.kl_at_clamp(zs[used], loss.evidence).all())  # type: ignore[arg-type]


def train_lm(lm: CausalLM, examples: Sequence[GenExample], loss: LossSpec, cfg: LMTrainConfig,
             seed: int, *, progress: bool = False, log: Callable[[str], None] = print,
             device: str = "auto") -> dict[str, Any]:
    """Fine-tune ``lm`` in place on K weighted label sequences per prompt; return run stats
    (steps, seconds, train_tokens incl. prompts, tokens_per_s, first/final_loss, precision, lora,
    truncated {prompt, target} counted per label sequence).
    ce: hard CE (word log-probs ignored); soft: bridge soft targets, soft CE; edl: token EDL
    over the same targets. frozen: ω and log q from the initial student, computed once."""
    if loss.kind not in ("ce", "soft", "edl"):
        raise W2SError(f"unknown generation loss {loss.kind!r}", "use ce, soft or edl")
    if loss.target_mode not in ("detached", "frozen", "live"):
        raise W2SError(f"unknown target mode {loss.target_mode!r}", "use detached, frozen or live")
    rows = flatten(lm.tokenizer, examples, cfg.max_length)
    if any(rows.truncated.values()):
        log(f"truncated to max_length {cfg.max_length}: {rows.truncated['prompt']} prompts, "
            f"{rows.truncated['target']} targets (label sequences)")
    pad = lm.tokenizer.pad_token_id
    frozen: dict[int, torch.Tensor] | None = None
    if loss.kind != "ce" and loss.target_mode == "frozen":
        frozen = {}

    def before(fwd: Forward) -> None:  # the initial student's log q, once per teacher row
        assert frozen is not None
        soft = [r for r in range(len(rows.ids)) if rows.word_logp[r]]
        for s in range(0, len(soft), cfg.batch_size):
            idx = soft[s:s + cfg.batch_size]
            b = collate(rows, idx, pad, fwd.device)
            log_q = token_log_q(F.log_softmax(fwd(b), -1), b, loss).cpu()
            for r, i in enumerate(idx):
                frozen[i] = log_q[r, :len(rows.ids[i]) - rows.start[i]]

    def batch_loss(fwd: Forward, items: list[int], tau: float) -> torch.Tensor:
        total = torch.zeros((), device=fwd.device)
        size = rows_per_pass(fwd.net, ROW_CHUNK)
        # K label rows of one example share its prompt, all rows the instruction (K = 1 too);
        # a shared pass carries targets only, and its decoder passes want rows: measured on
        # 2 CPU cores, K = 3, 16 rows a chunk trained 113 row-tokens/s, 8 rows 91
        shared = fwd.shares
        root, kv = None, None
        if shared:  # the instruction all prompts begin with runs once for all chunks
            chunks = example_chunks(rows, items, max(SHARED_CHUNK, 2 * size))
            root = batch_root(rows, chunks)
        else:
            idx = [r for e in items for r in rows.by_example[e]]
            chunks = [[idx[j] for j in c]
                      for c in length_chunks([len(rows.ids[r]) for r in idx], size)]
        for chunk in chunks:
            b = collate(rows, chunk, pad, fwd.device, frozen, shared=shared, root=root)
            kv = kv or fwd.root(b)
            zs = fwd.states(b, root_kv=kv)
            total = total + (sequence_losses(zs, b, loss, tau) * b["weight"]).sum()
        return total / len(items)

    stats = run_loop(lm, cfg, seed, len(examples), batch_loss,
                     before=before if frozen is not None else None, progress=progress,
                     desc=f"train {lm.name} ({loss.kind})", device=device)
    stats["truncated"] = rows.truncated
    if progress:
        log(f"{lm.name}: {stats['steps']} steps, {stats['tokens_per_s']:.0f} tokens/s, "
            f"loss {stats['first_loss']:.4f} → {stats['final_loss']:.4f}")
    return stats
