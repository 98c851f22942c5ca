"""Soak: overlapping SHiFT-QL queries while workers are SIGKILLed and PostgreSQL restarts.

One run, on its own cluster (in /tmp, fsync off), registers the test zoo and the digits
readers in two databases:

1. reference: one worker, no faults, whole passes; its features are what every cached row
   of the soak is checked against (scores are recomputed from them with the workers' own
   proxy code, at each row's fidelity);
2. chaos: client threads run Q2/Q3-style queries (CosineNN, KNN, Linear; LIMIT 1 or 2)
   as a non-superuser while three supervised workers serve; workers are SIGKILLed at
   random moments and PostgreSQL is restarted (fast and immediate). The run is cut into
   rounds: between rounds the clients pause, the cache is checked and emptied, so every
   round infers again under faults;
3. cold: the cache is emptied and 16 clients each run a query at the same moment;
4. every failed query is run again, without faults, and must then succeed.

Duplicate inferences are counted from a trigger on shift.features that logs every committed
INSERT (a worker inserts a block once it has computed it; ON CONFLICT DO NOTHING hides a
second one from the table, not from the log). Writes a markdown report.

    .venv/bin/python bench/soak.py [--quick] [--python-dir DIR] [--out FILE]
"""

import argparse
import fcntl
import json
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_daemon.worker import align_labels  # noqa: E402
from pyfuncs import proxies  # noqa: E402
from shift_cli import supervise  # noqa: E402
from shift_cli.cluster import Cluster, allow_worker_login  # noqa: E402
from shift_cli.testbed import WorkerProcess, free_port, register_digits, register_model  # noqa: E402
from shift_cli.workers import start_workers, stop_workers  # noqa: E402
from shift_cli.zoo import build_zoo  # noqa: E402

LOCK = "/tmp/shift-integration.lock"  # held while the extension's files are installed and read
USER, PASSWORD = "soak_user", "soak"
TRAIN, TEST = "SoakTrain", "SoakTest"
WORKERS = 3
COLD_CLIENTS = 16
QUERY_TIMEOUT_S = 180
RTOL, ATOL = 1e-4, 1e-5  # features: float32 from the same model on the same CPU, batches may differ
SCORE_TOL = 1e-6


def _q(order, k):
    return ("SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY %s ASC LIMIT %d "
            "TESTED ON %s TRAINED ON %s" % (order, k, TEST, TRAIN))


QUERIES = [_q(order, k) for order in ("CosineNN", "Linear(lr=0.1)", "Linear(lr=0.01)",
                                      "KNN(k=3, metric='cosine')", "KNN(k=5, metric='euclidean')")
           for k in (1, 2)]


@dataclass(frozen=True)
class Mode:
    chaos_s: float  # time with faults, rounds included
    round_s: float
    kills: int
    restarts: int
    clients: int


MODES = {"full": Mode(chaos_s=600, round_s=60, kills=100, restarts=5, clients=4),
         "quick": Mode(chaos_s=150, round_s=50, kills=10, restarts=2, clients=3)}


@dataclass
class Outcome:
    phase: str
    query: str
    kind: str  # "ok", else the SQLSTATE or the error's class
    message: str
    seconds: float


@dataclass
class Tally:
    """Everything the report reads."""

    mode: str
    outcomes: list = field(default_factory=list)
    reruns: list = field(default_factory=list)
    kills: list = field(default_factory=list)  # (chaos time, pid, task it was running or None)
    restarts: list = field(default_factory=list)  # (chaos time, mode, queries in flight, seconds down)
    checks: Counter = field(default_factory=Counter)  # rows checked and mismatched, by table
    mismatches: list = field(default_factory=list)
    rounds: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome):
        with self.lock:
            self.outcomes.append(outcome)


# -- the cluster and its databases ------------------------------------------------------------

def start_cluster(python_dir, max_task_deaths=None):
    home = Path(tempfile.mkdtemp(prefix="shift-soak-", dir="/tmp"))
    home.chmod(0o755)
    settings = {"log_lock_waits": True, "deadlock_timeout": "1s"}
    if python_dir:
        settings["shift.python_dir"] = str(python_dir)
    if max_task_deaths:
        settings["shift.max_task_deaths"] = max_task_deaths
    cluster = Cluster(home=home, port=free_port(), fast=True, settings=settings)
    cluster.start()
    return cluster


