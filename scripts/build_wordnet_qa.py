"""Build ``data/wordnet_qa.jsonl``: a SciQ-style "is this answer right?" task from WordNet 3.0.

Why: SciQ/CosmosQA (the paper's QA tasks) cannot be downloaded offline, so this gives a
real-data stand-in. Each item asks "What is a {lemma}?" and offers either the lemma's own
gloss (label 1) or the gloss of a sibling synset under the same hypernym (label 0). Siblings
are semantically close, so the negatives are hard, like SciQ's distractors.

Needs Debian's WordNet files (``apt-get install -y wordnet-base wordnet-sense-index``); the
output is committed, so normal users never run this. The same arguments always give the
same bytes: the input is read in file order and ``random.Random(seed)`` (stable across
Python versions) makes every choice.

    python scripts/build_wordnet_qa.py --wordnet-dir /usr/share/wordnet \\
        --out data/wordnet_qa.jsonl --n 6000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

_EXAMPLES = re.compile(r'[;,]\s*"')  # examples follow as '; "an example"' (rarely ', "')
_LEMMA_OK = re.compile(r"[a-z][a-z' -]*[a-z]")


@dataclass(frozen=True)
class Synset:
    offset: str
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str


def parse_data_noun(path: Path) -> list[Synset]:
    """Parse WordNet's ``data.noun`` (format documented in wndb(5)); skip instance nouns.

    Instances ("Paris", "Hegira") have ``@i`` pointers; "What is a Paris?" is not a question.
    """
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(" ") or "|" not in line:
            continue  # licence header
        head, _, gloss = line.partition(" | ")
        f = head.split()
        n_words = int(f[3], 16)
        lemmas = tuple(f[4 + 2 * i].replace("_", " ") for i in range(n_words))
        p = 4 + 2 * n_words
        n_ptr = int(f[p])
        ptrs = [f[p + 1 + 4 * i: p + 5 + 4 * i] for i in range(n_ptr)]
        if any(sym == "@i" for sym, *_ in ptrs):
            continue
        hyper = tuple(off for sym, off, pos, _ in ptrs if sym == "@" and pos == "n")
        gloss = _EXAMPLES.split(gloss.strip(), maxsplit=1)[0].strip().rstrip(";").strip()
        out.append(Synset(f[0], lemmas, hyper, gloss))
    return out


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def build(synsets: list[Synset], n: int, seed: int) -> list[dict[str, object]]:
    """Pick ``n`` questions (half true, half sibling gloss), each about a distinct synset.

    The question lemma must be monosemous among nouns: for "bank", the gloss of another
    sense would be a true answer labelled false. For the same reason the distractor synset
    must not contain the lemma, and its gloss must differ from the true one.
    """
    senses = Counter(lemma.lower() for s in synsets for lemma in s.lemmas)
    children: dict[str, list[Synset]] = defaultdict(list)
    for s in synsets:
        for h in s.hypernyms:
            children[h].append(s)
    by_offset = {s.offset: s for s in synsets}
    candidates = []
    for s in synsets:
        lemma = s.lemmas[0]
        if not s.gloss or senses[lemma.lower()] != 1 or not _LEMMA_OK.fullmatch(lemma):
            continue
        sibs = sorted({c.offset for h in s.hypernyms for c in children[h]
                       if c.offset != s.offset and c.gloss and c.gloss != s.gloss
                       and lemma.lower() not in {x.lower() for x in c.lemmas}})
        if sibs:
            candidates.append((s, sibs))
    rng = random.Random(seed)
    if n > len(candidates):
        raise SystemExit(f"only {len(candidates)} usable synsets; lower --n")
    picked = rng.sample(candidates, n)
    labels = [1] * (n // 2) + [0] * (n - n // 2)
    rng.shuffle(labels)
    rows = []
    for (s, sibs), label in zip(picked, labels, strict=True):
        lemma = s.lemmas[0]
        gloss = s.gloss if label else by_offset[rng.choice(sibs)].gloss
        rows.append({"id": f"wnqa-{s.offset}", "text": f"Q: What is {article(lemma)} {lemma}? "
                     f"A: {gloss}", "label": label})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--out", type=Path, default=Path("data/wordnet_qa.jsonl"))
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src = args.wordnet_dir / "data.noun"
    if not src.is_file():
        raise SystemExit(f"{src} not found — apt-get install -y wordnet-base wordnet-sense-index")
    rows = build(parse_data_noun(src), args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} items ({sum(r['label'] for r in rows)} true) to {args.out}")


if __name__ == "__main__":
    main()
