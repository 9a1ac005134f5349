"""Resuming a generation sweep whose teacher metadata json was lost or torn.

A teacher's files are written model → N-best parquet → json; a sweep stopped between the last
two writes must not make every later resume crash. Reuses the session's tiny generation
workspace (tests/gen_workspace.py) and puts the file back afterwards, so the tests that read
that workspace later in the session see it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from w2s_core.experiments import store
from w2s_core.experiments.sweep import Sweep


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_teacher_without_its_metadata_json_is_rebuilt_alone(
        gen_workspace: SimpleNamespace, damage: str) -> None:
    ws, cfg = gen_workspace.ws, gen_workspace.cfg
    exp = store.experiment_dir(ws, gen_workspace.exp_id)
    stems = store.read_json(exp.meta)["teacher_files"]["0"]
    assert set(stems) == {"gpt-char", "gpt-word"}
    lost = exp.teacher_meta(stems["gpt-char"])
    kept = exp.teacher_meta(stems["gpt-word"])
    saved = lost.read_bytes()
    original = store.read_json(lost)  # what training stored: the independent expectation
    teach_dir, runs_dir = exp.root / "teachers", exp.root / "runs"
    before_teach, before_runs = _mtimes(teach_dir), _mtimes(runs_dir)
    if damage == "missing":  # stopped after the parquet, before the json
        lost.unlink()
    else:  # torn by a power cut
        lost.write_bytes(saved[: len(saved) // 2])
    logs: list[str] = []
    try:
        Sweep(cfg, ws, progress=False, log=logs.append).run()
        rebuilt = store.read_json(lost)
        after_teach, after_runs = _mtimes(teach_dir), _mtimes(runs_dir)
    finally:
        lost.write_bytes(saved)  # leave the shared workspace as the later tests expect it

    # only that json was written: no teacher retrained, no N-best, pool or model rewritten,
    # the other teacher's json untouched, and no student run recomputed
    changed = {k for k in after_teach if after_teach[k] != before_teach.get(k)}
    assert changed == {lost.name}
    assert set(after_teach) == set(before_teach) and kept.name in after_teach
    assert after_runs == before_runs
    assert any(f"{lost.name} is {damage}; rebuilding teacher gpt-char" in x for x in logs), logs
    assert not any("recomputing teacher" in x for x in logs), logs
    assert any("already complete, 0 to train" in x for x in logs), logs

    # the floors rebuilt from the stored N-best equal those computed when it was trained
    assert rebuilt["teacher"] == "gpt-char" and rebuilt["data_seed"] == 0
    assert rebuilt["identity"] == original["identity"]
    assert rebuilt["max_new_tokens"] == original["max_new_tokens"]
    floors = [k for k in original if k.startswith(("slu_f1_", "span_f1_", "json_validity_"))]
    assert len(floors) >= 6  # precision/recall/F1 x transfer/test at least
    for key in floors:
        assert rebuilt[key] == pytest.approx(original[key]), key
    # what only training knew is recorded as lost, not invented
    assert original["train"] and rebuilt["train"] is None and rebuilt["seconds"] is None
