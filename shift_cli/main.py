"""The `shift` command: run the embedded database and workers, and query it."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .cluster import Cluster, ClusterError
from .supervise import MAX_RESTARTS, WINDOW_SECONDS
from .workers import WorkerError, running_workers, start_workers, stop_workers

app = typer.Typer(help="shift: search pre-trained models worth fine-tuning, inside PostgreSQL.",
                  no_args_is_help=True, add_completion=False)
worker_app = typer.Typer(help="Start or stop local workers.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
job_app = typer.Typer(help="Follow, fetch or cancel a query submitted with `shift query --async`.",
                      no_args_is_help=True)
app.add_typer(job_app, name="job")

console = Console()
err = Console(stderr=True, soft_wrap=True)


class _State:
    dbname = "shift"


state = _State()


@app.callback()
def _main(dbname: str = typer.Option("shift", "--dbname", "-d", envvar="SHIFT_DBNAME",
                                     help="database to use in the embedded cluster")):
    state.dbname = dbname


def _fail(msg: str, code: int = 1):
    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    raise typer.Exit(code)


def _cluster() -> Cluster:
    try:
        return Cluster()
    except ClusterError as e:
        _fail(str(e))


def _db_error(e: Exception):
    """Print a database error with psycopg's diagnostics and exit 1."""
    diag = getattr(e, "diag", None)
    msg = (diag and diag.message_primary) or str(e).strip()
    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    if diag is not None:
        for label, value in (("detail", diag.message_detail), ("hint", diag.message_hint),
                             ("sqlstate", diag.sqlstate)):
            if value:
                err.print(f"  [bold]{label}:[/] {value}", highlight=False)
    raise typer.Exit(1)


def _connect(cluster: Cluster, **kw):
    import psycopg
    try:
        return psycopg.connect(cluster.dsn(state.dbname), autocommit=True, **kw)
    except psycopg.Error as e:
        if not cluster.is_running():
            _fail("the shift database is not running; start it with `shift start`")
        _db_error(e)


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        with open(source) as f:
            return f.read()
    except OSError as e:
        _fail(f"cannot read {source}: {e.strerror}")


def _start_workers(cluster: Cluster, count: int, device: str, max_restarts: int = MAX_RESTARTS) -> list[int]:
    try:
        return start_workers(cluster.worker_dsn(state.dbname), count=count, device=device, home=cluster.home,
                             max_restarts=max_restarts)
    except WorkerError as e:
        _fail(str(e))


def _describe_worker(w) -> str:
    """#slot, the worker's pid, and how often its supervisor restarted it."""
    pid = w.worker_pid or w.pid
    restarts = f", restarts {w.restarts}" if w.restarts else ""
    return f"#{w.slot} pid {pid}{restarts}"


# ---------------------------------------------------------------------------

@app.command()
def start(workers: int = typer.Option(1, "--workers", "-w", min=0, help="workers to start if none run"),
          device: str = typer.Option("auto", "--device", help="auto, cpu, cuda:N, or a comma-separated list")):
    """Create and start the database (and workers); print the connection string."""
    import psycopg
    cluster = _cluster()
    try:
        if cluster.init():
            console.print(f"initialised a new cluster in {cluster.home}")
        if cluster.start():
            console.print(f"PostgreSQL started on port {cluster.port}")
        else:
            console.print(f"PostgreSQL already running on port {cluster.port}")
        cluster.ensure_database(state.dbname)
    except ClusterError as e:
        _fail(str(e))
    except psycopg.Error as e:
        _db_error(e)
    live = running_workers(cluster.home)
    if live:
        console.print(f"{len(live)} worker(s) already running: {', '.join(str(w.pid) for w in live)}")
    elif workers:
        pids = _start_workers(cluster, workers, device)
        console.print(f"started {len(pids)} worker(s): {', '.join(map(str, pids))}")
    console.print(cluster.dsn(state.dbname), highlight=False, soft_wrap=True)


@app.command()
def stop():
    """Stop the workers, then the database."""
    cluster = _cluster()
    pids = stop_workers(cluster.home)
    if pids:
        console.print(f"stopped {len(pids)} worker(s)")
    try:
        stopped = cluster.stop()
    except ClusterError as e:
        _fail(str(e))
    console.print("PostgreSQL stopped" if stopped else "PostgreSQL was not running")


