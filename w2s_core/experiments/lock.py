"""One writer per experiment: ``<experiment>/lock.json``, created atomically by the sweep.

Two sweeps on the same experiment (two Lab jobs, or a terminal and the Lab) would both train the
missing runs and append to the same progress file; the second one must stop at once with a line
saying who holds the experiment. The lock is a plain file, not ``flock``, so the holder can be
shown (pid, host, start time, Lab job) and so it works on file systems without byte locks.

A process killed hard (SIGKILL, SIGTERM without a handler, a reboot) leaves its lock behind. Such a
lock is *stale* when its pid is dead on this host, or alive but no longer the same process (a
recycled pid: another start time, or a program that is not Python), and the next sweep takes it
over. A lock from another host cannot be checked, so it is only ever reported.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from w2s_core.errors import W2SError

LOCK = "lock.json"
# A lock file that is still empty or torn this long after it was created belongs to a process that
# died between creating and writing it (both happen within microseconds otherwise).
TORN_GRACE_S = 10.0
_HELD: set[Path] = set()  # locks this process holds: a file naming our own pid is ours or stale


class ExperimentLocked(W2SError):
    """Another live process writes this experiment. A subclass, so a refused sweep can tell this
    from its own failure and leave the other sweep's experiment status alone."""


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a recycled pid
    from the original process; None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
    except (OSError, IndexError, ValueError):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _holder_info(job_id: str | None) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": time.time(), "job_id": job_id,
            "proc_start": _proc_start(pid), "executable": Path(sys.executable).name,
            "token": secrets.token_hex(8)}


def _read(path: Path) -> dict[str, Any] | None:
    """The holder, or None if the file is gone; ``{}`` if it is empty or torn."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def is_stale(holder: dict[str, Any], path: Path) -> bool:
    """Whether the process named in a lock file has certainly gone (only checkable here)."""
    if not holder:  # empty or torn: stale once its creator has had ample time to write it
        return _age(path) > TORN_GRACE_S
    if holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return True
    if pid == os.getpid():  # our own pid but not a lock we hold: a previous life of this pid
        return path.resolve() not in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    if _proc_state(pid) in ("Z", "X"):  # exited, not yet reaped by its parent
        return True
    recorded = holder.get("proc_start")
    now = _proc_start(pid)
    if recorded is not None and now is not None:
        return int(recorded) != now
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").lower()
    except OSError:
        return False  # no /proc: the pid is alive, assume it is still the holder
    names = {"python", str(holder.get("executable") or "python").lower()}
    return not any(n in cmd for n in names)


def describe(root: Path, holder: dict[str, Any]) -> str:
    """One line naming who writes the experiment (for the error and for the Lab)."""
    if not holder:
        return f"experiment {root.name} is being written by a process that is still starting"
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder["started"])))
    except (KeyError, TypeError, ValueError):
        since = "an unknown time"
    job = f" (Lab job {holder['job_id']})" if holder.get("job_id") else ""
    return (f"experiment {root.name} is being written by pid {holder.get('pid')} on host "
            f"{holder.get('host')} since {since}{job}")


def _create(path: Path, info: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f)
    return True


def _break_stale(path: Path, seen: dict[str, Any]) -> None:
    """Remove the lock file if it still holds ``seen``.

    Two sweeps may find the same stale lock at once: without this guard the slower one could
    delete the lock the faster one has just created. The guard file serialises the check-and-
    delete; a guard left by a process killed in that instant expires after TORN_GRACE_S.
    """
    guard = path.with_name(path.name + ".takeover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _age(guard) > TORN_GRACE_S:
            guard.unlink(missing_ok=True)
        return
    try:
        if _read(path) == seen:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)
        guard.unlink(missing_ok=True)


def acquire(root: Path, job_id: str | None = None) -> dict[str, Any]:
    """Take the experiment's lock or raise ExperimentLocked (a W2SError) naming its holder;
    returns what was written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    info = _holder_info(job_id)
    for _ in range(5):  # each retry follows the removal of a stale lock
        if _create(path, info):
            _HELD.add(path.resolve())
            return info
        holder = _read(path)
        if holder is None:  # released between our create and our read
            continue
        if not is_stale(holder, path):
            same_host = not holder or holder.get("host") == socket.gethostname()
            fix = ("wait for it or cancel it in the Lab; if that process is gone, rerun: a stale "
                   "lock is detected and removed") if same_host else (
                "wait for it or cancel it there; if that process is gone, delete "
                f"{path} (a lock from another host cannot be checked from here)")
            raise ExperimentLocked(describe(root, holder), fix)
        _break_stale(path, holder)
        time.sleep(0.05)
    raise ExperimentLocked(f"experiment {root.name} is being written by other sweeps that keep "
                           "taking over its lock", "run one sweep at a time on this experiment")


def release(root: Path, info: dict[str, Any]) -> None:
    """Remove the lock if it is still ours (never a lock another process took over)."""
    path = Path(root) / LOCK
    _HELD.discard(path.resolve())
    holder = _read(path)
    if holder and holder.get("token") == info.get("token"):
        path.unlink(missing_ok=True)


@contextmanager
def experiment_lock(root: Path) -> Iterator[None]:
    """Hold ``<root>/lock.json`` for the body; released on return, exception and Ctrl-C.

    The holder records ``$W2S_JOB_ID`` (set by the Lab for its jobs) so the Lab can name the job.
    """
    info = acquire(root, os.environ.get("W2S_JOB_ID") or None)
    try:
        yield
    finally:
        release(root, info)
