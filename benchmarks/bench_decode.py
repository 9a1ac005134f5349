"""N-best decoding throughput: ``decode.nbest`` against a plain per-utterance ``generate`` loop.

Both run beam search with the same beams and ``max_new_tokens`` over the same prompts. The
baseline is what one would write first: one ``model.generate(num_beams=..., num_return_sequences
=...)`` call per utterance, decoded. ``nbest`` batches ``--batch-size`` left-padded prompts per
``generate`` call and then rescores every distinct candidate exactly (teacher-forced forward
passes) — it does more work per utterance and must still be faster. Utterances/s of both and
their ratio are printed (target ≥ 3×), plus how often both return the same candidate set.

    python benchmarks/bench_decode.py                          # tiny random scratch Llama (CPU)
    python benchmarks/bench_decode.py --model smollm2-135m --n 64 --device auto

``--greedy`` times a student's test decoding instead: ``greedy.greedy`` (rows leave the batch at
EOS) against batched ``generate(do_sample=False)`` on the same batches (finished rows keep
computing until the batch's longest stops) and against the per-utterance loop, and checks all
three give the same texts. Use a fine-tuned model folder (``--model DIR``): an untuned model
rarely stops, and then every decoder runs to the token cap.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from w2s_core.cli import tune_process  # noqa: E402
from w2s_core.data.prompts import build_prompt, format_slots  # noqa: E402
from w2s_core.device import pick_device  # noqa: E402
from w2s_core.models.decode import _pad, nbest  # noqa: E402
from w2s_core.models.greedy import greedy  # noqa: E402

CITIES = ["boston", "new york", "denver", "san francisco", "atlanta", "dallas", "miami"]
DAYS = ["tomorrow", "monday", "next friday", "this weekend", "tonight"]
TEMPLATES = ["book a flight from {a} to {b} {d}", "what is the weather in {a} {d}",
             "wake me up {d} at seven", "show me trains to {b} leaving {d} from {a}"]


def utterances(n: int) -> list[str]:
    """``n`` synthetic slot-filling sentences of varied length (deterministic)."""
    out = []
    for i in range(n):
        t = TEMPLATES[i % len(TEMPLATES)]
        out.append(t.format(a=CITIES[i % len(CITIES)], b=CITIES[(3 * i + 1) % len(CITIES)],
                            d=DAYS[i % len(DAYS)]))
    return out


def atis(n: int) -> list[str]:
    """The last ``n`` utterances of the packaged ATIS slot-filling set."""
    from w2s_core.data.registry import load_slot_dataset
    from w2s_core.data.schema import DataConfig

    return list(load_slot_dataset(DataConfig("atis-slots")).texts[-n:])


def load(name: str, device: torch.device, sentences: list[str], random_init: bool = False) -> Any:
    """The CausalLM to benchmark: ``tiny`` = a random scratch word-level Llama (no download),
    ``random_init``: random weights of a shape folder's model (``model_shape.py``), anything
    else through ``load_causal`` (imported here: only needed for real models)."""
    if random_init:
        from model_shape import random_causal

        return random_causal(Path(name), device)
    if name == "tiny":
        from w2s_core.models.scratch_lm import build_scratch_lm

        texts = [build_prompt(s) for s in sentences] + [
            format_slots([("city", c), ("date", d)]) for c in CITIES for d in DAYS]
        return build_scratch_lm("word", texts, layers=2, hidden=64, heads=4, seed=0)
    from w2s_core.models.causal import load_causal

    return load_causal(name, device)


def baseline(lm: Any, prompts: list[str], beams: int, new: int) -> list[list[str]]:
    """One ``generate`` call per prompt (no padding), texts cut at EOS, deduplicated."""
    tok, model, out = lm.tokenizer, lm.model, []
    eos = tok.eos_token_id
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([tok(p)["input_ids"]], device=lm.device)
            seqs = model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=beams,
                                  num_return_sequences=beams, max_new_tokens=new,
                                  do_sample=False, early_stopping=beams > 1, eos_token_id=eos,
                                  pad_token_id=tok.pad_token_id)
            texts = []
            for s in seqs[:, ids.shape[1]:].tolist():
                s = s[: s.index(eos)] if eos in s else s
                texts.append(tok.decode(s, skip_special_tokens=True))
            out.append(list(dict.fromkeys(texts)))
    return out


def batched_greedy(lm: Any, prompts: list[str], new: int, batch: int) -> list[str]:
    """HF ``generate`` greedy over left-padded batches of ``batch`` prompts, texts cut at EOS."""
    tok, model, out = lm.tokenizer, lm.model, []
    eos = tok.eos_token_id
    with torch.no_grad():
        for b in range(0, len(prompts), batch):
            rows = [tok(p)["input_ids"] for p in prompts[b: b + batch]]
            ids, mask = _pad(rows, tok.pad_token_id, left=True)
            seqs = model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                  do_sample=False, num_beams=1, max_new_tokens=new,
                                  eos_token_id=eos, pad_token_id=tok.pad_token_id)
            for s in seqs[:, ids.shape[1]:].tolist():
                s = s[: s.index(eos)] if eos in s else s
                out.append(tok.decode(s, skip_special_tokens=True))
    return out


def bench_greedy(lm: Any, prompts: list[str], new: int, batch: int) -> None:
    n = len(prompts)
    greedy(lm, prompts[:2], max_new_tokens=new, batch_size=batch, max_length=1024)  # warm-up
    stats: dict[str, int] = {}
    mine, t_mine = timed(lambda: greedy(lm, prompts, max_new_tokens=new, batch_size=batch,
                                        max_length=1024, stats=stats))
    hf, t_hf = timed(lambda: batched_greedy(lm, prompts, new, batch))
    one, t_one = timed(lambda: [t[0] for t in baseline(lm, prompts, 1, new)])
    print(f"per-utterance generate : {n / t_one:8.2f} utt/s ({t_one:.2f} s)")
    print(f"batched generate       : {n / t_hf:8.2f} utt/s ({t_hf:.2f} s)")
    print(f"greedy (rows drop out) : {n / t_mine:8.2f} utt/s ({t_mine:.2f} s)")
    print(f"speed-up               : {t_hf / t_mine:8.2f}x vs batched generate, "
          f"{t_one / t_mine:.2f}x vs per-utterance")
    print(f"same texts             : {sum(a == b for a, b in zip(mine, hf, strict=True))}/{n} "
          f"(batched), {sum(a == b for a, b in zip(mine, one, strict=True))}/{n} "
          f"(per-utterance); {stats.get('unfinished', 0)} hit the cap")


def timed(fn: Any) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="tiny (default) or a causal LM name/folder")
    ap.add_argument("--n", type=int, default=32, help="utterances")
    ap.add_argument("--beams", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--random-init", action="store_true", help="--model is a folder of config + "
                    "tokenizer (model_shape.py): random weights, every beam runs to the cap")
    ap.add_argument("--bf16", action="store_true", help="nbest under bf16 autocast")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--greedy", action="store_true",
                    help="time greedy test decoding (rows drop out at EOS) instead of N-best")
    ap.add_argument("--atis", action="store_true",
                    help="ATIS test utterances (the generation demo's) instead of synthetic ones")
    args = ap.parse_args()
    tune_process()  # as the w2s CLI does, for both loops
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    sentences = atis(args.n) if args.atis else utterances(args.n)
    lm = load(args.model, device, sentences, args.random_init)
    lm.model.to(device).eval()
    prompts = [build_prompt(s) for s in sentences]
    n_params = sum(p.numel() for p in lm.model.parameters())
    print(f"model {args.model} ({n_params / 1e6:.1f}M params) on {device}, {args.n} utterances, "
          f"{args.beams} beams, {args.max_new_tokens} new tokens, batch {args.batch_size}")

    if args.greedy:
        bench_greedy(lm, prompts, args.max_new_tokens, args.batch_size)
        return
    # warm-up (allocator, kernels) on two prompts each
    nbest(lm, prompts[:2], num_beams=args.beams, n_best=args.beams,
          max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, bf16=args.bf16)
    baseline(lm, prompts[:2], args.beams, args.max_new_tokens)

    stats: dict[str, int] = {}
    got, t_nbest = timed(lambda: nbest(
        lm, prompts, num_beams=args.beams, n_best=args.beams,
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, bf16=args.bf16,
        stats=stats))
    ref, t_base = timed(lambda: baseline(lm, prompts, args.beams, args.max_new_tokens))
    same = sum(set(c.text for c in g) == set(r) for g, r in zip(got, ref, strict=True))
    print(f"per-utterance generate : {args.n / t_base:8.2f} utt/s ({t_base:.2f} s)")
    print(f"nbest (batched+scored) : {args.n / t_nbest:8.2f} utt/s ({t_nbest:.2f} s)")
    print(f"speed-up               : {t_base / t_nbest:8.2f}x  (target >= 3x)")
    print(f"same candidate sets    : {same}/{args.n} prompts; stats {stats}")


if __name__ == "__main__":
    main()
