"""Background jobs and the experiment lock, with real processes.

The lock: a second writer (another process) is refused with one line naming the holder; a lock
left by a dead or recycled process is taken over; racing takers get exactly one winner. Jobs: the
child sees its job id, and each job's progress is its own even when two jobs write at once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from w2s_core import jobs
from w2s_core.errors import W2SError
from w2s_core.experiments import lock as lk
from w2s_core.experiments import store
from w2s_core.experiments.lock import experiment_lock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
# Holds the lock until its stdin closes; says "held" once it has it.
HOLDER = ("import sys\nfrom pathlib import Path\nfrom w2s_core.experiments.lock import "
          "experiment_lock\nwith experiment_lock(Path(sys.argv[1])):\n"
          "    print('held', flush=True)\n    sys.stdin.read()\n")


def _holder(root: Path, **env: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], cwd=ROOT,
                            env={**ENV, **env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer exists
    return proc.pid


def _write_lock(root: Path, **holder: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / lk.LOCK
    path.write_text(json.dumps({"host": socket.gethostname(), "started": time.time(),
                                "job_id": None, **holder}), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the lock
def test_lock_records_its_holder_and_is_released(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("W2S_JOB_ID", "job-42")
    root = tmp_path / "exp-a"
    before = time.time()
    with experiment_lock(root):
        held = json.loads((root / "lock.json").read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert held["job_id"] == "job-42" and before <= held["started"] <= time.time()
    assert not (root / "lock.json").exists()
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):  # released on the way out too
        with pytest.raises(type(exc)), experiment_lock(root):
            assert (root / "lock.json").exists()
            raise exc
        assert not (root / "lock.json").exists()


def test_a_second_process_is_refused_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "exp-b"
    proc = _holder(root, W2S_JOB_ID="20250101-job-x")
    try:
        with pytest.raises(lk.ExperimentLocked) as err, experiment_lock(root):
            pytest.fail("the lock was taken twice")
        assert isinstance(err.value, W2SError)  # the CLI prints it as one `error:` line
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"experiment exp-b is being written by pid {proc.pid} on host "
                              f"{socket.gethostname()} since ")
        assert "20250101-job-x" in msg
        assert msg.endswith("wait for it or cancel it in the Lab; if that process is gone, "
                            "rerun: a stale lock is detected and removed")
        assert json.loads((root / "lock.json").read_text())["pid"] == proc.pid  # untouched
    finally:
        proc.communicate("")
    assert proc.returncode == 0 and not (root / "lock.json").exists()
    with experiment_lock(root):  # free again once the holder has finished
        pass


def test_a_killed_holder_leaves_a_lock_that_is_taken_over(tmp_path: Path) -> None:
    root = tmp_path / "exp-c"
    proc = _holder(root)
    proc.send_signal(signal.SIGKILL)  # no finally runs: the file stays behind
    proc.communicate()
    assert json.loads((root / "lock.json").read_text())["pid"] == proc.pid
    with experiment_lock(root):
        assert json.loads((root / "lock.json").read_text())["pid"] == os.getpid()
    assert not (root / "lock.json").exists()


def test_a_dead_or_recycled_pid_is_stale(tmp_path: Path) -> None:
    root = tmp_path / "exp-d"
    _write_lock(root, pid=_dead_pid(), token="old")
    with experiment_lock(root):
        assert json.loads((root / "lock.json").read_text())["pid"] == os.getpid()
    # a live pid that is now another program (no start time recorded: the cmdline decides)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        _write_lock(root, pid=sleeper.pid, token="old")
        with experiment_lock(root):
            assert json.loads((root / "lock.json").read_text())["pid"] == os.getpid()
        # with its start time recorded, the start time decides: another one means recycled …
        start = lk._proc_start(sleeper.pid)
        if start is not None:  # (Linux)
            _write_lock(root, pid=sleeper.pid, proc_start=start + 1, token="old")
            with experiment_lock(root):
                pass
            _write_lock(root, pid=sleeper.pid, proc_start=start, token="old")  # … the same: held
            with pytest.raises(W2SError, match=f"pid {sleeper.pid} "):
                lk.acquire(root)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_locks_it_cannot_check_are_reported_not_broken(tmp_path: Path) -> None:
    root = tmp_path / "exp-e"
    path = _write_lock(root, pid=_dead_pid(), host="another-host", token="old")
    with pytest.raises(W2SError, match=f"on host another-host .*delete {path}"):
        lk.acquire(root)
    path.write_text("")  # created but not yet written: its creator is starting
    with pytest.raises(W2SError, match="still starting"):
        lk.acquire(root)
    old = time.time() - 2 * lk.TORN_GRACE_S  # … unless it was left empty long ago
    os.utime(path, (old, old))
    with experiment_lock(root):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_racing_takers_of_a_stale_lock_get_one_winner(tmp_path: Path) -> None:
    root = tmp_path / "exp-f"
    _write_lock(root, pid=_dead_pid(), token="old")
    racer = ("import sys, time\nfrom pathlib import Path\nfrom w2s_core.errors import W2SError\n"
             "from w2s_core.experiments.lock import acquire\n"
             "while time.time() < float(sys.argv[2]): pass\n"
             "try:\n    acquire(Path(sys.argv[1])); print('won', flush=True); time.sleep(2)\n"
             "except W2SError:\n    print('refused')\n")
    go = str(time.time() + 1.5)  # all start together, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", racer, str(root), go], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["refused", "refused", "won"]


def test_a_late_taker_never_deletes_the_new_holders_lock(tmp_path: Path) -> None:
    """The interleaving the race above rarely hits: taker A saw the stale lock, then B broke it
    and took the experiment; A must not delete B's lock when it gets round to breaking it."""
    root = tmp_path / "exp-g"
    path = _write_lock(root, pid=_dead_pid(), token="old")
    seen_by_a = lk._read(path)
    assert seen_by_a and lk.is_stale(seen_by_a, path)
    b = _holder(root)  # B takes over the stale lock
    try:
        lk._break_stale(path, seen_by_a)
        assert json.loads(path.read_text())["pid"] == b.pid
        with pytest.raises(W2SError, match=f"pid {b.pid} "):
            lk.acquire(root)
    finally:
        b.communicate("")