def create_databases(cluster, names):
    """CREATE EXTENSION reads the shared install's SQL files: done under the install lock."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with cluster.connect("postgres", autocommit=True) as conn:
            for name in names:
                conn.execute("CREATE DATABASE %s" % name)
        for name in names:
            with cluster.connect(name, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION shift CASCADE")
                allow_worker_login(conn)


def setup_database(cluster, name):
    """The zoo and the readers, owned by the superuser and shared with the soak's user."""
    with cluster.connect(name, autocommit=True) as conn:
        for m in build_zoo(ROOT / ".shift" / "test-zoo", profile="test"):
            register_model(conn, m)
        register_digits(conn, cluster, TRAIN, TEST, "soak_train")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (USER,)).fetchone():
            conn.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (USER, PASSWORD))
        conn.execute("SELECT shift.grant_usage(%s)", (USER,))
        for reader in (TRAIN, TEST):
            conn.execute("SELECT shift.grant_reader(%s, %s)", (reader, USER))


def user_dsn(cluster, name):
    return cluster.dsn(name).replace("user=postgres", "user=%s password=%s" % (USER, PASSWORD))


WRITE_LOG = """
CREATE SCHEMA soak;
CREATE TABLE soak.epoch (n integer NOT NULL);
INSERT INTO soak.epoch VALUES (0);
CREATE TABLE soak.feature_writes (model_id text, reader_id text, block integer, epoch integer,
                                  backend integer, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE soak.score_writes (key text, epoch integer, backend integer, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION soak.log_feature() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$ BEGIN
    INSERT INTO soak.feature_writes (model_id, reader_id, block, epoch, backend)
    VALUES (NEW.model_id, NEW.reader_id, NEW.block, (SELECT n FROM soak.epoch), pg_backend_pid());
    RETURN NEW;
END $$;
CREATE FUNCTION soak.log_score() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$ BEGIN
    INSERT INTO soak.score_writes (key, epoch, backend)
    VALUES (concat_ws('/', NEW.proxy, NEW.params::text, NEW.model_id, NEW.test_reader, NEW.train_reader,
                      NEW.fidelity), (SELECT n FROM soak.epoch), pg_backend_pid());
    RETURN NEW;
END $$;
CREATE TRIGGER soak_log BEFORE INSERT ON shift.features FOR EACH ROW EXECUTE FUNCTION soak.log_feature();
CREATE TRIGGER soak_log BEFORE INSERT ON shift.scores FOR EACH ROW EXECUTE FUNCTION soak.log_score();
"""


def install_write_log(cluster, name):
    """Every committed INSERT into shift.features and shift.scores, tagged with the cache's epoch."""
    with cluster.connect(name, autocommit=True) as conn:
        conn.execute(WRITE_LOG)


# -- the reference ------------------------------------------------------------------------------

class Reference:
    """Features of a clean run, and proxy values recomputed from them at any fidelity."""

    def __init__(self, conn):
        self.features = {}
        for m, r, b, n, d, data, nl, logits in conn.execute(
                "SELECT model_id, reader_id, block, num_rows, dim, data, num_logits, logits FROM shift.features"):
            self.features[(m, r, b)] = (n, d, _floats(data, n, d), None if logits is None else _floats(logits, n, nl))
        self.labels = {(r, b): list(y) for r, b, y in conn.execute("SELECT reader_id, block, y FROM shift.labels")}
        self.classes = dict(conn.execute("SELECT reader_id, classes FROM shift.readers").fetchall())
        self.scores = {tuple(k): v for *k, v in conn.execute(
            "SELECT proxy, params::text, model_id, test_reader, train_reader, fidelity, value FROM shift.scores")}
        self._values = {}

    def reader(self, model, reader, limit=None):
        blocks = sorted(b for (m, r, b) in self.features if m == model and r == reader)
        x = np.concatenate([self.features[(model, reader, b)][2] for b in blocks])
        y = np.concatenate([np.asarray(self.labels[(reader, b)], dtype=np.int64) for b in blocks])
        return (x, y) if limit is None else (x[:limit], y[:limit])

    def value(self, proxy, params, model, test, train, fidelity):
        key = (proxy, params, model, test, train, fidelity)
        if key not in self._values:
            train_x, train_y = self.reader(model, train, fidelity)
            test_x, test_y = self.reader(model, test)
            test_y = align_labels(test_y, self.classes[test], self.classes[train])
            self._values[key] = proxies.compute(proxy, json.loads(params), train_x, train_y, test_x, test_y)
        return self._values[key]


