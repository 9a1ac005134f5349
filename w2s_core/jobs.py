"""Background jobs (a demo or a sweep) launched by the dashboard, tracked through files.

The dashboard must never train in its script thread, and it may be restarted while a sweep runs,
so a job is a detached process group described entirely by files in the workspace::

    <workspace>/jobs/<job_id>/job.json    command, pid, start time, label, cancel request
    <workspace>/jobs/<job_id>/log.txt     the command's stdout + stderr
    <workspace>/jobs/<job_id>/exit.json   written by the runner when the command ends

The process is ``python -m w2s_core.jobs run <job_dir> -- <command>``: a small runner that waits
for the command and records its exit code, because a restarted dashboard cannot ``wait()`` on a
process it did not start. The command runs with ``W2S_JOB_ID=<job_id>`` in its environment; the
sweep stamps every event it appends to ``<experiment>/progress.jsonl`` with it, which is how a job
finds its own progress while other jobs write other experiments.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from w2s_core.experiments import store

JOBS = "jobs"
REPO_ROOT = Path(__file__).resolve().parents[1]
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # reaped on poll, so no zombies linger


# ---------------------------------------------------------------- launching
def new_job(workspace: Path, kind: str, label: str) -> Path:
    """Create an empty job folder; the id sorts by start time."""
    now = time.time()
    job_id = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}{int(now % 1 * 1000):03d}" \
        f"-{kind}-{secrets.token_hex(3)}"
    d = Path(workspace) / JOBS / job_id
    d.mkdir(parents=True)
    store.write_json(d / "job.json", {"id": job_id, "kind": kind, "label": label,
                                      "status": "starting", "created": now})
    return d


def start(job_dir: Path, argv: list[str], workspace: Path) -> dict[str, Any]:
    """Run ``argv`` detached (own session, so the app's Ctrl-C does not kill it)."""
    meta = read_meta(job_dir)
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["W2S_WORKSPACE"] = str(workspace)
    env["PYTHONUNBUFFERED"] = "1"  # the log tail should be live
    env["W2S_JOB_ID"] = str(meta.get("id") or job_dir.name)  # stamps its progress and its lock
    cmd = [sys.executable, "-m", "w2s_core.jobs", "run", str(job_dir), "--", *argv]
    with open(job_dir / "log.txt", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    meta.update(command=argv, pid=proc.pid, started=time.time(), status="running",
                workspace=str(workspace))
    store.write_json(job_dir / "job.json", meta)
    return meta


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "w2s_core.cli", *args]


def launch_demo(workspace: Path, quick: bool = True) -> Path:
    d = new_job(workspace, "demo", "demo experiment" + (" (quick)" if quick else ""))
    start(d, cli_argv("demo", *(["--quick"] if quick else []), "--workspace", str(workspace)),
          workspace)
    return d


def launch_sweep(workspace: Path, config: dict[str, Any]) -> Path:
    """Write the sweep's YAML config into the job folder and run ``w2s sweep`` on it."""
    d = new_job(workspace, "sweep", str(config.get("name", "sweep")))
    cfg_path = d / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    start(d, cli_argv("sweep", "--config", str(cfg_path), "--workspace", str(workspace)),
          workspace)
    return d


# ---------------------------------------------------------------- state
def read_meta(job_dir: Path) -> dict[str, Any]:
    try:
        return store.read_json(job_dir / "job.json")
    except Exception:  # noqa: BLE001 - a torn job file must not break the job list
        return {"id": job_dir.name, "status": "unknown"}


def _alive(pid: int, job_id: str) -> bool:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # Linux: rule out a zombie, and a recycled pid running something else
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            return job_id in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            return True
    return True


def status(job_dir: Path) -> dict[str, Any]:
    """The job's meta with a fresh ``status`` (running | done | failed | cancelled) and, when
    ended, ``returncode`` and ``ended``."""
    meta = read_meta(job_dir)
    exit_file = job_dir / "exit.json"
    cancelled = bool(meta.get("cancel_requested"))
    if exit_file.exists():
        try:
            ex = store.read_json(exit_file)
        except Exception:  # noqa: BLE001
            ex = {"returncode": None}
        meta.update(ex)
        rc = ex.get("returncode")
        meta["status"] = "cancelled" if cancelled or ex.get("cancelled") else (
            "done" if rc == 0 else "failed")
    elif "pid" not in meta:
        meta["status"] = "failed" if time.time() - meta.get("created", 0) > 60 else "starting"
    elif _alive(int(meta["pid"]), meta.get("id", job_dir.name)):
        meta["status"] = "running"
    else:  # killed hard (no exit file): SIGKILL, OOM, machine reboot
        meta["status"] = "cancelled" if cancelled else "failed"
    meta["dir"] = str(job_dir)
    return meta


def list_jobs(workspace: Path) -> list[dict[str, Any]]:
    """Every job in the workspace with its fresh status, newest first."""
    base = Path(workspace) / JOBS
    if not base.is_dir():
        return []
    found = [status(d) for d in base.iterdir() if (d / "job.json").exists()]
    return sorted(found, key=lambda j: float(j.get("created") or 0), reverse=True)


def cancel(job_dir: Path, force: bool = False) -> bool:
    """SIGTERM (or SIGKILL with ``force``) to the job's whole process group."""
    meta = read_meta(job_dir)
    pid = meta.get("pid")
    if pid is None or status(job_dir)["status"] != "running":
        return False
    meta["cancel_requested"] = time.time()
    store.write_json(job_dir / "job.json", meta)
    try:
        os.killpg(int(pid), signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def log_tail(job_dir: Path, n_lines: int = 40) -> str:
    path = job_dir / "log.txt"
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64_000))  # a long sweep log: read only its end
        text = f.read().decode("utf-8", errors="replace")
    # progress bars redraw one line with "\r": keep what a terminal would show, the last state
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join(line for line in lines[-n_lines - 1:] if line.strip())


