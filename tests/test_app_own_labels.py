"""Your own weak labels in the dashboard: an experiment whose three teachers are columns of the
user's CSV (hard label, P(class 1), one column per class), run by the real sweep, opens on every
page; the Teachers page shows the given teachers with the accuracies computed from the file, and
the sidebar names the data set after the file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from w2s_core import api
from w2s_core.data.schema import DataConfig
from w2s_core.experiments.config import ExperimentConfig
from w2s_core.training.probe import ProbeConfig

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["app_pages/recovery.py", "app_pages/teachers.py", "app_pages/dirichlet.py",
         "app_pages/calibration.py", "app_pages/compare.py", "app_pages/talk.py"]
WORDS = {0: ["bad", "terrible", "awful", "sad", "horrible"],
         1: ["good", "great", "wonderful", "happy", "excellent"]}


def _values(v: Any) -> list[float]:
    """Plotly ≥ 6 ships numpy data as base64 typed arrays."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


@pytest.fixture(scope="module")
def own_ws(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    n = 240
    gold = np.arange(n) % 2
    texts = [f"the movie was {' '.join(rng.choice(WORDS[g], 3))} {i}" for i, g in enumerate(gold)]
    judge = np.where(rng.random(n) < 0.2, 1 - gold, gold)
    p_pos = np.clip(0.7 * gold + 0.15 + rng.normal(0, 0.2, n), 0, 1)
    share = np.clip(0.65 * np.eye(2)[gold] + rng.dirichlet([1, 1], n) * 0.35, 0, 1)
    df = pd.DataFrame({"id": [f"u{i}" for i in range(n)], "text": texts, "label": gold,
                       "judge": judge, "scorer": p_pos, "c0": share[:, 0], "c1": share[:, 1]})
    base = tmp_path_factory.mktemp("own")
    data = base / "judged.csv"
    df.to_csv(data, index=False)
    cfg = ExperimentConfig(
        name="own", data=DataConfig("file", path=str(data), n_weak=40, n_transfer=100,
                                    n_test=100, weak_labels={"judge": "judge",
                                                             "scorer": "scorer",
                                                             "crowd": ("c0", "c1")}),
        teachers=("judge", "scorer", "crowd"), student=str(tiny_encoder_dir),
        methods=("single", "naive", "vote", "bayes"), aux=(False,), seeds=(0,),
        probe=ProbeConfig(epochs=2, batch_size=50), device="cpu")
    ws = base / "ws"
    api.run_experiment(cfg, ws, progress=False)
    return ws, data


def test_given_teachers_open_on_every_page(own_ws: tuple[Path, Path], monkeypatch) -> None:
    ws, data = own_ws
    monkeypatch.setenv("W2S_WORKSPACE", str(ws))
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="w_dataset").value == "judged.csv"  # the file's name, not "file"
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        assert at.get("plotly_chart"), f"{page} drew no chart"
    # the Teachers page's accuracy table: the given teachers with their accuracy on test
    at.switch_page("app_pages/teachers.py").run()
    exp_id = api.list_experiments(ws)["id"].iloc[0]
    ex = api.examples(exp_id, ws)
    src = pd.read_csv(data).set_index("id").loc[ex[ex.split == "test"].example_id]
    expected = {"judge": (src.judge == src.label).mean(),
                "scorer": ((src.scorer > 0.5) == src.label).mean(),
                "crowd": ((src.c1 > src.c0) == src.label).mean()}
    chart = next(json.loads(n.proto.spec) for n in at.get("plotly_chart")
                 if n.key.removeprefix("chart_") == "teacher-accuracy")
    bars = next(t for t in chart["data"] if t.get("name") == "test")
    shown = dict(zip(bars["x"], _values(bars["y"]), strict=True))
    assert shown.keys() == expected.keys()
    for t, acc in expected.items():
        assert shown[t] == pytest.approx(acc)
