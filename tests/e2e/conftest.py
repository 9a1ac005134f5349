"""Real-browser fixtures: Debian's Chromium driven by pytest-playwright, and `streamlit run`
servers (one per session and workspace) on free loopback ports, serving the demo workspace or a
synthetic one.

Never `playwright install`: it downloads a browser, which fails offline. CI installs Debian's
chromium (`.ci/run`); where it is missing these tests are skipped with that hint.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from workspace_factory import build_workspace, demo_workspace, make_identity_experiment

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# The machine's recommended headless flags (DASHBOARD_TESTING.md §3); --no-sandbox: we are root.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if not Path(CHROMIUM).exists():
                item.add_marker(pytest.mark.skip(reason="needs Debian's chromium: "
                                                        "apt-get install chromium"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:  # pytest-playwright hook
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    # tall enough that a page's main charts are in one screenshot (the app scrolls inside)
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1600},
            "accept_downloads": True}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(ws: Path, log: Path) -> Iterator[str]:
    """`streamlit run app.py` on ``ws`` (loopback, free port) until the block ends; its URL."""
    port = _free_port()
    env = {**os.environ, "W2S_WORKSPACE": str(ws)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _served(tmp_path_factory: pytest.TempPathFactory, name: str,
            build: Callable[[Path], object]) -> Iterator[str]:
    """Build a workspace with ``build`` and serve the app on it for the session."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium")
    ws = tmp_path_factory.mktemp(f"e2e-{name}-ws")
    build(ws)
    with serve(ws, tmp_path_factory.mktemp(f"streamlit-{name}") / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on the real demo workspace (built once per session: slow the first time)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium")
    ws = demo_workspace(tmp_path_factory.getbasetemp())
    with serve(ws, tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def synthetic_app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on the synthetic workspace (seconds to build): for tests of the frame itself."""
    yield from _served(tmp_path_factory, "synthetic",
                       lambda ws: build_workspace(ws, corrupt=False, three_class=False))


@pytest.fixture(scope="session")
def identity_app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on one experiment with two option settings and two data replicates."""
    yield from _served(tmp_path_factory, "identity", make_identity_experiment)
