"""The torch-free catalog is the one source of the registries' names and descriptions."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from w2s_core import catalog
from w2s_core.data.registry import DATASETS
from w2s_core.methods.registry import METHODS
from w2s_core.models.registry import MODELS

HEAVY = ("torch", "transformers", "numpy", "pandas", "sklearn", "datasets", "accelerate")


def test_importing_the_catalog_imports_no_heavy_library() -> None:
    # a fresh interpreter: this test process has long imported torch through the registries
    code = ("import sys, json, w2s_core.catalog as c; c.datasets(); c.models(); c.methods(); "
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []


def test_catalog_names_equal_the_registries_in_order() -> None:
    assert [d.name for d in catalog.datasets()] == DATASETS.names()
    assert [m.name for m in catalog.models()] == MODELS.names()
    assert [m.name for m in catalog.methods()] == METHODS.names()


def test_registry_entries_carry_the_catalog_metadata_unchanged() -> None:
    for infos, reg in ((catalog.datasets(), DATASETS), (catalog.methods(), METHODS)):
        for info in infos:
            entry = reg.get(info.name)
            assert isinstance(entry, type(info))  # the entry extends the catalog record
            for f in dataclasses.fields(info):
                assert getattr(entry, f.name) == getattr(info, f.name), (info.name, f.name)
    for spec in catalog.models():
        assert MODELS.get(spec.name) == spec


def test_catalog_fields_the_lab_needs() -> None:
    for d in catalog.datasets():
        assert d.description and d.source and d.licence and isinstance(d.offline, bool)
    assert {d.name for d in catalog.datasets() if not d.offline} == {"sciq", "cosmos_qa",
                                                                      "boolq", "slurp"}
    kinds = {m.name: m.kind for m in catalog.models()}
    assert kinds["tfidf-logreg"] == "tfidf" and kinds["smollm2-135m"] == "causal"
    assert set(kinds.values()) <= {"encoder", "causal", "tfidf", "scratch"}
    for m in catalog.methods():
        assert m.description and m.paper and m.family in ("ce", "edl-onehot", "edl-softy")
        assert m.min_k >= 1 and (m.max_k is None or m.max_k >= m.min_k)
    single = next(m for m in catalog.methods() if m.name == "single")
    assert single.applies_to(1) and not single.applies_to(2)


def test_catalog_lists_are_copies() -> None:
    catalog.methods().clear()
    assert len(catalog.methods()) == len(METHODS.names())
