"""Student training for slot filling as generation: K weak label sequences per prompt.

Every example's K label sequences become K rows (prompt + target + EOS, right-padded); the loss
reads only the target tokens. Logits are computed only at the positions that predict a target
token (``TargetLogits``), so a 49k vocabulary costs rows × target length × V, not × the prompt.
Per row: loss = mean over its target tokens; per example Σ_k λ_k L_k; per batch the mean over
examples. Soft targets come from the word bridge (METHOD.md §3, ``methods.bridge``).
The optimisation loop (``run_loop``) is shared with DPO (``training.lm_dpo``): the conventions of
``training.finetune`` — fp32 master weights under bf16 autocast, linear warm-up + cosine, set per
optimizer step, accelerate for placement/DDP, seeded shuffling — and peft LoRA merged at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from w2s_core.data.prompts import encode
from w2s_core.device import rows_per_pass
from w2s_core.errors import W2SError
from w2s_core.methods import bridge, gen_losses, losses
from w2s_core.models.causal import CausalLM
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


@dataclass
class LabelSeq:
    text: str
    word_logps: list[float] | None = None  # one per text.split() word; None = hard label (q = 1)


@dataclass
class GenExample:
    prompt: str
    labels: list[LabelSeq]
    weights: list[float]  # λ_k, sum 1


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


@dataclass
class Rows:
    """One row per (example, label) with λ > 0: token ids and what the bridge needs."""

    ids: list[list[int]] = field(default_factory=list)  # prompt + target (+ EOS)
    start: list[int] = field(default_factory=list)  # index of the first target token
    word_ids: list[list[int]] = field(default_factory=list)  # per target token, −1 = no word
    word_logp: list[list[float]] = field(default_factory=list)  # [] for a hard label
    weight: list[float] = field(default_factory=list)
    by_example: list[list[int]] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)


def flatten(tokenizer: Any, examples: Sequence[GenExample], max_length: int) -> Rows:
    """Tokenize every (prompt, label) pair once; drop λ = 0 labels (they cannot contribute)."""
    keep: list[tuple[int, LabelSeq, float]] = []
    for i, ex in enumerate(examples):
        if not ex.labels or len(ex.labels) != len(ex.weights):
            raise W2SError(f"example {i} has {len(ex.labels)} labels and {len(ex.weights)} "
                           "weights", "give each example ≥ 1 label and one λ per label")
        if min(ex.weights) < 0 or abs(sum(ex.weights) - 1) > 1e-3:
            raise W2SError(f"example {i}: weights {ex.weights} are not a distribution",
                           "pass λ_k ≥ 0 that sum to 1")
        keep += [(i, lab, w) for lab, w in zip(ex.labels, ex.weights, strict=True) if w > 0]
    enc = encode(tokenizer, [examples[i].prompt for i, _, _ in keep],
                 [lab.text for _, lab, _ in keep], max_length)
    rows = Rows(by_example=[[] for _ in examples], truncated=dict(enc.truncated))
    for r, (i, lab, w) in enumerate(keep):
        p, t = enc.prompt_ids[r], enc.target_ids[r]
        if not p:
            raise W2SError(f"example {i} has an empty prompt", "give every example a prompt")
        wids = bridge.word_spans(lab.text, enc.target_offsets[r])
        wlp: list[float] = []
        if lab.word_logps is not None:
            if len(lab.word_logps) != len(lab.text.split()):
                raise W2SError(f"example {i}: {len(lab.word_logps)} word log-probs for "
                               f"{len(lab.text.split())} words of {lab.text!r}",
                               "pass one log-prob per whitespace-split word of the label")
            # a cut target keeps only its words' log-probs (the rest would fold onto the last)
            wlp = list(lab.word_logps[: max(wids, default=-1) + 1])
        rows.ids.append(p + t)
        rows.start.append(len(p))
        rows.word_ids.append(wids)
        rows.word_logp.append(wlp)
        rows.weight.append(w)
        rows.by_example[i].append(r)
    return rows


# rows per forward pass inside one batch: a batch's rows are sorted by length and cut into
# chunks of this many, so a short row is padded to a similar row, not to the batch's longest
# (with K label rows per example, padding was ~40 % of the tokens a batch computed). Per-row
# losses are summed, so the batch's loss and gradient are the unchunked ones. On a GPU a small
# model's chunks are larger (``device.rows_per_pass``): there launches, not padding, cost.
ROW_CHUNK = 4


def length_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Positions 0..len−1 sorted by length (stable), cut into runs of ``size``."""
    order = sorted(range(len(lengths)), key=lambda j: lengths[j])
    return [order[i:i + size] for i in range(0, len(order), max(1, size))]