@app.command()
def status():
    """Show the database, the workers and the task queue."""
    import psycopg
    cluster = _cluster()
    st = cluster.status()
    t = Table(show_header=False, box=None)
    t.add_row("cluster", "[green]running[/]" if st["running"] else "[red]stopped[/]")
    for key in ("port", "pid", "data_dir", "log_file", "server_os_user"):
        t.add_row(key.replace("_", " "), "-" if st[key] is None else str(st[key]))
    t.add_row("dsn", cluster.dsn(state.dbname))
    live = running_workers(cluster.home)
    t.add_row("local workers", ", ".join(_describe_worker(w) for w in live) or "none")
    console.print(t)
    if not st["running"]:
        return
    try:
        with psycopg.connect(cluster.dsn(state.dbname), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute("SELECT * FROM shift.live_workers ORDER BY worker_id")
            rows = cur.fetchall()
            wt = Table(title="shift.live_workers")
            for col in cur.description:
                wt.add_column(col.name)
            for r in rows:
                wt.add_row(*("" if v is None else str(v) for v in r))
            console.print(wt)
            counts = conn.execute("SELECT status, count(*) FROM shift.tasks GROUP BY status ORDER BY status").fetchall()
            tt = Table(title="shift.tasks")
            tt.add_column("status")
            tt.add_column("count", justify="right")
            for s, n in counts:
                tt.add_row(s, str(n))
            console.print(tt)
    except psycopg.Error as e:
        err.print(f"[yellow]database {state.dbname!r} not queryable:[/] "
                  f"{(getattr(e, 'diag', None) and e.diag.message_primary) or str(e).strip()}", highlight=False)


@app.command()
def dsn():
    """Print the connection string of the embedded database."""
    print(_cluster().dsn(state.dbname))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(ctx: typer.Context):
    """Run psql on the embedded database; extra arguments go to psql."""
    cmd = _cluster().psql_command(state.dbname) + list(ctx.args)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        _fail(f"cannot run {cmd[0]}: {e.strerror}")


@worker_app.command("start")
def worker_start(count: int = typer.Option(1, "--count", "-n", min=1),
                 device: str = typer.Option("auto", "--device", help="auto, cpu, cuda:N, or a comma-separated list"),
                 max_restarts: int = typer.Option(MAX_RESTARTS, "--max-restarts", min=0,
                                                  help="restarts of a crashed worker allowed in "
                                                       f"{WINDOW_SECONDS / 60:.0f} minutes")):
    """Start more local workers, each restarted when it crashes."""
    cluster = _cluster()
    if not cluster.is_running():
        _fail("the database is not running; start it with `shift start`")
    pids = _start_workers(cluster, count, device, max_restarts)
    console.print(f"started {len(pids)} worker(s): {', '.join(map(str, pids))}")


@worker_app.command("stop")
def worker_stop():
    """Stop all local workers."""
    pids = stop_workers(_cluster().home)
    console.print(f"stopped {len(pids)} worker(s)" if pids else "no workers were running")


@app.command()
def query(source: str = typer.Argument(..., metavar="FILE_OR_DASH", help="SHiFT-QL file, or - for stdin"),
          as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
          run_async: bool = typer.Option(False, "--async",
                                         help="run it as a job on a worker and print the job id")):
    """Run a SHiFT-QL query, showing task progress while it runs."""
    import psycopg
    text = _read_source(source)
    cluster = _cluster()
    if run_async:
        with _connect(cluster) as conn:
            try:
                print(conn.execute("SELECT shift.submit(%s)", (text,)).fetchone()[0])
            except psycopg.Error as e:
                _db_error(e)
        return
    conn = _connect(cluster)
    # the bar shows progress; warnings (a model left out because it cannot be loaded) are printed
    conn.add_notice_handler(_print_warning)
    monitor = _connect(cluster)
    outcome: dict = {}

    def run():
        try:
            cur = conn.execute("SELECT rank, model_id, score, selected FROM shift.query(%s)", (text,))
            outcome["rows"] = cur.fetchall()
        except BaseException as e:  # handed to the main thread
            outcome["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} tasks"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("waiting for tasks", total=None)
            worker.start()
            while worker.is_alive():
                worker.join(0.5)
                if worker.is_alive():
                    _show_progress(monitor, conn.info.backend_pid, bar, task)
    except KeyboardInterrupt:
        cancel = getattr(conn, "cancel_safe", None) or conn.cancel
        try:
            cancel()
        except Exception:
            pass
        worker.join(5)
        _fail("cancelled", 130)
    finally:
        monitor.close()
        if not worker.is_alive():
            conn.close()

    if "error" in outcome:
        e = outcome["error"]
        if isinstance(e, psycopg.Error):
            _db_error(e)
        raise e
    _print_rows(outcome.get("rows", []), as_json, f"in {time.monotonic() - started:.1f} s")


def _print_rows(rows, as_json: bool, when: str) -> None:
    """The ranked models of a query or a job: a table, or JSON lines."""
    if as_json:
        for rank, model_id, score, selected in rows:
            print(json.dumps({"rank": rank, "model_id": model_id, "score": score, "selected": selected},
                             default=str))
        return
    t = Table(title=f"{len(rows)} model(s) {when}")
    t.add_column("rank", justify="right")
    t.add_column("model_id")
    t.add_column("score", justify="right")
    t.add_column("selected")
    for rank, model_id, score, selected in rows:
        t.add_row(str(rank), str(model_id), "" if score is None else f"{score:.6g}",
                  "" if selected is None else json.dumps(selected, default=str))
    console.print(t)


def _print_warning(diag) -> None:
    if diag.severity_nonlocalized == "WARNING":
        from rich.markup import escape
        err.print(f"[yellow]warning:[/yellow] {escape(diag.message_primary or '')}", highlight=False)


def _show_progress(monitor, backend_pid: int, bar: Progress, task) -> None:
    import psycopg
    try:
        counts = dict(monitor.execute(
            "SELECT status, count(*) FROM shift.tasks WHERE %s = ANY(waiters) GROUP BY status",
            (backend_pid,)).fetchall())
    except psycopg.Error:
        return
    total = sum(counts.values())
    if total:
        desc = ", ".join(f"{counts[s]} {s}" for s in ("running", "queued", "failed") if counts.get(s))
        bar.update(task, total=total, completed=counts.get("done", 0) + counts.get("failed", 0),
                   description=desc or "finishing")


def _job_call(statement: str, job_id: int):
    """Run one statement about a job; its rows and column names (a database error exits 1)."""
    import psycopg
    with _connect(_cluster()) as conn:
        try:
            cur = conn.execute(statement, (job_id,))
            return cur.fetchall(), [c.name for c in cur.description]
        except psycopg.Error as e:
            _db_error(e)


@job_app.command("status")
def job_status(job_id: int = typer.Argument(..., metavar="ID"),
               as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """A job's state, its tasks done, the time it ran and the time it still needs."""
    rows, names = _job_call("SELECT * FROM shift.job_status(%s)", job_id)
    status = dict(zip(names, rows[0]))
    if as_json:
        print(json.dumps(status, default=str))
        return
    t = Table(show_header=False, box=None)
    for name, value in status.items():
        if name == "progress":
            value = f"{value:.0%}"
        elif hasattr(value, "total_seconds"):
            value = f"{value.total_seconds():.1f} s"
        t.add_row(name.replace("_", " "), "-" if value is None else str(value))
    console.print(t)


@job_app.command("result")
def job_result(job_id: int = typer.Argument(..., metavar="ID"),
               as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table")):
    """The ranked models of a done job (a failed job prints its error)."""
    rows, _ = _job_call("SELECT rank, model_id, score, selected FROM shift.job_result(%s)", job_id)
    _print_rows(rows, as_json, f"of job {job_id}")


@job_app.command("cancel")
def job_cancel(job_id: int = typer.Argument(..., metavar="ID")):
    """Cancel a queued or running job."""
    rows, _ = _job_call("SELECT shift.cancel_job(%s)", job_id)
    console.print(f"job {job_id} cancelled" if rows[0][0] else f"job {job_id} had already ended")


@app.command()
def translate(source: str = typer.Argument(..., metavar="FILE_OR_DASH", help="SHiFT-QL file, or - for stdin")):
    """Print the plain SQL a SHiFT-QL query becomes."""
    import psycopg
    text = _read_source(source)
    with _connect(_cluster()) as conn:
        try:
            print(conn.execute("SELECT shift.translate(%s)", (text,)).fetchone()[0])
        except psycopg.Error as e:
            _db_error(e)


@app.command()
def demo():
    """Run Q1-Q3 of the SHiFT paper on a locally built zoo and scikit-learn's digits."""
    from .demo import main as run_demo
    run_demo()


if __name__ == "__main__":
    app()