def _floats(data, rows, cols):
    return np.frombuffer(data, dtype="<f4").reshape(rows, cols)


def reference_run(cluster, name, log_dir):
    """Every query once, whole passes, one worker, no faults; returns the Reference."""
    with cluster.connect(name, autocommit=True) as conn:
        conn.execute("ALTER DATABASE %s SET shift.successive_halving = 'off'" % name)
    worker = WorkerProcess(cluster.worker_dsn(name), log_dir / "reference-worker.log", "soak-reference").wait_ready()
    try:
        with psycopg.connect(user_dsn(cluster, name), autocommit=True) as conn:
            for text in QUERIES:
                conn.execute("SELECT * FROM shift.query(%s)", (text,)).fetchall()
    finally:
        worker.stop()
    with cluster.connect(name, autocommit=True) as conn:
        ref = Reference(conn)
    # the offline recomputation must agree with what the clean run's worker wrote
    for (proxy, params, model, test, train, fidelity), value in ref.scores.items():
        if abs(ref.value(proxy, params, model, test, train, fidelity) - value) > SCORE_TOL:
            raise RuntimeError("the reference's own score %s/%s/%s differs from its recomputation"
                               % (proxy, params, model))
    return ref


# -- checking the soak's cache against the reference ---------------------------------------------

def check_cache(conn, ref, tally):
    """Compare every cached feature block, label block and proxy value with the reference."""
    for m, r, b, n, d, data, nl, logits in conn.execute(
            "SELECT model_id, reader_id, block, num_rows, dim, data, num_logits, logits FROM shift.features"):
        tally.checks["features"] += 1
        want = ref.features.get((m, r, b))
        ok = want is not None and (n, d) == want[:2] and np.allclose(_floats(data, n, d), want[2], RTOL, ATOL)
        if ok and want[3] is not None:
            ok = logits is not None and np.allclose(_floats(logits, n, nl), want[3], RTOL, ATOL)
        if not ok:
            _mismatch(tally, "features", "%s/%s/%d" % (m, r, b))
    for r, b, y in conn.execute("SELECT reader_id, block, y FROM shift.labels"):
        tally.checks["labels"] += 1
        if ref.labels.get((r, b)) != list(y):
            _mismatch(tally, "labels", "%s/%d" % (r, b))
    for proxy, params, m, t, tr, fid, value in conn.execute(
            "SELECT proxy, params::text, model_id, test_reader, train_reader, fidelity, value FROM shift.scores"):
        tally.checks["scores"] += 1
        want = ref.value(proxy, params, m, t, tr, fid)
        if not abs(want - value) <= SCORE_TOL:
            _mismatch(tally, "scores", "%s %s %s fidelity %d: %r, reference %r" % (proxy, params, m, fid, value, want))


def _mismatch(tally, table, what):
    tally.checks[table + " mismatched"] += 1
    tally.mismatches.append("%s %s" % (table, what))


def clear_cache(conn):
    """As the superuser: the next queries infer and score everything again (a new epoch of the write log)."""
    with conn.transaction():
        conn.execute("DELETE FROM shift.scores")
        conn.execute("DELETE FROM shift.features")
        conn.execute("UPDATE soak.epoch SET n = n + 1")


