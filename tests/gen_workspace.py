"""The tiny generation workspace the tests share (engine and dashboard): a real sweep on
scratch models, small enough for CI.

A word-level 1-layer student and the gpt-char / gpt-word teachers trained from scratch on
24/12/8 ATIS utterances, every generation method, DPO with ε ∈ {0, 0.1, confidence} after
bayes; then the same experiment grows by bayes runs in the frozen and live bridge modes, by
a second seed of bayes (+ DPO) and by joint decoding scored per character. Also a script:
``python tests/gen_workspace.py OUT`` writes one to OUT (dashboard development,
benchmarks/bench_dashboard.py).

``python tests/gen_workspace.py --full-shape OUT`` writes a workspace of the full generation
demo's shape instead (500/500/300 utterances, three teachers of three tokenizers, every subset,
± aux, 3 seeds, DPO after bayes at K = 3) from the same kind of tiny scratch models: the
dashboard's load at the full demo's size, without the GPU hours its SmolLM2 student takes.
Its SLU-F1 values say nothing about the methods.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

from w2s_core.data.prompts import build_prompt, format_slots
from w2s_core.data.registry import load_slot_dataset
from w2s_core.data.schema import DataConfig
from w2s_core.experiments.config import ExperimentConfig, gen_demo_config
from w2s_core.experiments.gen_config import DPOSettings, GenerationConfig, GenOptions, ScratchConfig
from w2s_core.experiments.sweep import Sweep
from w2s_core.training.lm_dpo import DPOConfig
from w2s_core.training.lm_train import LMTrainConfig

TEACHERS = ("gpt-char", "gpt-word")
EPS = (0.0, 0.1, "confidence")
N_WEAK, N_TRANSFER, N_TEST = 24, 12, 8
EXTRA_SWEEPS = (
    {"methods": ("bayes",), "gen_options": GenOptions(target_mode="frozen")},
    {"methods": ("bayes",), "gen_options": GenOptions(target_mode="live")},
    {"methods": ("bayes",), "seeds": (1,)},
    {"methods": ("joint",), "gen_options": GenOptions(joint_score="per_char")},
)
# the main sweep's runs: what counts refer to
MAIN = {"target_mode": "detached", "joint_score": "sum", "seed": 0}


def _config(student: Path) -> ExperimentConfig:
    """Sized to run in well under a minute on 2 CPU cores while the gpt-word teacher and the
    student still learn to emit valid JSON (so SLU-F1 is not trivially 0 everywhere)."""
    teach = LMTrainConfig(epochs=25.0, lr=1e-2, batch_size=8, max_length=768)
    stud = LMTrainConfig(epochs=30.0, lr=1e-2, batch_size=4, max_length=256)
    gen = GenerationConfig(
        num_beams=2, n_best=2, teacher_train=teach, student_train=stud,
        scratch=ScratchConfig(layers=1, hidden=32, heads=2, train=teach),
        dpo=DPOSettings(after=("bayes",), eps=EPS, beams=4,
                        train=DPOConfig(epochs=1.0, lr=1e-4, batch_size=4)))
    # methods left unset: a generation experiment must get every generation method
    return ExperimentConfig(
        name="gen-tiny", task="generation",
        data=DataConfig("atis-slots", n_weak=N_WEAK, n_transfer=N_TRANSFER, n_test=N_TEST),
        teachers=TEACHERS, student=str(student), seeds=(0,), aux=(False,), generation=gen)


def full_shape_config(student: Path) -> ExperimentConfig:
    """The full demo's data sizes, teachers, subsets, aux and seeds (``gen_demo_config()``);
    tiny scratch models and few epochs (~30 min on 2 CPU cores: 180 runs)."""
    demo = gen_demo_config()
    teach = LMTrainConfig(epochs=6.0, lr=1e-2, batch_size=16, max_length=768)
    stud = LMTrainConfig(epochs=2.0, lr=1e-2, batch_size=8, max_length=256)
    gen = dataclasses.replace(
        demo.generation, teacher_train=teach, student_train=stud,
        scratch=ScratchConfig(layers=1, hidden=32, heads=2, train=teach),
        dpo=dataclasses.replace(demo.generation.dpo, train=DPOConfig(epochs=1.0, lr=1e-4,
                                                                     batch_size=8)))
    return dataclasses.replace(demo, name="gen-full-shape", student=str(student),
                               aux=(False, True), generation=gen)


def _student(root: Path) -> Path:
    from w2s_core.models.causal import save_causal
    from w2s_core.models.scratch_lm import build_scratch_lm

    ds = load_slot_dataset(DataConfig("atis-slots"))
    corpus = [build_prompt(t) for t in ds.texts[:100]] + \
        [format_slots(p) for p in ds.slots[:100]]
    save_causal(build_scratch_lm("word", corpus, layers=1, hidden=64, heads=2, seed=0,
                                 name="student"), root / "student")
    return root / "student"


def build_full_shape(root: Path) -> Path:
    """Run the full-shape sweep under ``root`` (one intra-op thread, as ``build``); returns
    the workspace."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ws = root / "ws"
        Sweep(full_shape_config(_student(root)), ws, progress=True).run()
    finally:
        torch.set_num_threads(threads)
    return ws


def build(root: Path) -> SimpleNamespace:
    """Run the tiny sweep under ``root`` (one intra-op thread: tiny models on a busy machine
    otherwise spend 10x longer in thread barriers than in the ops); returns ws, cfg, exp_id,
    logs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = _config(_student(root))
        ws = root / "ws"
        logs: list[str] = []
        exp_id = Sweep(cfg, ws, progress=False, log=logs.append).run()
        # the same experiment grows: bayes with the other two bridge target modes (settings of
        # their own), and a second seed of the main setting's bayes runs and their DPO children
        # (paired before/after intervals need two seeds)
        for extra in EXTRA_SWEEPS:
            Sweep(dataclasses.replace(cfg, **extra), ws, progress=False,
                  log=lambda _m: None).run()
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(ws=ws, cfg=cfg, exp_id=exp_id, logs=logs)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--full-shape"]:
        print(build_full_shape(Path(sys.argv[2]).resolve()))
    else:
        print(build(Path(sys.argv[1]).resolve()).ws)