# ---------------------------------------------------------------- jobs
def _argv(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def _wait(pred: Any, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_the_child_knows_its_job_id(tmp_path: Path) -> None:
    d = jobs.new_job(tmp_path, "sweep", "env check")
    out = tmp_path / "seen.txt"
    jobs.start(d, _argv(f"import os; open({str(out)!r}, 'w').write(os.environ['W2S_JOB_ID'])"),
               tmp_path)
    _wait(lambda: jobs.status(d)["status"] == "done")
    assert out.read_text() == d.name == jobs.read_meta(d)["id"]


def _event(exp: store.ExperimentDir, job_id: str | None, t: float, done: int, total: int) -> None:
    ev = {"time": t, "stage": "students", "done": done, "total": total, "message": f"{done}"}
    if job_id is not None:
        ev["job_id"] = job_id
    store.append_progress(exp, ev)


def _experiment(ws: Path, exp_id: str) -> store.ExperimentDir:
    exp = store.experiment_dir(ws, exp_id)
    exp.root.mkdir(parents=True)
    store.write_json(exp.meta, {"config": {}})
    return exp


def test_each_job_reads_only_its_own_progress(tmp_path: Path) -> None:
    a, b, idle = (jobs.status(jobs.new_job(tmp_path, "sweep", n)) for n in ("a", "b", "idle"))
    x, y = _experiment(tmp_path, "exp-x"), _experiment(tmp_path, "exp-y")
    t0 = time.time()
    _event(x, "old-job", t0 - 100, 5, 5)  # an earlier job's events stay in the file
    _event(y, None, t0 - 90, 1, 2)  # an engine that does not stamp events
    for i in range(1, 4):  # a writes x, b writes y, interleaved; b's last event is the newest
        _event(x, a["id"], t0 + i, i, 8)
        _event(y, b["id"], t0 + i + 0.5, 2 * i, 10)
    _event(x, "old-job", t0 + 9, 1, 1)  # another job appended to x after a
    pa, pb = jobs.progress(tmp_path, a), jobs.progress(tmp_path, b)
    assert (pa["experiment_id"], pa["done"], pa["fraction"]) == ("exp-x", 3, 3 / 8)
    assert (pb["experiment_id"], pb["done"], pb["fraction"]) == ("exp-y", 6, 6 / 10)
    assert jobs.progress(tmp_path, idle) is None  # nothing of its own yet: no borrowed bar
    _event(y, a["id"], t0 + 20, 7, 0)  # a moved on to y: its latest event wins; no total
    pa = jobs.progress(tmp_path, a)
    assert (pa["experiment_id"], pa["done"], pa["fraction"]) == ("exp-y", 7, None)


def test_two_running_jobs_each_report_their_own_experiment(tmp_path: Path) -> None:
    script = ("import json, os, sys, time\nfrom pathlib import Path\n"
              "exp = Path(os.environ['W2S_WORKSPACE'], 'experiments', sys.argv[1])\n"
              "exp.mkdir(parents=True, exist_ok=True)\n"
              "(exp / 'experiment.json').write_text('{}')\n"
              "for i in range(1, int(sys.argv[2]) + 1):\n"
              "    with open(exp / 'progress.jsonl', 'a') as f:\n"
              "        f.write(json.dumps({'time': time.time(), 'done': i, 'total': 12,\n"
              "                            'job_id': os.environ['W2S_JOB_ID']}) + '\\n')\n"
              "    time.sleep(0.02)\n"
              "time.sleep(30)\n")
    dirs = []
    for exp_id, n in (("exp-one", 3), ("exp-two", 9)):
        d = jobs.new_job(tmp_path, "sweep", exp_id)
        jobs.start(d, [*_argv(script), exp_id, str(n)], tmp_path)
        dirs.append((d, exp_id, n))
    try:
        for d, exp_id, n in dirs:
            _wait(lambda d=d, n=n: (jobs.progress(tmp_path, jobs.status(d)) or {}).get("done")
                  == n)
            ev = jobs.progress(tmp_path, jobs.status(d))
            assert ev["experiment_id"] == exp_id and ev["fraction"] == n / 12
    finally:
        for d, _, _ in dirs:
            jobs.cancel(d, force=True)
    _wait(lambda: all(jobs.status(d)["status"] == "cancelled" for d, _, _ in dirs))


def test_last_error_is_the_clis_error_line(tmp_path: Path) -> None:
    d = jobs.new_job(tmp_path, "sweep", "fails")
    assert jobs.last_error(d) is None  # no log yet
    (d / "log.txt").write_text("loading\nerror: first — one\nstudents: 10%\r20%\r30%\n"
                               "error: experiment e is busy — wait for it\nTraceback-free\n")
    assert jobs.last_error(d) == "experiment e is busy — wait for it"
    (d / "log.txt").write_text("Traceback (most recent call last):\nValueError: x\n")
    assert jobs.last_error(d) is None
