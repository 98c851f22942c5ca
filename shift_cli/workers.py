"""Start and stop local `gpu_daemon` worker processes.

Each worker is ``python -m gpu_daemon --dsn ... --device ...`` run detached (its own
session) under a supervisor (`shift_cli.supervise`) that restarts it when it crashes,
logging to ``<home>/worker-<n>.log``; the supervisor's pid is in ``<home>/worker-<n>.pid``,
the worker's pid and its restarts in ``<home>/worker-<n>.state.json``. Workers keep no
state of their own, so stopping one at any moment is safe: it gives its task back, or
its task's lease expires and another worker picks it up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import supervise
from .cluster import default_home, project_root

_PIDFILE = re.compile(r"worker-(\d+)\.pid")


class WorkerError(RuntimeError):
    """A worker could not be started."""


@dataclass(frozen=True)
class Worker:
    slot: int
    pid: int  # the supervisor's
    log: Path
    pidfile: Path
    worker_pid: int | None = None  # the worker process now running, per its supervisor
    restarts: int = 0


def _home(home: str | os.PathLike | None) -> Path:
    return Path(home).absolute() if home is not None else default_home()


def _alive(pid: int) -> bool:
    """True for a live (not zombie) gpu_daemon process."""
    try:
        # reap it first if it is our own exited child
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and b"gpu_daemon" in cmdline


def _pidfiles(home: Path) -> list[tuple[int, Path]]:
    if not home.is_dir():
        return []
    out = []
    for p in home.iterdir():
        m = _PIDFILE.fullmatch(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def _state_file(home: Path, slot: int) -> Path:
    return home / f"worker-{slot}.state.json"


def running_workers(home: str | os.PathLike | None = None) -> list[Worker]:
    """Live workers started from ``home``; pid files of dead ones are removed."""
    h = _home(home)
    live = []
    for slot, pidfile in _pidfiles(h):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and _alive(pid):
            state = supervise.read_state(_state_file(h, slot))
            live.append(Worker(slot, pid, h / f"worker-{slot}.log", pidfile, state.get("pid"),
                               int(state.get("restarts") or 0)))
        else:
            pidfile.unlink(missing_ok=True)
            _state_file(h, slot).unlink(missing_ok=True)
    return live


def start_workers(
    dsn: str,
    count: int = 1,
    device: str = "auto",
    home: str | os.PathLike | None = None,
    extra_args: Sequence[str] = (),
    check_s: float = 1.0,
    max_restarts: int = supervise.MAX_RESTARTS,
) -> list[int]:
    """Launch ``count`` detached, supervised workers; returns their supervisors' pids.

    ``device`` is ``auto``, ``cpu``, ``cuda:N``, or a comma-separated list such as
    ``cuda:0,cuda:1`` handed out round-robin. Workers that exit within ``check_s``
    seconds raise WorkerError with the tail of their log. A worker that crashes later is
    restarted, at most ``max_restarts`` times in ``supervise.WINDOW_SECONDS``.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    h = _home(home)
    h.mkdir(parents=True, exist_ok=True)
    devices = [d.strip() for d in device.split(",") if d.strip()] or ["auto"]
    used = {w.slot for w in running_workers(h)}
    root = str(project_root())
    env = dict(os.environ)
    # the worker's code comes from the project root; the supervisor's from this package
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([root, here, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]))
    env.setdefault("PYTHONUNBUFFERED", "1")

    started: list[tuple[int, subprocess.Popen]] = []
    slot = 0
    for i in range(count):
        slot += 1
        while slot in used:
            slot += 1
        log = h / f"worker-{slot}.log"
        argv = [sys.executable, "-m", "shift_cli.supervise", "--state", str(_state_file(h, slot)),
                "--max-restarts", str(max_restarts), "--",
                sys.executable, "-m", "gpu_daemon", "--dsn", dsn, "--device", devices[i % len(devices)], *extra_args]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        (h / f"worker-{slot}.pid").write_text(f"{proc.pid}\n")
        started.append((slot, proc))

    deadline = time.monotonic() + check_s
    while started and time.monotonic() < deadline:
        if any(p.poll() is not None for _, p in started):
            break
        time.sleep(0.05)
    dead = [(s, p) for s, p in started if p.poll() is not None]
    if dead:
        for s, p in started:  # all or nothing: stop the ones that did come up
            if p.poll() is None:
                _signal(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    _signal(p.pid, signal.SIGKILL)
                    p.wait()
                (h / f"worker-{s}.pid").unlink(missing_ok=True)
        msgs = []
        for s, p in dead:
            (h / f"worker-{s}.pid").unlink(missing_ok=True)
            _state_file(h, s).unlink(missing_ok=True)
            msgs.append(f"worker {s} (pid {p.pid}) exited with {p.returncode}; "
                        f"last lines of {h / f'worker-{s}.log'}:\n{_tail(h / f'worker-{s}.log')}")
        raise WorkerError("\n".join(msgs))
    return [p.pid for _, p in started]


def stop_workers(home: str | os.PathLike | None = None, timeout: float = 10.0) -> list[int]:
    """SIGTERM every running worker, SIGKILL those still alive after ``timeout`` s; returns their pids."""
    workers = running_workers(home)
    for w in workers:
        _signal(w.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending and time.monotonic() < deadline:
        pending = [w for w in pending if _alive(w.pid)]
        if pending:
            time.sleep(0.1)
    for w in pending:
        _signal(w.pid, signal.SIGKILL)
    for w in pending:
        for _ in range(50):
            if not _alive(w.pid):
                break
            time.sleep(0.02)
    for w in workers:
        w.pidfile.unlink(missing_ok=True)
        _state_file(w.pidfile.parent, w.slot).unlink(missing_ok=True)
    return [w.pid for w in workers]


def _signal(pid: int, sig: int) -> None:
    """Signal the worker's process group (it leads its own session), else the process."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
