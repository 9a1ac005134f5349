"""The optimisation loop shared by the generation trainers (``lm_train`` and ``lm_dpo``).

Conventions of ``training.finetune``: fp32 master weights under bf16 autocast, linear warm-up +
cosine set per optimizer step, accelerate for placement/DDP, seeded shuffling; peft LoRA merged
at the end. Logits are computed only where targets are read (``TargetLogits``).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from w2s_core.device import autocast_bf16, pick_device
from w2s_core.errors import W2SError
from w2s_core.models.causal import CausalLM
from w2s_core.models.shared_prompt import (
    RootKV,
    head,
    prompt_target_states,
    root_cache,
    shares_prompts,
)
from w2s_core.training.finetune import _accelerator, _batches, _bf16_on, lr_factor

# Llama-family attention and MLP projections; models without them get peft's "all-linear"
LORA_PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PRECISION = {"auto": "auto", "bf16": "on", "fp32": "off"}


class TargetLogits(nn.Module):
    """Decoder → the hidden states that predict target tokens → output head → (R, T, V)
    logits. Wrapping the causal LM in one module keeps DDP's hooks on the whole forward pass.

    The head (a 576 × 49k matmul for SmolLM2: about a fifth of a training step's FLOPs) runs
    once per distinct predicting state, ``state`` (N,), a flat index into the pass's states;
    ``pick`` (R, T) spreads its logits to every row and target position
    (``lm_batches.collate``). With ``prompt_ids`` (a shared-prompt batch,
    ``collate(shared=True)``) each of the E distinct prompts — extended by the common prefix of
    its rows' targets — runs once and its KV cache is copied to its R rows, whose
    ``input_ids`` then hold only the rest of their targets: the K label sequences of one example
    cost one prompt, not K, and their common prefix one head; the first ``root`` tokens, common
    to all prompts, run once for the batch, or once for several chunks when their cache comes
    as ``root_kv`` (``Forward.root``). The states are the prompt pass's after the root
    (E·(Lp − root)) then the target pass's (R·Lt). Gradients reach the earlier passes through
    the cached keys and values."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                state: torch.Tensor, pick: torch.Tensor, prompt_ids: torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None,
                row_prompt: torch.Tensor | None = None, root: int = 0,
                root_kv: RootKV | None = None, spread: bool = True) -> torch.Tensor:
        if prompt_ids is None:
            h = self.model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                         use_cache=False).last_hidden_state  # (R, L, H)
            h = h.flatten(0, 1)
        else:
            assert prompt_mask is not None and row_prompt is not None
            hp, ht = prompt_target_states(self.model, input_ids, attention_mask, prompt_ids,
                                          prompt_mask, row_prompt, root, root_kv)
            h = torch.cat([hp.flatten(0, 1), ht.flatten(0, 1)])  # (E·(Lp − root) + R·Lt, H)
        z = head(self.model, h.index_select(0, state))  # (N, V)
        if not spread:  # the state logits themselves: a loss that reads them via ``pick``
            return z
        # index_select, not z[pick]: its backward adds whole rows (index_add), where advanced
        # indexing's accumulating backward runs element by element on one CPU thread
        return z.index_select(0, pick.flatten()).view(*pick.shape, -1)  # (R, T, V)


class Forward:
    """``net`` on a collated batch under the run's autocast, fp32 logits: (R, T, V) per row and
    target position, or ``states`` (N, V) per distinct predicting state (a loss that only reads
    log-probs of given tokens needs no more, ``gen_losses.token_logprob``). Counts the rows'
    tokens (``collate``'s ``tokens``: a shared prompt counts once per row, as if unshared, and
    the EOS that is a target but no input counts too: throughput stays comparable)."""

    def __init__(self, net: nn.Module, device: torch.device, autocast: bool) -> None:
        self.net, self.device, self.autocast = net, device, autocast
        self.tokens = torch.zeros((), dtype=torch.long, device=device)
        base = getattr(net, "module", net)  # under DDP
        # whether batches may be collated with shared prompts (``collate(shared=True)``)
        self.shares = isinstance(base, TargetLogits) and shares_prompts(base.model)

    def __call__(self, b: dict[str, torch.Tensor], spread: bool = True,
                 root_kv: RootKV | None = None) -> torch.Tensor:
        self.tokens += int(b["tokens"])  # a CPU count: adding it waits for nothing
        shared: dict[str, Any] = {k: b[k] for k in ("prompt_ids", "prompt_mask", "row_prompt")
                                  if k in b}
        if shared:
            shared["root"] = int(b["root"])
            if root_kv is not None:
                shared["root_kv"] = root_kv
        with autocast_bf16(self.device, self.autocast):
            z = self.net(b["input_ids"], b["attention_mask"], b["state"], b["pick"], **shared,
                         spread=spread)
        return z.float()  # losses over a large vocabulary need fp32

    def states(self, b: dict[str, torch.Tensor], root_kv: RootKV | None = None) -> torch.Tensor:
        """(N, V) fp32 logits of the batch's distinct predicting states (``b["pick"]`` reads
        them per row and target position)."""
        return self(b, spread=False, root_kv=root_kv)

    def root(self, b: dict[str, torch.Tensor]) -> RootKV | None:
        """The KV cache of a shared batch's first ``b["root"]`` prompt tokens
        (``shared_prompt.root_cache``), for every chunk collated with the same ``root``
        (``lm_batches.batch_root``): the instruction then runs once per batch, not per chunk.
        Called outside DDP's forward; its gradients join the chunks' in the one backward."""
        n = int(b.get("root", 0))
        if n == 0:
            return None
        base = getattr(self.net, "module", self.net)
        with autocast_bf16(self.device, self.autocast):
            return root_cache(base.model, b["prompt_ids"][:1, :n])


