"""Keep one local worker running: ``python -m shift_cli.supervise --state FILE [options] -- WORKER ARGV``.

`shift worker start` runs one of these per worker. A worker that crashes (exits with a
non-zero status or is killed by a signal) is started again after a pause that doubles
from ``--first-delay``, until it has been restarted ``--max-restarts`` times within
``--window`` seconds: then the supervisor gives up, saying so in the log. A worker that
exits 0 was asked to stop, and the supervisor stops with it; a SIGTERM reaches both, as
they share a process group. A worker that fails before it came up on its first start
(it writes the file named by SHIFT_WORKER_READY_FILE when it has registered) is not
restarted either: that is a configuration to fix, and its status is the supervisor's.
The state file (JSON: worker pid, restarts, last exit status) is what `shift status` shows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

MAX_RESTARTS = 5
WINDOW_SECONDS = 600.0
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
STABLE_SECONDS = 10.0  # a worker that ran this long before it crashed is restarted after the first pause again


def read_state(path: Path) -> dict:
    """The state a supervisor wrote, or {} when there is none yet."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, **state) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def _say(message: str) -> None:
    print("%s supervisor %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), message), file=sys.stderr, flush=True)


def _describe(status: int) -> str:
    return "was killed by signal %d" % -status if status < 0 else "exited with %d" % status


class Supervisor:
    def __init__(self, argv, state: Path, max_restarts=MAX_RESTARTS, window=WINDOW_SECONDS,
                 first_delay=FIRST_DELAY_SECONDS, stable=STABLE_SECONDS):
        self.argv, self.state = list(argv), Path(state)
        self.max_restarts, self.window, self.first_delay, self.stable = max_restarts, window, first_delay, stable
        self.ready = self.state.with_name(self.state.name + ".ready")
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.restarts: deque[float] = deque()  # when each restart in the window happened
        self.total = 0

    def stop(self, *_):
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Run the worker until it stops, cannot start, or crashed too often; the supervisor's exit status."""
        delay, status = self.first_delay, 0
        while True:
            self.ready.unlink(missing_ok=True)
            env = dict(os.environ, SHIFT_WORKER_READY_FILE=str(self.ready))
            self.child = subprocess.Popen(self.argv, env=env)
            _write_state(self.state, pid=self.child.pid, restarts=self.total, last_exit=status, gave_up=False)
            began = time.monotonic()
            status = self._wait()
            came_up = self.ready.exists()
            self.ready.unlink(missing_ok=True)
            if self.stopping or status == 0:
                return 0
            if not came_up and self.total == 0:
                _say("worker %s before it came up; not restarted" % _describe(status))
                return status if status > 0 else 1
            now = time.monotonic()
            while self.restarts and now - self.restarts[0] > self.window:
                self.restarts.popleft()
            if len(self.restarts) >= self.max_restarts:
                _say("worker %s; it was restarted %d times within %.0fs, so it is not restarted again"
                     % (_describe(status), len(self.restarts), self.window))
                _write_state(self.state, pid=None, restarts=self.total, last_exit=status, gave_up=True)
                return 1
            if came_up and now - began >= self.stable:
                delay = self.first_delay  # not a crash loop: the pause doubles only for crashes in a row
            _say("worker %s; restarting it in %.1fs" % (_describe(status), delay))
            if self._sleep(delay):
                return 0
            self.restarts.append(time.monotonic())
            self.total += 1
            delay = min(delay * 2, MAX_DELAY_SECONDS)

    def _wait(self) -> int:
        while True:
            try:
                return self.child.wait()
            except InterruptedError:
                continue

    def _sleep(self, seconds: float) -> bool:
        """Sleep, True when asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))
        return self.stopping


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shift_cli.supervise",
                                     description="restart a local shift worker that crashed")
    parser.add_argument("--state", required=True, type=Path, help="JSON file for the worker's pid and restarts")
    parser.add_argument("--max-restarts", type=int, default=MAX_RESTARTS)
    parser.add_argument("--window", type=float, default=WINDOW_SECONDS,
                        help="seconds in which at most --max-restarts restarts happen")
    parser.add_argument("--first-delay", type=float, default=FIRST_DELAY_SECONDS)
    parser.add_argument("worker", nargs=argparse.REMAINDER, help="-- then the worker's command line")
    args = parser.parse_args(argv)
    command = args.worker[1:] if args.worker[:1] == ["--"] else args.worker
    if not command:
        parser.error("give the worker's command line after --")
    sup = Supervisor(command, args.state, args.max_restarts, args.window, args.first_delay)
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