def collate(rows: Rows, idx: Sequence[int], pad_id: int, device: torch.device,
            frozen: dict[int, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Right-padded batch of rows. ``pos[r, j]`` is the position whose logits predict target
    token j (one before it: causal LM shift); ``labels``, ``word_ids``, ``tmask`` are (R, T)."""
    width = max(len(rows.ids[i]) for i in idx)
    n_t = [len(rows.ids[i]) - rows.start[i] for i in idx]
    t_max, w_max = max(n_t), max([len(rows.word_logp[i]) for i in idx] + [1])
    b = {"input_ids": torch.full((len(idx), width), pad_id, dtype=torch.long),
         "attention_mask": torch.zeros((len(idx), width), dtype=torch.long),
         "pos": torch.zeros((len(idx), t_max), dtype=torch.long),
         "labels": torch.zeros((len(idx), t_max), dtype=torch.long),
         "tmask": torch.zeros((len(idx), t_max), dtype=torch.bool),
         "word_ids": torch.full((len(idx), t_max), -1, dtype=torch.long),
         "word_logp": torch.zeros((len(idx), w_max)),
         "weight": torch.tensor([rows.weight[i] for i in idx])}
    if frozen is not None:
        b["log_q"] = torch.zeros((len(idx), t_max))
    for r, (i, n) in enumerate(zip(idx, n_t, strict=True)):
        ids, s = rows.ids[i], rows.start[i]
        b["input_ids"][r, :len(ids)] = torch.tensor(ids)
        b["attention_mask"][r, :len(ids)] = 1
        b["pos"][r, :n] = torch.arange(s - 1, s - 1 + n)
        b["labels"][r, :n] = torch.tensor(ids[s:])
        b["tmask"][r, :n] = True
        if rows.word_logp[i]:  # hard labels keep word id −1 everywhere: log q = 0, q = 1
            b["word_ids"][r, :n] = torch.tensor(rows.word_ids[i])
            b["word_logp"][r, :len(rows.word_logp[i])] = torch.tensor(rows.word_logp[i])
        if frozen is not None and i in frozen:
            b["log_q"][r, :n] = frozen[i]
    return {k: v.to(device, non_blocking=True) for k, v in b.items()}


def token_log_q(logp: torch.Tensor, b: dict[str, torch.Tensor], loss: LossSpec) -> torch.Tensor:
    """Bridge log q_t = ω_t log P_k(word(t)), ω from the student's confidence m_t = max_v P_t.
    Gradients flow through ω only for ``live`` targets. logp: (R, T, V) → (R, T)."""
    conf = logp.amax(-1).exp()
    if loss.target_mode != "live":
        conf = conf.detach()
    omega = bridge.split_weights(conf, b["word_ids"], loss.split, loss.temperature)
    return bridge.token_log_targets(b["word_logp"], b["word_ids"], omega)


def _student_argmax(z: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """argmax of the student's predictive: softmax(z) for ce/soft, α/S = (g(z)+1)/S for edl."""
    z = z.detach()
    return (losses.evidence(z, loss.evidence) if loss.kind == "edl" else z).argmax(-1)


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


def sequence_losses(z: torch.Tensor, b: dict[str, torch.Tensor], loss: LossSpec,
                    tau: float) -> torch.Tensor:
    """Per-row loss, the mean over its target tokens. z: (R, T, V) fp32 → (R,)."""
    logp = F.log_softmax(z, -1)
    m = b["tmask"].to(z.dtype)
    if loss.kind == "ce":  # gathers instead of a dense one-hot: −Σ_v y_v log p_v
        tok = -logp.gather(-1, b["labels"].unsqueeze(-1)).squeeze(-1)
        a = losses.aux_weight(tau, loss.aux_max, loss.aux_warmup)
        if a > 0:
            own = -logp.gather(-1, _student_argmax(z, loss).unsqueeze(-1)).squeeze(-1)
            tok = (1 - a) * tok + a * own
        return (tok * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    log_q = b["log_q"] if "log_q" in b else token_log_q(logp, b, loss)
    y = token_targets(z, logp, b["labels"], log_q, loss, tau)
    if loss.kind == "soft":
        tok = -(y * logp).sum(-1)  # losses.soft_cross_entropy(z, y), reusing logp
        return (tok * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return gen_losses.token_edl_loss(z, y, b["tmask"], tau, evidence=loss.evidence,  # type: ignore[arg-type]
                                     kl_scale=loss.kl_scale, support=loss.support)


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
        idx = [r for e in items for r in rows.by_example[e]]
        total = torch.zeros((), device=fwd.device)
        size = rows_per_pass(fwd.net, ROW_CHUNK)
        for chunk in length_chunks([len(rows.ids[r]) for r in idx], size):
            b = collate(rows, [idx[j] for j in chunk], pad, fwd.device, frozen)
            total = total + (sequence_losses(fwd(b), b, loss, tau) * b["weight"]).sum()
        return total / len(items)

    stats = run_loop(lm, cfg, seed, len(examples), batch_loss,
                     before=before if frozen is not None else None, progress=progress,
                     desc=f"train {lm.name} ({loss.kind})", device=device)
    stats["truncated"] = rows.truncated
    if progress:
        log(f"{lm.name}: {stats['steps']} steps, {stats['tokens_per_s']:.0f} tokens/s, "
            f"loss {stats['first_loss']:.4f} → {stats['final_loss']:.4f}")
    return stats
