"""Fine-tune one HF backbone + a linear head with a caller-supplied loss, return eval logits.

The loss is a closure ``loss_fn(logits, idx, tau)`` so that every method (soft CE, multi-weak,
Bayesian EDL, aux confidence) reuses this one loop and only decides the targets. The head is
Burns et al.'s: linear, no bias, on the mean-pooled encoder output or the last non-pad token of a
causal LM; zero-initialised for CE, small-random for EDL (``methods.registry.head_init``). The
learning rate follows ``lr_factor`` of the optimizer step, set by this loop itself: accelerate's
prepared scheduler would step ``num_processes`` times per optimizer step. Mixed precision is
autocast only: the trainable parameters and the optimizer state stay fp32 (METHOD §2: pure-bf16
AdamW silently drops small updates).
Runs under ``accelerate launch`` for multi-GPU; on CPU it is deterministic for a given seed.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from w2s_core.device import autocast_bf16, pick_device
from w2s_core.errors import W2SError
from w2s_core.methods.registry import HeadInit
from w2s_core.models.assets import load_encoder
from w2s_core.models.features import cpu_has_fast_bf16, effective_pooling, pad_batch, pool
from w2s_core.models.spec import ModelSpec
from w2s_core.training.probe import HEAD_LOGIT_STD, head_generator

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
CENTER_MOMENTUM = 0.1  # running mean of the batch means, for eval (BatchNorm's default)

# LoRA targets per architecture family (attention query/value, as in the LoRA paper)
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "mpnet": ["q", "v"],
    **{k: ["q_proj", "v_proj"] for k in ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")},
}


@dataclass
class FinetuneConfig:
    """Training settings. ``lr=None`` picks 5e-5 for full fine-tuning, 3e-4 for LoRA.

    ``batch_size`` is per device. ``bf16``: "auto" = on for CUDA with bf16 support and for CPUs
    with bf16 units (AVX-512 BF16/AMX), "on", "off"; weights stay fp32 either way.
    """

    mode: Literal["full", "lora"] = "full"
    lr: float | None = None
    epochs: float = 1.0
    batch_size: int = 16
    weight_decay: float = 0.01
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    warmup_frac: float = 0.1
    bf16: Literal["auto", "on", "off"] = "auto"
    device: str = "auto"
    eval_batch_size: int = 64
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    progress: bool = True


class PooledClassifier(nn.Module):
    """Backbone → pooled hidden state → bias-free linear head (fp32), zero-initialised here.

    ``centered`` (EDL students): the head reads pooled − mean, the batch's mean in training
    (gradient flowing through it, as in BatchNorm) and a running mean of those at eval. Each
    class's logits then sum to zero over every batch, as the probe's do over its z-scored
    features: some are positive, so relu evidence always has a gradient. Without it the
    pooled states' large common direction lets the head and backbone push one class's logits
    below zero on every example (the wrong-class NLL and the KL only ever push evidence down),
    after which that class is dead for good.
    """

    def __init__(self, backbone: nn.Module, n_classes: int, pooling: str,
                 centered: bool = False) -> None:
        super().__init__()
        self.backbone, self.pooling, self.centered = backbone, pooling, centered
        self.head = nn.Linear(backbone.config.hidden_size, n_classes, bias=False)
        nn.init.zeros_(self.head.weight)  # the student starts with no opinion (uniform)
        if centered:
            self.register_buffer("center", torch.zeros(backbone.config.hidden_size))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled hidden state (B, H), fp32: what the head sees (before centring)."""
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return pool(states.last_hidden_state, attention_mask, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.embed(input_ids, attention_mask)
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            if self.centered:
                pooled = pooled - self._mean(pooled)
            return self.head(pooled)  # fp32 logits: the loss needs their full precision

    def _mean(self, pooled: torch.Tensor) -> torch.Tensor:
        if not (self.training and pooled.shape[0] > 1):  # one row has no batch mean to speak of
            return self.center
        mu = pooled.mean(0)
        with torch.no_grad():
            self.center.lerp_(mu.detach(), CENTER_MOMENTUM)
        return mu


def init_random_head(head: nn.Linear, pooled: torch.Tensor, seed: int,
                     logit_std: float = HEAD_LOGIT_STD) -> None:
    """Seeded random head whose logits on ``pooled`` (M, H) have mean 0 and std ``logit_std``.

    Pooled transformer states share a large common direction μ (they are far from centred),
    so a plain random head gives each class logits of ONE sign on every example; a class whose
    logits all start negative is dead under relu evidence (no gradient, ever). Projecting μ
    (estimated on ``pooled``) out of every row makes the logits w·(h − μ): centred, so every
    class is positive on about half the examples. The scale keeps the start nearly uniform.
    The weights come from the CPU generator, so every process draws the same head.
    """
    h = pooled.detach().to("cpu", torch.float64)
    w = torch.randn(tuple(head.weight.shape), generator=head_generator(seed),
                    dtype=torch.float64)  # (C, H)
    mu = h.mean(0)
    if float(mu @ mu) > 0:
        w = w - torch.outer(w @ mu, mu) / (mu @ mu)
    sd = (h @ w.T).std(0, unbiased=False)  # (C,)
    # one example (or identical ones) gives no spread: scale as for unit-variance inputs
    scale = torch.where(sd > 0, logit_std / sd, logit_std / math.sqrt(h.shape[-1]))
    with torch.no_grad():
        head.weight.copy_((w * scale[:, None]).to(head.weight.dtype))


def lr_factor(step: int, total: int, warm: int) -> float:
    """LR multiplier at optimizer step ``step`` (0-based) of ``total``: linear warm-up over
    ``warm`` steps, then cosine decay to zero. Progress is clamped to [0, 1], so a step past
    ``total`` stays at zero instead of climbing back up the cosine."""
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, max(0.0, (step - warm) / max(1, total - warm)))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _bf16_on(setting: str, device: torch.device) -> bool:
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"bf16 must be 'auto', 'on' or 'off', not {setting!r}")
    if setting != "auto":
        return setting == "on"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def _accelerator(device: torch.device, bf16: bool) -> Any:
    """On CUDA accelerate does the bf16 autocast (and DDP under ``accelerate launch``); on CPU
    it runs with "no" and this module autocasts itself, as accelerate's CPU path expects."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    kwargs = {"mixed_precision": "bf16" if bf16 and device.type == "cuda" else "no",
              "cpu": device.type == "cpu"}
    try:
        return Accelerator(**kwargs)
    except ValueError:  # an earlier call in this process fixed other settings; start over
        AcceleratorState._reset_state()
    try:
        return Accelerator(**kwargs)
    except ValueError as exc:  # e.g. bf16 forced on a GPU without bf16 units
        raise W2SError(f"accelerate refused mixed_precision={kwargs['mixed_precision']!r} on "
                       f"{device}: {str(exc).splitlines()[0]}",
                       "set precision: fp32, or auto to pick bf16 only where it is supported"
                       ) from exc


def _lora(backbone: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = LORA_TARGETS.get(backbone.config.model_type, "all-linear")
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none")
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in 5.x
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(backbone, lora)  # freezes everything but the adapters


def _batches(n: int, per_step: int, total_steps: int, gen: torch.Generator) -> Iterator[list[int]]:
    """Global batches of reshuffled epochs until ``total_steps`` (epochs may be fractional)."""
    step = 0
    while True:
        perm = torch.randperm(n, generator=gen).tolist()
        for start in range(0, n, per_step):
            if step == total_steps:
                return
            yield perm[start:start + per_step]
            step += 1


def finetune_predict(spec: ModelSpec, train_texts: list[str], loss_fn: LossFn,
                     eval_texts: list[str], n_classes: int, cfg: FinetuneConfig, seed: int,
                     *, on_step: Callable[[int, torch.Tensor], None] | None = None,
                     head_init: HeadInit = "zeros", max_length: int = 128,
                     truncation_side: str = "right") -> np.ndarray:
    """Train on ``train_texts`` with ``loss_fn``; return ``(len(eval_texts), n_classes)`` logits.

    ``loss_fn(logits (B, C) fp32, idx (B,) long CPU tensor of training-example indices,
    tau = step / total_steps in [0, 1))`` returns a scalar; the caller owns the targets.
    ``on_step(step, loss)`` gets the detached loss tensor (no GPU sync unless it asks).
    ``head_init``: "zeros" (CE students, teachers) or "random" (EDL students: pass
    ``methods.registry.head_init(family)``), see ``init_random_head``.
    """
    from accelerate.utils import set_seed

    if not train_texts:
        raise ValueError("finetune_predict needs at least one training text")
    device = pick_device(cfg.device)
    bf16 = _bf16_on(cfg.bf16, device)
    acc = _accelerator(device, bf16)
    own_autocast = bf16 and acc.device.type == "cpu"
    set_seed(seed)  # dropout masks and LoRA init
    gen = torch.Generator().manual_seed(seed)  # the shuffling order, independent of the above

    backbone, tok = load_encoder(spec, "cpu")
    pooling = effective_pooling(spec, backbone)
    if cfg.gradient_checkpointing:
        # non-reentrant: with frozen embeddings (LoRA) the reentrant variant drops all grads
        backbone.gradient_checkpointing_enable({"use_reentrant": False})
    if cfg.mode == "lora":
        backbone = _lora(backbone, cfg)
    elif cfg.mode != "full":
        raise ValueError(f"mode must be 'full' or 'lora', not {cfg.mode!r}")
    model = PooledClassifier(backbone, n_classes, pooling, centered=head_init == "random")

    tok.truncation_side = truncation_side  # data settings (DataConfig), as for the features

    def encode(texts: list[str]) -> list[list[int]]:
        return tok(list(texts), truncation=True, max_length=max_length)["input_ids"]

    train_ids, pad_id = encode(train_texts), tok.pad_token_id
    if head_init == "random":
        _init_head_on_sample(model, train_ids, pad_id, cfg, seed, acc.device, bf16)
    elif head_init != "zeros":
        raise ValueError(f"head_init must be 'zeros' or 'random', not {head_init!r}")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    lr = cfg.lr if cfg.lr is not None else (3e-4 if cfg.mode == "lora" else 5e-5)
    opt = torch.optim.AdamW(groups, lr=lr, fused=acc.device.type == "cuda")

    world, rank = acc.num_processes, acc.process_index
    per_step = cfg.batch_size * world
    total = max(1, math.ceil(cfg.epochs * math.ceil(len(train_texts) / per_step)))
    warm = int(cfg.warmup_frac * total)

    # no scheduler object: accelerate's prepared one steps num_processes times per call
    model, opt = acc.prepare(model, opt)
    bar = tqdm(total=total, desc=f"fine-tune {spec.name}", unit="step",
               disable=not (cfg.progress and acc.is_local_main_process))
    with bar:
        for step, batch in enumerate(_batches(len(train_texts), per_step, total, gen)):
            rows = batch[rank::world] or batch[:1]  # every process must take part in a step
            input_ids, mask = pad_batch(train_ids, rows, pad_id, acc.device)
            with autocast_bf16(acc.device, own_autocast):
                logits = model(input_ids, mask).float()
            loss = loss_fn(logits, torch.tensor(rows, dtype=torch.long), step / total)
            acc.backward(loss)
            if cfg.grad_clip:
                acc.clip_grad_norm_(params, cfg.grad_clip)
            for group in opt.param_groups:  # exactly once per optimizer step, any world size
                group["lr"] = lr * lr_factor(step, total, warm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if on_step is not None:
                on_step(step, loss.detach())
            if step % 20 == 0 or step == total - 1:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update()
    return _predict(acc.unwrap_model(model), encode(eval_texts), pad_id, n_classes, cfg,
                    acc.device, own_autocast)


def _init_head_on_sample(model: PooledClassifier, train_ids: list[list[int]], pad_id: int,
                         cfg: FinetuneConfig, seed: int, device: torch.device, bf16: bool
                         ) -> None:
    """Running centre and ``init_random_head`` from up to ``eval_batch_size`` training texts
    spread evenly over the set (no RNG: the shuffling order is untouched). Runs before
    ``acc.prepare``: DDP then broadcasts rank 0's head and centre to every process."""
    n = len(train_ids)
    rows = np.unique(np.linspace(0, n - 1, min(n, cfg.eval_batch_size)).round().astype(int))
    model.to(device).eval()
    input_ids, mask = pad_batch(train_ids, rows, pad_id, device)
    with torch.no_grad(), autocast_bf16(device, bf16):
        pooled = model.embed(input_ids, mask).float()
        model.center.copy_(pooled.mean(0))
    init_random_head(model.head, pooled, seed)


def _predict(model: nn.Module, ids: list[list[int]], pad_id: int, n_classes: int,
             cfg: FinetuneConfig, device: torch.device, own_autocast: bool) -> np.ndarray:
    """Eval logits in input order; length-sorted batches keep padding (and time) minimal."""
    out = np.zeros((len(ids), n_classes), dtype=np.float32)
    order = np.argsort([-len(x) for x in ids], kind="stable")
    model.eval()
    ctx = autocast_bf16(device, own_autocast) if own_autocast else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        for start in range(0, len(ids), cfg.eval_batch_size):
            rows = order[start:start + cfg.eval_batch_size]
            input_ids, mask = pad_batch(ids, rows, pad_id, device)
            out[rows] = model(input_ids, mask).float().cpu().numpy()
    return out
