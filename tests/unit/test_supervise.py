"""The local supervisor: a crashed worker is restarted, within a limit; a stopped or broken one is not."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

from shift_cli import supervise

# a stand-in worker: it comes up (writes the ready file) unless told not to, counts its runs, then exits
CHILD = textwrap.dedent("""
    import os, sys, time
    runs = sys.argv[1]
    n = int(open(runs).read()) + 1 if os.path.exists(runs) else 1
    open(runs, "w").write(str(n))
    if sys.argv[2] != "never-ready":
        open(os.environ["SHIFT_WORKER_READY_FILE"], "w").close()
    if sys.argv[2] == "sleep":
        time.sleep(60)
    if sys.argv[2].startswith("slow-crash-"):
        time.sleep(1.2)
        sys.exit(1 if n <= int(sys.argv[2][11:]) else 0)
    if sys.argv[2].startswith("crash-"):
        sys.exit(1 if n <= int(sys.argv[2][6:]) else 0)
    sys.exit(int(sys.argv[3]))
""")


def child(tmp_path, mode, status):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), str(tmp_path / "runs"), mode, str(status)]


def runs(tmp_path):
    return int((tmp_path / "runs").read_text())


def test_a_crashing_worker_is_restarted_until_the_limit(tmp_path):
    state = tmp_path / "state.json"
    sup = supervise.Supervisor(child(tmp_path, "ready", 1), state, max_restarts=3, window=60, first_delay=0.01)
    assert sup.run() == 1
    assert runs(tmp_path) == 4  # the first start and three restarts
    got = json.loads(state.read_text())
    assert got["restarts"] == 3 and got["gave_up"] and got["last_exit"] == 1


def test_restarts_outside_the_window_do_not_count(tmp_path):
    # crashes on its first three runs, then stops cleanly
    sup = supervise.Supervisor(child(tmp_path, "crash-3", 1), tmp_path / "state.json", max_restarts=1, window=0.0,
                               first_delay=0.01)
    assert sup.run() == 0
    assert runs(tmp_path) == 4
    sup = supervise.Supervisor(child(tmp_path, "crash-9", 1), tmp_path / "state.json", max_restarts=1, window=60,
                               first_delay=0.01)
    assert sup.run() == 1


def test_the_pause_doubles_only_for_crashes_in_a_row(tmp_path, capsys):
    pauses = lambda: re.findall(r"restarting it in ([0-9.]+)s", capsys.readouterr().err)  # noqa: E731
    sup = supervise.Supervisor(child(tmp_path, "crash-3", 1), tmp_path / "state.json", first_delay=0.1, stable=1.0)
    assert sup.run() == 0
    assert pauses() == ["0.1", "0.2", "0.4"]
    (tmp_path / "runs").unlink()
    # up for longer than `stable` before each crash: not a crash loop, so every pause is the first one
    sup = supervise.Supervisor(child(tmp_path, "slow-crash-3", 1), tmp_path / "state.json", first_delay=0.1,
                               stable=1.0)
    assert sup.run() == 0
    assert pauses() == ["0.1", "0.1", "0.1"]


def test_a_worker_that_never_came_up_is_not_restarted(tmp_path):
    sup = supervise.Supervisor(child(tmp_path, "never-ready", 3), tmp_path / "state.json", first_delay=0.01)
    assert sup.run() == 3
    assert runs(tmp_path) == 1


def test_a_worker_that_exits_0_was_stopped(tmp_path):
    sup = supervise.Supervisor(child(tmp_path, "ready", 0), tmp_path / "state.json", first_delay=0.01)
    assert sup.run() == 0
    assert runs(tmp_path) == 1


def test_sigterm_to_the_group_stops_worker_and_supervisor(tmp_path):
    state = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "shift_cli.supervise", "--state", str(state), "--",
                             *child(tmp_path, "sleep", 0)], start_new_session=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "state.json.ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker_pid = supervise.read_state(state)["pid"]
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert runs(tmp_path) == 1
    assert not os.path.exists("/proc/%d/cmdline" % worker_pid) or \
        open("/proc/%d/stat" % worker_pid).read().rsplit(")", 1)[1].split()[0] == "Z"