def wait_queue_idle(conn, timeout):
    """Wait until no task is queued or running; False when some still are after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not conn.execute("SELECT 1 FROM shift.tasks WHERE status IN ('queued', 'running') LIMIT 1").fetchone():
            return True
        time.sleep(0.5)
    return False


def superuser(cluster, name, timeout=60):
    """A superuser connection, waiting for the server to come back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return cluster.connect(name, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# -- clients ------------------------------------------------------------------------------------

class Gate:
    """Clients pass while it is open; closing it waits for the queries in flight to end."""

    def __init__(self):
        self.cond = threading.Condition()
        self.is_open, self.inside = True, 0

    def enter(self):
        with self.cond:
            self.cond.wait_for(lambda: self.is_open)
            self.inside += 1

    def leave(self):
        with self.cond:
            self.inside -= 1
            self.cond.notify_all()

    def close(self):
        with self.cond:
            self.is_open = False
            self.cond.wait_for(lambda: self.inside == 0)

    def open(self):
        with self.cond:
            self.is_open = True
            self.cond.notify_all()


def connect(dsn, stop=None, timeout=120):
    """A client connection with a statement timeout, tried again while the server is down."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True, options="-c statement_timeout=%ds" % QUERY_TIMEOUT_S)
        except psycopg.OperationalError:
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                raise
            time.sleep(0.5)


def run_query(conn, text, phase):
    started = time.monotonic()
    try:
        conn.execute("SELECT rank, model_id, score FROM shift.query(%s)", (text,)).fetchall()
        return Outcome(phase, text, "ok", "", time.monotonic() - started)
    except psycopg.Error as e:
        kind = e.sqlstate or ("connection lost" if isinstance(e, psycopg.OperationalError) else type(e).__name__)
        message = (str(e).strip().splitlines() or [""])[0]
        return Outcome(phase, text, kind, message, time.monotonic() - started)


def client(dsn, gate, stop, tally, seed):
    """Run random queries until stopped; a connection the server dropped is opened again."""
    rng, conn = random.Random(seed), None
    while not stop.is_set():
        if conn is None or conn.closed or conn.broken:
            conn = connect(dsn, stop)
        gate.enter()
        try:
            if stop.is_set():
                break
            tally.add(run_query(conn, rng.choice(QUERIES), "chaos"))
        finally:
            gate.leave()
    if conn is not None:
        conn.close()


# -- faults ------------------------------------------------------------------------------------

def worker_pids(home):
    """The gpu_daemon pid of each supervised slot, as its supervisor's state says (None while restarting)."""
    return [supervise.read_state(p).get("pid") for p in sorted(home.glob("worker-*.state.json"))]


def alive(pid):
    try:
        os.kill(pid, 0)
        return Path("/proc/%d/cmdline" % pid).read_bytes().find(b"gpu_daemon") >= 0
    except (OSError, TypeError):
        return False


def wait_workers_up(home, timeout=120):
    """Faults start once every worker came up: one killed on its first start is not restarted (supervise)."""
    deadline = time.monotonic() + timeout
    while len(list(home.glob("worker-*.state.json.ready"))) < WORKERS:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not come up within %d s; see %s/worker-*.log" % (timeout, home))
        time.sleep(0.5)


def kill_random_worker(home, conn, rng, timeout=90):
    """SIGKILL one live worker chosen at random; (pid, task it was running) or None when none came up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in worker_pids(home) if alive(p)]
        if pids:
            pid = rng.choice(pids)
            task = None
            try:
                row = conn.execute("SELECT current_task FROM shift.workers WHERE pid = %s", (pid,)).fetchone()
                task = row[0] if row else None
            except psycopg.Error:
                pass  # the server is restarting: the kill matters, not what it hit
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue  # it exited meanwhile: choose again
            return pid, task
        time.sleep(0.5)
    return None


def restart_server(cluster, mode):
    started = time.monotonic()
    cluster.stop(mode)
    time.sleep(1.0)  # queries and workers meet a server that is down, not one that blinks
    cluster.start()
    return time.monotonic() - started


def schedule(mode, rng):
    """Chaos-time moments of the kills and the restarts (fast and immediate in turn), in order."""
    events = [(rng.uniform(5, mode.chaos_s - 5), "kill") for _ in range(mode.kills)]
    span = mode.chaos_s / mode.restarts
    events += [(span * i + rng.uniform(0.2, 0.8) * span, ("fast", "immediate")[i % 2]) for i in range(mode.restarts)]
    return sorted(events)


class ChaosClock:
    """Seconds of chaos so far: the pauses between rounds do not count."""

    def __init__(self):
        self.started, self.paused = time.monotonic(), 0.0

    def now(self):
        return time.monotonic() - self.started - self.paused


def reopen(cluster, db, conn):
    if conn is None or conn.closed or conn.broken:
        if conn is not None:
            conn.close()
        return superuser(cluster, db)
    return conn


def between_rounds(cluster, db, gate, conn, ref, tally):
    """Pause the clients, let the queue drain, check the cache against the reference, empty it."""
    gate.close()
    try:
        conn = reopen(cluster, db, conn)
        wait_queue_idle(conn, 60)
        check_cache(conn, ref, tally)
        clear_cache(conn)
        tally.rounds += 1
    finally:
        gate.open()
    return conn


def chaos(cluster, db, home, mode, ref, tally, rng):
    """Clients query while the conductor fires kills and restarts on the chaos clock, rounds between."""
    gate, stop = Gate(), threading.Event()
    threads = [threading.Thread(target=client, args=(user_dsn(cluster, db), gate, stop, tally, 100 + i), daemon=True)
               for i in range(mode.clients)]
    events, clock, next_round = schedule(mode, rng), ChaosClock(), mode.round_s
    conn = superuser(cluster, db)
    for t in threads:
        t.start()
    try:
        while clock.now() < mode.chaos_s or events:
            now = clock.now()
            if events and events[0][0] <= now:
                what = events.pop(0)[1]
                conn = reopen(cluster, db, conn)
                if what == "kill":
                    hit = kill_random_worker(home, conn, rng)
                    if hit:
                        tally.kills.append((now,) + hit)
                else:
                    in_flight = gate.inside
                    tally.restarts.append((now, what, in_flight, restart_server(cluster, what)))
                    conn.close()  # the restart ended its session
                    conn = superuser(cluster, db)
            elif now >= next_round and mode.chaos_s - now > mode.round_s / 3:
                paused = time.monotonic()
                conn = between_rounds(cluster, db, gate, conn, ref, tally)
                clock.paused += time.monotonic() - paused
                next_round += mode.round_s
            else:
                time.sleep(0.05)
    finally:
        stop.set()
        gate.open()
        for t in threads:
            t.join(QUERY_TIMEOUT_S + 30)
        conn.close()


def cold(cluster, db, ref, tally):
    """Empty the cache, then COLD_CLIENTS sessions (already open) each start a query at the same moment."""
    with superuser(cluster, db) as conn:
        wait_queue_idle(conn, 120)
        check_cache(conn, ref, tally)
        clear_cache(conn)
    conns = [connect(user_dsn(cluster, db)) for _ in range(COLD_CLIENTS)]
    for c in conns:
        c.execute("SELECT shift.version()")  # load the in-database Python before the start
    barrier = threading.Barrier(COLD_CLIENTS)

    def one(i):
        barrier.wait()
        tally.add(run_query(conns[i], QUERIES[i % len(QUERIES)], "cold"))

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(COLD_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    for c in conns:
        c.close()
    return seconds


def rerun_failed(cluster, db, tally):
    """Every failed query once more, without faults; one failing on a quarantined task once more after
    shift.retry_failed_tasks(), as the error's hint says. tally.reruns: (failed, rerun, rerun after retry)."""
    failed = [o for o in tally.outcomes if o.kind != "ok"]
    with connect(user_dsn(cluster, db)) as conn:
        first = [run_query(conn, o.query, "rerun") for o in failed]
        stuck = [i for i, r in enumerate(first) if r.kind != "ok" and "retry_task" in r.message]
        second = {}
        if stuck:
            with superuser(cluster, db) as su:
                su.execute("SELECT shift.retry_failed_tasks()")
            second = {i: run_query(conn, failed[i].query, "rerun after retry") for i in stuck}
    tally.reruns = [(o, r, second.get(i)) for i, (o, r) in enumerate(zip(failed, first))]


# -- what is left at the end ----------------------------------------------------------------------

def final_state(cluster, db, home, ref, tally):
    """Queue, duplicate writes and the cache's last check, once the queue had time to drain."""
    with superuser(cluster, db) as conn:
        drained = wait_queue_idle(conn, 120)
        check_cache(conn, ref, tally)
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        return {
            "drained": drained,
            "tasks": dict(q("SELECT status, count(*) FROM shift.tasks GROUP BY 1")),
            "left": q("SELECT t.task_id, t.status, t.key, t.worker_id, "
                      "EXISTS (SELECT 1 FROM shift.live_workers w WHERE w.worker_id = t.worker_id) "
                      "FROM shift.tasks t WHERE t.status IN ('queued', 'running')"),
            "failed_tasks": q("SELECT key, quarantined, error FROM shift.tasks WHERE status = 'failed'"),
            "dup_features": q("SELECT model_id, reader_id, block, epoch, count(*), "
                              "array_agg(backend ORDER BY at), array_agg(at::time ORDER BY at) "
                              "FROM soak.feature_writes GROUP BY 1, 2, 3, 4 HAVING count(*) > 1"),
            "feature_writes": q("SELECT count(*) FROM soak.feature_writes")[0][0],
            "dup_scores": q("SELECT key, epoch, count(*) FROM soak.score_writes GROUP BY 1, 2 HAVING count(*) > 1"),
            "score_writes": q("SELECT count(*) FROM soak.score_writes")[0][0],
            "live_workers": q("SELECT count(*) FROM shift.live_workers")[0][0],
            "supervisors": [supervise.read_state(p) for p in sorted(home.glob("worker-*.state.json"))],
        }


LOG_PATTERNS = {
    "server": {"deadlock detected": r"deadlock detected", "PANIC": r"PANIC:",
               "crash recovery": r"database system was interrupted|was not properly shut down",
               "ready to accept connections": r"ready to accept connections"},
    "workers": {"killed by signal 9": r"was killed by signal 9", "supervisor gave up": r"not restarted again",
                "reconnected": r"reconnected", "gave a task back": r"gave back task",
                "task retried after a transient error": r"will be retried", "deadlock": r"(?i)deadlock",
                "tracebacks": r"^Traceback"},
}


def count_logs(cluster, home):
    texts = {"server": Path(os.path.realpath(cluster.log_file)).read_text(errors="replace"),
             "workers": "".join(p.read_text(errors="replace") for p in sorted(home.glob("worker-*.log")))}
    return {(where, name): len(re.findall(pattern, texts[where], re.M))
            for where, patterns in LOG_PATTERNS.items() for name, pattern in patterns.items()}


# -- the report -------------------------------------------------------------------------------------

# errors a client may meet while workers die and the server restarts, and that running again resolves
RETRYABLE = {"57P01": "terminating connection (server shutting down)", "57P02": "crash shutdown",
             "57P03": "server starting up", "connection lost": "the server closed the connection",
             "55000": "no live worker / not ready", "38000": "a worker task failed",
             "40P01": "deadlock", "40001": "serialization failure", "57014": "statement timeout"}


def summary(tally, final, logs):
    queries = tally.outcomes
    failed = [o for o in queries if o.kind != "ok"]
    unresolved = [o for o, r, _ in tally.reruns if r.kind != "ok"]  # a plain re-run: what a user does first
    after_retry = [o for o, r, again in tally.reruns if (again or r).kind != "ok"]
    reruns = [r for _, r, again in tally.reruns] + [again for _, _, again in tally.reruns if again]
    dups = sum(r[4] - 1 for r in final["dup_features"])
    deadlocks = (Counter(o.kind for o in queries + reruns)["40P01"], logs[("server", "deadlock detected")],
                 logs[("workers", "deadlock")])
    mismatched = sum(v for k, v in tally.checks.items() if k.endswith("mismatched"))
    return {"issued": len(queries), "completed": len(queries) - len(failed), "failed": len(failed),
            "unresolved": unresolved, "after_retry": after_retry,
            "unclear": [o for o in failed if o.kind not in RETRYABLE], "dups": dups, "deadlocks": deadlocks,
            "mismatched": mismatched, "lost": len(final["left"])}


def _flags(args):
    return (" --quick" if args.quick else "") + (
        " --max-task-deaths %d" % args.max_task_deaths if args.max_task_deaths else "")


def report(tally, final, logs, s, args, mode, timings):
    lines = ["# bench/soak.py: queries through worker kills and PostgreSQL restarts", "",
             "`.venv/bin/python bench/soak.py%s` on the 2-core CPU machine (Debian 12, no GPU), test zoo "
             "(3 timm models), digits readers (300 train samples in 3 blocks, 120 test in 2), %d supervised "
             "workers, %d client threads as a non-superuser. %s." % (_flags(args), WORKERS, mode.clients, timings), ""]
    yes = lambda b: "yes" if b else "**no**"  # noqa: E731
    d = s["deadlocks"]
    lines += ["| target | measured | met |", "| --- | --- | --- |",
              "| every query completes, or fails with a retryable error that a re-run resolves | %d issued, %d "
              "completed, %d failed (%d not of a retryable kind); re-run, %d still fail; after "
              "shift.retry_failed_tasks(), %d | %s |"
              % (s["issued"], s["completed"], s["failed"], len(s["unclear"]), len(s["unresolved"]),
                 len(s["after_retry"]),
                 yes(not s["unresolved"] and not s["unclear"])),
              "| 0 mismatched or corrupt rows | %s checked, %d mismatched | %s |"
              % (", ".join("%d %s" % (v, k) for k, v in sorted(tally.checks.items()) if "mismatched" not in k),
                 s["mismatched"], yes(s["mismatched"] == 0)),
              "| 0 duplicate inferences | %d blocks inferred again in the same cache epoch (of %d committed "
              "feature writes) | %s |" % (s["dups"], final["feature_writes"], yes(s["dups"] == 0)),
              "| no deadlock | 40P01 at clients: %d; server log 'deadlock detected': %d; worker logs: %d | %s |"
              % (d + (yes(not any(d)),)),
              "| no lost work | %d tasks queued or running at the end (queue drained: %s) | %s |"
              % (s["lost"], final["drained"], yes(s["lost"] == 0)), ""]
    lines += _phases(tally) + _failures(tally, s) + _faults(tally, final, logs) + _leftovers(final, tally)
    return "\n".join(lines) + "\n"


def _phases(tally):
    lines = ["## Queries", "", "| phase | issued | completed | failed | median s (completed) | max s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    by_phase = defaultdict(list)
    for o in tally.outcomes:
        by_phase[o.phase].append(o)
    for _, r, again in tally.reruns:
        by_phase["re-run of the failed"].append(r)
        if again:
            by_phase["re-run after shift.retry_failed_tasks()"].append(again)
    for phase, os_ in by_phase.items():
        done = [o.seconds for o in os_ if o.kind == "ok"]
        lines.append("| %s | %d | %d | %d | %s | %s |" % (
            phase, len(os_), len(done), len(os_) - len(done), "%.2f" % np.median(done) if done else "-",
            "%.1f" % max(o.seconds for o in os_) if os_ else "-"))
    return lines + [""]


def _failures(tally, s):
    lines = ["## Failures by kind", "", "| SQLSTATE / kind | what | count | re-run then fails | a message |",
             "| --- | --- | ---: | ---: | --- |"]
    kinds = Counter(o.kind for o in tally.outcomes if o.kind != "ok")
    still = Counter(o.kind for o in s["unresolved"])
    sample = {}
    for o in tally.outcomes:
        sample.setdefault(o.kind, o.message)
    for kind, n in kinds.most_common():
        lines.append("| %s | %s | %d | %d | %s |" % (kind, RETRYABLE.get(kind, "**not retryable**"), n,
                                                     still[kind], sample[kind].replace("|", "/")[:160]))
    if not kinds:
        lines.append("| - | no query failed | 0 | 0 | |")
    for o, r, again in tally.reruns:
        if (again or r).kind != "ok":
            lines.append("")
            lines.append("Still failing after the re-run: `%s` -> %s %s" % (o.query, (again or r).kind,
                                                                             (again or r).message))
    return lines + [""]


def _faults(tally, final, logs):
    restarts = sum(int(st.get("restarts") or 0) for st in final["supervisors"])
    gave_up = sum(bool(st.get("gave_up")) for st in final["supervisors"])
    hit = sum(1 for k in tally.kills if k[2] is not None)
    lines = ["## Faults", "",
             "- SIGKILLs: %d (%d of them while the worker ran a task); supervisor restarts: %d; supervisors "
             "that gave up: %d; live workers at the end: %d." % (len(tally.kills), hit, restarts, gave_up,
                                                               final["live_workers"]),
             "- PostgreSQL restarts: %d (%s)." % (len(tally.restarts), "; ".join(
                 "%s at %.0f s of chaos, %d queries in flight, %.1f s down" % (m, at, n, down)
                 for at, m, n, down in tally.restarts)),
             "- Rounds (cache checked and emptied between them): %d." % tally.rounds, "",
             "| log | what | count |", "| --- | --- | ---: |"]
    lines += ["| %s | %s | %d |" % (where, name, n) for (where, name), n in logs.items()]
    return lines + [""]


def _leftovers(final, tally):
    lines = ["## Queue, duplicates and rows at the end", "",
             "- Tasks by status: %s." % ", ".join("%s %d" % kv for kv in sorted(final["tasks"].items())),
             "- Left queued or running: %d%s." % (len(final["left"]), "".join(
                 "; %s %s %s (worker %s, live: %s)" % r for r in final["left"][:5])),
             "- Proxy values written again in the same epoch: %d (of %d committed score writes)."
             % (sum(r[2] - 1 for r in final["dup_scores"]), final["score_writes"])]
    errors = Counter(("quarantined: " if q else "") + re.sub(r"\d+", "N", (e or "")[:90])
                     for _, q, e in final["failed_tasks"])
    lines += ["- Failed tasks at the end: %d%s" % (len(final["failed_tasks"]), "".join(
        "\n  - %d × %s" % (n, e) for e, n in errors.most_common(8)))]
    for r in final["dup_features"][:10]:
        lines.append("- Inferred twice: %s/%s block %d (epoch %d) %d times, by backends %s at %s"
                     % (r[0], r[1], r[2], r[3], r[4], r[5], ", ".join(str(t) for t in r[6])))
    for m in tally.mismatches[:10]:
        lines.append("- Mismatch: %s" % m)
    return lines + [""]


# -- the run ---------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer kills, restarts and rounds")
    parser.add_argument("--python-dir", help="shift.python_dir for the cluster (a private `make install-pyfuncs`)")
    parser.add_argument("--out", type=Path, help="the markdown report (default: bench/results/soak.md, "
                                                 "or /tmp/soak-quick.md with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-task-deaths", type=int,
                        help="shift.max_task_deaths for the workers (default: the product's); outside kills "
                             "count as deaths, so with many kills a small value quarantines healthy tasks")
    parser.add_argument("--keep", action="store_true", help="keep the cluster and its logs")
    args = parser.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]
    out = args.out or (Path("/tmp/soak-quick.md") if args.quick else ROOT / "bench" / "results" / "soak.md")
    rng, tally = random.Random(args.seed), Tally("quick" if args.quick else "full")
    cluster = start_cluster(args.python_dir, args.max_task_deaths)
    home = cluster.home
    started = time.monotonic()
    try:
        create_databases(cluster, ["soak_ref", "soak"])
        for db in ("soak_ref", "soak"):
            setup_database(cluster, db)
        ref = reference_run(cluster, "soak_ref", home)
        install_write_log(cluster, "soak")
        start_workers(cluster.worker_dsn("soak"), WORKERS, device="cpu", home=home, max_restarts=10 * mode.kills)
        wait_workers_up(home)
        print("reference done in %.0f s; chaos for %d s" % (time.monotonic() - started, mode.chaos_s), flush=True)
        t0 = time.monotonic()
        chaos(cluster, "soak", home, mode, ref, tally, rng)
        t1 = time.monotonic()
        cold_s = cold(cluster, "soak", ref, tally)
        rerun_failed(cluster, "soak", tally)
        final = final_state(cluster, "soak", home, ref, tally)
        stop_workers(home)
        logs = count_logs(cluster, home)
        timings = ("%.1f min in all: chaos %.1f min (paused rounds included), 16 cold clients %.1f s"
                   % ((time.monotonic() - started) / 60, (t1 - t0) / 60, cold_s))
        s = summary(tally, final, logs)
        text = report(tally, final, logs, s, args, mode, timings)
        out.write_text(text)
        print(text)
        print("written to %s%s" % (out, "; cluster kept in %s" % home if args.keep else ""))
    finally:
        stop_workers(home)
        if not args.keep:
            cluster.remove()


if __name__ == "__main__":
    main()
