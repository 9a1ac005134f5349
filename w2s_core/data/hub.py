"""The paper's hub data sets, cast as binary tasks the way Burns et al. (2023) do.

SciQ and CosmosQA become "is this answer right?": each question appears once, with its
correct answer or (probability 1/2, seeded by ``cfg.seed``) a random wrong one. BoolQ keeps
its yes/no answer as the label. They need the Hugging Face hub, which our machines cannot
reach, so the same code path also reads a local copy (``cfg.path``, JSONL/JSON/CSV in the
hub's field schema); the tests run it on tiny fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2s_core.data.schema import DataConfig, TextDataset
from w2s_core.errors import W2SError

Row = Mapping[str, Any]
Formatter = Callable[[Row, np.random.Generator], tuple[str, int] | None]
_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _sciq(row: Row, rng: np.random.Generator) -> tuple[str, int]:
    right = rng.random() < 0.5
    wrong = [row["distractor1"], row["distractor2"], row["distractor3"]]
    answer = row["correct_answer"] if right else wrong[int(rng.integers(len(wrong)))]
    return f"Q: {row['question']} A: {answer}", int(right)


def _cosmos_qa(row: Row, rng: np.random.Generator) -> tuple[str, int] | None:
    gold = int(row["label"])
    if gold not in range(4):
        return None  # the hub's test split hides its labels as -1
    right = rng.random() < 0.5
    wrong = [row[f"answer{i}"] for i in range(4) if i != gold]
    answer = row[f"answer{gold}"] if right else wrong[int(rng.integers(len(wrong)))]
    return f"{row['context']} Q: {row['question']} A: {answer}", int(right)


def _boolq(row: Row, rng: np.random.Generator) -> tuple[str, int]:
    raw = str(row["answer"]).strip().lower()  # bool from JSON, "True"/"False" from CSV
    if raw not in _TRUE | _FALSE:
        raise W2SError(f"boolq answer {row['answer']!r} is not true/false",
                       "store answer as a boolean (true/false) in the local file")
    question = str(row["question"]).strip().rstrip("?")
    return f"Passage: {row['passage']}\nQuestion: {question}?\nA:", int(raw in _TRUE)


@dataclass(frozen=True)
class HubTask:
    name: str
    hub_id: str
    split: str  # the labelled hub splits, pooled: our weak/transfer/test splits are seeded
    fields: tuple[str, ...]
    class_names: tuple[str, str]
    fmt: Formatter


TASKS = {t.name: t for t in (
    HubTask("sciq", "allenai/sciq", "train+validation+test",
            ("question", "correct_answer", "distractor1", "distractor2", "distractor3"),
            ("incorrect", "correct"), _sciq),
    HubTask("cosmos_qa", "allenai/cosmos_qa", "train+validation",
            ("context", "question", "answer0", "answer1", "answer2", "answer3", "label"),
            ("incorrect", "correct"), _cosmos_qa),
    HubTask("boolq", "google/boolq", "train+validation", ("question", "passage", "answer"),
            ("false", "true"), _boolq),
)}


def format_rows(task: HubTask, rows: Iterable[Row],
                seed: int) -> tuple[list[str], list[int], list[int]]:
    """Texts, labels and source row numbers; pure and seeded, so the 1/2 rate is testable."""
    rng = np.random.default_rng(seed)
    texts, labels, src = [], [], []
    for i, row in enumerate(rows):
        out = task.fmt(row, rng)
        if out is not None:
            texts.append(out[0])
            labels.append(out[1])
            src.append(i)
    return texts, labels, src


def _offline() -> bool:
    """Read at call time: ``datasets`` only reads these variables when first imported."""
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def hub_split(repo: str, split: str, problem: str, fix: str) -> Any:
    """``datasets.load_dataset(repo, split=split)``, or one W2SError(problem, fix) when the hub
    is switched off or the download fails (network, unknown repo or split)."""
    if _offline():
        raise W2SError(problem, fix)
    import datasets  # slow import; only hub users pay for it

    try:
        return datasets.load_dataset(repo, split=split)
    except Exception as exc:  # any hub/network failure becomes one actionable line
        raise W2SError(problem, fix) from exc


def _load_rows(task: HubTask, path: str | None) -> Any:
    fields = ", ".join(task.fields)
    if path is None:
        return hub_split(task.hub_id, task.split,
                         f"could not download hub dataset '{task.hub_id}' (offline?)",
                         f"pass a local copy with path=... (JSONL with fields {fields})")
    file = Path(path)
    if not file.is_file():
        raise W2SError(f"local copy of {task.name} not found: {file}",
                       f"pass an existing JSONL/CSV file with fields {fields}")
    fmt = _FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise W2SError(f"{file.name}: unsupported extension '{file.suffix}' for {task.name}",
                       "use .jsonl, .json or .csv")
    import datasets

    try:
        ds = datasets.load_dataset(fmt, data_files=str(file), split="train")
    except Exception as exc:
        raise W2SError(f"could not read {file} as {fmt}: {type(exc).__name__}",
                       f"check the file is valid {fmt.upper()} with fields {fields}") from exc
    missing = [f for f in task.fields if f not in ds.column_names]
    if missing:
        raise W2SError(f"{file.name} lacks field(s) {', '.join(missing)} for {task.name} "
                       f"(has: {', '.join(ds.column_names)})", f"provide fields {fields}")
    return ds


def load_hub(cfg: DataConfig, task_name: str) -> TextDataset:
    task = TASKS[task_name]
    rows = _load_rows(task, cfg.path)
    texts, labels, src = format_rows(task, rows, cfg.seed)
    origin = "hub" if cfg.path is None else "file"
    return TextDataset(cfg.name, texts, np.array(labels, dtype=np.int64), task.class_names,
                       [f"{task.name}-{origin}-{i}" for i in src])


def load_sciq(cfg: DataConfig) -> TextDataset:
    """SciQ as "Q: {question} A: {answer}", 1 = correct answer, 0 = a random distractor."""
    return load_hub(cfg, "sciq")


def load_cosmos_qa(cfg: DataConfig) -> TextDataset:
    """CosmosQA as "{context} Q: {question} A: {answer}", 1 = correct, 0 = a wrong option."""
    return load_hub(cfg, "cosmos_qa")


def load_boolq(cfg: DataConfig) -> TextDataset:
    """BoolQ as "Passage: ...\\nQuestion: ...?\\nA:", label = the gold yes/no answer."""
    return load_hub(cfg, "boolq")