BatchLoss = Callable[[Forward, list[int], float], torch.Tensor]


def _add_lora(model: nn.Module, cfg: Any) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, mod in model.named_modules() if isinstance(mod, nn.Linear)}
    targets: list[str] | str = [p for p in LORA_PROJ if p in names] or "all-linear"
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none")
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in 5.x
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, lora)  # freezes everything but the adapters


def run_loop(lm: CausalLM, cfg: Any, seed: int, n: int, batch_loss: BatchLoss, *,
             before: Callable[[Forward], None] | None = None, progress: bool = False,
             desc: str = "train", device: str = "auto") -> dict[str, Any]:
    """Optimise ``batch_loss(forward, items, tau)`` (mean over ``items`` ⊂ range(n)) and put the
    trained (LoRA-merged) model back in ``lm.model``. ``before(forward)`` runs once, no grad, on
    the initial model (frozen targets, DPO reference). ``cfg`` needs LMTrainConfig's fields.
    ``seconds`` times the optimisation loop only; the model ends on the training device, in
    eval mode. ``device``: auto | cpu | cuda[:i] (under ``accelerate launch`` each process
    takes its own GPU whatever is named)."""
    from accelerate.utils import set_seed

    if cfg.precision not in _PRECISION:
        raise W2SError(f"unknown precision {cfg.precision!r}", "use auto, bf16 or fp32")
    if n == 0:
        raise W2SError("no training examples", "pass at least one example")
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or not cfg.epochs > 0:
        raise W2SError(f"bad training settings: batch_size={cfg.batch_size}, grad_accum="
                       f"{cfg.grad_accum}, epochs={cfg.epochs}", "use batch_size ≥ 1, "
                       "grad_accum ≥ 1 and epochs > 0")
    if any(p.dtype != torch.float32 for p in lm.model.parameters()):
        raise W2SError(f"{lm.name} has non-fp32 weights; training keeps fp32 master weights",
                       "load the model with dtype=torch.float32")
    dev = pick_device(device)
    bf16 = _bf16_on(_PRECISION[cfg.precision], dev)
    acc = _accelerator(dev, bf16)
    set_seed(seed)  # LoRA init and dropout
    gen = torch.Generator().manual_seed(seed)  # the shuffling order, independent of the above
    model = lm.model.to(acc.device)
    net = TargetLogits(_add_lora(model, cfg) if cfg.lora else model)
    if before is not None:
        net.eval()
        with torch.no_grad():
            before(Forward(net, acc.device, bf16))
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    # fused: one kernel over all tensors; on 2 CPU cores SmolLM2-135M's step took 0.14 s
    # against 0.50 s for the default per-tensor loop
    opt = torch.optim.AdamW(groups, lr=cfg.lr, fused=acc.device.type in ("cpu", "cuda"))
    world, rank, micro = acc.num_processes, acc.process_index, cfg.batch_size * acc.num_processes
    per_step = micro * cfg.grad_accum
    total = max(1, math.ceil(cfg.epochs * math.ceil(n / per_step)))
    warm = int(cfg.warmup * total)
    net, opt = acc.prepare(net, opt)  # no scheduler object: see training.finetune
    fwd = Forward(net, acc.device, bf16 and acc.device.type == "cpu")
    first = last = torch.zeros(())
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=desc, unit="step", disable=not (progress and acc.is_main_process))
    with bar:
        for step, batch in enumerate(_batches(n, per_step, total, gen)):
            chunks = [batch[i:i + micro] for i in range(0, len(batch), micro)]
            last = torch.zeros((), device=acc.device)
            for j, chunk in enumerate(chunks):
                items = chunk[rank::world] or chunk[:1]  # every process must take part
                sync = j == len(chunks) - 1
                with contextlib.nullcontext() if sync else acc.no_sync(net):
                    loss = batch_loss(fwd, items, step / total) / len(chunks)
                    acc.backward(loss)
                last = last + loss.detach()
            if cfg.grad_clip:
                acc.clip_grad_norm_(params, cfg.grad_clip)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, total, warm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            first = last if step == 0 else first
            if progress and (step % 20 == 0 or step == total - 1):
                bar.set_postfix(loss=f"{last.item():.4f}")
            bar.update()
    final = float(last)  # waits for the device, so the clock below is honest
    seconds = time.perf_counter() - t0
    tokens = int(acc.reduce(fwd.tokens.clone(), "sum"))
    trained = acc.unwrap_model(net).model
    lm.model = (trained.merge_and_unload() if cfg.lora else trained).eval()
    opt.state.clear()  # Adam moments go now; acc.free_memory()'s gc.collect costs ~1 s
    return {"steps": total, "seconds": seconds, "train_tokens": tokens,
            "tokens_per_s": tokens / max(seconds, 1e-9), "first_loss": float(first),
            "final_loss": final, "precision": "bf16" if bf16 else "fp32", "lora": cfg.lora,
            "trainable_params": sum(p.numel() for p in params)}
