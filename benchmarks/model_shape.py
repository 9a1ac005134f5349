"""A causal LM's shape without its weights: config + tokenizer files, and a random-init model.

A GPU machine lent to a session takes at most 64 MiB of files, and SmolLM2-135M's weights alone
are 538 MB (fp32). Training and teacher-forced passes cost the same whatever the weights hold,
so the speed benchmarks can run there on a model of the same shape with random weights:

    python benchmarks/model_shape.py smollm2-135m .gpu/smollm2-135m     # here: ~3.5 MB of files
    python benchmarks/bench_lm_train.py --model .gpu/smollm2-135m --random-init   # there

Decoding differs: random weights rarely emit EOS, so beam search runs every utterance to the
token cap (both the batched decoder and the per-utterance loop it is compared with).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from w2s_core.data.prompts import ensure_pad  # noqa: E402
from w2s_core.models.causal import CausalLM  # noqa: E402

SHAPE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja")


def export_shape(name: str, out: Path) -> list[str]:
    """Copy the config and tokenizer files (no weights) of registry model ``name``, converted
    into the local cache first if need be, into ``out``; the names copied."""
    from w2s_core.models.assets import materialize
    from w2s_core.models.registry import resolve_model

    src = materialize(resolve_model(name).base)
    out.mkdir(parents=True, exist_ok=True)
    copied = [f for f in SHAPE_FILES if (src / f).is_file()]
    for f in copied:
        shutil.copy2(src / f, out / f)
    return copied


def random_causal(folder: Path, device: str | torch.device = "cpu", seed: int = 0) -> CausalLM:
    """The causal LM that ``folder``'s config describes, fp32 with seeded random weights, and
    the folder's tokenizer (pad token set as ``load_causal`` sets it)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(folder)
    cfg.use_cache = True
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    ensure_pad(tok)
    return CausalLM(Path(folder).name, model.to(device).eval(), tok)


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a registry name, e.g. smollm2-135m")
    ap.add_argument("out", type=Path, help="the folder to write")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config field (another size of the same family: "
                    "hidden_size=2048 ...)")
    args = ap.parse_args()
    files = export_shape(args.model, args.out)
    if args.set:
        cfg = json.loads((args.out / "config.json").read_text())
        for item in args.set:
            key, _, value = item.partition("=")
            if key not in cfg:
                sys.exit(f"--set {key}: {args.model}'s config has no field {key!r}")
            cfg[key] = json.loads(value)
        (args.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    size = sum((args.out / f).stat().st_size for f in files)
    print(f"{args.out}: {', '.join(files)} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