def last_error(job_dir: Path) -> str | None:
    """The command's last ``error: <problem> — <fix>`` line (what the CLI prints for a
    W2SError), without the prefix; None if it printed none (a crash, a kill)."""
    path = job_dir / "log.txt"
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64_000))
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    for line in reversed(lines):
        line = line.rsplit("\r", 1)[-1].strip()
        if line.startswith("error:"):
            return line.removeprefix("error:").strip() or None
    return None


PROGRESS_TAIL = 1_000_000  # bytes read from the end of a progress file (about 10k events)


def _own_events(path: Path, job_id: str) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        size = path.stat().st_size
        f.seek(max(0, size - PROGRESS_TAIL))
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    out = []
    for line in lines:  # a torn first (cut) or last (mid-append) line is skipped
        if job_id not in line:
            continue  # cheap pre-filter: most lines of a shared workspace are other jobs'
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict) and ev.get("job_id") == job_id:
            out.append(ev)
    return out


def progress(workspace: Path, job: dict[str, Any]) -> dict[str, Any] | None:
    """This job's latest progress event, with ``experiment_id`` and ``fraction`` added.

    Only events stamped with this job's id count: two jobs may write two experiments at once, and
    an experiment's file also holds events of earlier jobs. A job that has written nothing yet
    (still loading models) has no progress, rather than another job's.
    """
    job_id = str(job.get("id") or "")
    if not job_id:
        return None
    started = float(job.get("started") or job.get("created") or 0)
    best: tuple[float, dict[str, Any], str] | None = None
    for exp in store.iter_experiments(Path(workspace)):
        p = exp.progress
        try:
            if p.stat().st_mtime < started - 1:
                continue  # not written since the job began: cannot hold its events
            events = _own_events(p, job_id)
        except OSError:
            continue
        if not events:
            continue
        ev = events[-1]
        key = float(ev.get("time") or 0)
        if best is None or key > best[0]:
            best = (key, ev, exp.id)
    if best is None:
        return None
    ev = dict(best[1])
    ev["experiment_id"] = best[2]
    total = ev.get("total") or 0
    ev["fraction"] = min(1.0, float(ev.get("done") or 0) / total) if total else None
    return ev


# ---------------------------------------------------------------- runner (the child process)
def _run(job_dir: Path, argv: list[str]) -> int:
    cancelled = {"flag": False}

    def _on_term(signum: int, _frame: Any) -> None:
        # The whole group got the signal, the command included; wait for it to end, then record.
        cancelled["flag"] = True

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        child = subprocess.Popen(argv)
        rc = child.wait()
    except OSError as e:  # the command could not even start
        print(f"could not start {argv[0]}: {e}", flush=True)
        rc = 127
    store.write_json(job_dir / "exit.json", {"returncode": rc, "ended": time.time(),
                                             "cancelled": cancelled["flag"]})
    return 0 if rc == 0 else 1


def main(args: list[str]) -> int:
    if len(args) >= 3 and args[0] == "run" and "--" in args:
        sep = args.index("--")
        return _run(Path(args[1]), args[sep + 1:])
    print("usage: python -m w2s_core.jobs run <job_dir> -- <command ...>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
