"""Every shipped config in configs/ loads and validates, offline.

``load_configs`` reads both kinds of file: one experiment (what ``load_config`` reads) or a
suite (an ``experiments:`` list)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from w2s_core.experiments.config_files import load_configs

CONFIGS = sorted(p for p in (Path(__file__).resolve().parent.parent / "configs").iterdir()
                 if p.suffix in (".yaml", ".yml", ".toml"))


def test_there_are_configs_to_check() -> None:
    assert {"example.yaml", "hub-gpu.yaml", "own-data.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_without_the_network(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*a: object, **k: object) -> None:
        raise AssertionError(f"loading {path.name} tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    cfgs = load_configs(path)
    assert cfgs and all(c.teachers and c.methods and c.seeds for c in cfgs)
