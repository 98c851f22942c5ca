"""The embedded cluster: init, start, stop, connect, and the root / server-user handling.

These start real PostgreSQL servers (without the shift extension) in throwaway
directories on free ports.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import textwrap
from pathlib import Path

import psycopg
import pytest

from shift_cli import cluster as cluster_mod
from shift_cli import workers as workers_mod
from shift_cli.cluster import Cluster, ClusterError

try:
    cluster_mod.find_bindir()
except ClusterError as e:  # pragma: no cover - depends on the machine
    pytest.skip(f"no PostgreSQL server binaries: {e}", allow_module_level=True)

IS_ROOT = os.geteuid() == 0
SERVER_USER = os.environ.get("SHIFT_PG_USER", "postgres") if IS_ROOT else pwd.getpwuid(os.getuid()).pw_name
if IS_ROOT:
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:  # pragma: no cover
        pytest.skip(f"running as root needs the OS user {SERVER_USER!r}", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_tmpdir() -> Path:
    """A temporary directory the server user can traverse."""
    d = Path(tempfile.mkdtemp(prefix="shift-test-", dir="/tmp"))
    os.chmod(d, 0o755)
    return d


@pytest.fixture(scope="module")
def running():
    """One cluster shared by the tests that only read from it."""
    tmp = open_tmpdir()
    c = Cluster(home=tmp / "home", port=free_port(), fast=True)
    c.start()
    yield c
    c.remove()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def tmp_open():
    d = open_tmpdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def proc_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_lifecycle_is_idempotent_and_keeps_data(tmp_open):
    c = Cluster(home=tmp_open / "home", port=free_port(), fast=True)
    try:
        assert not c.is_running()
        assert c.status()["initialized"] is False
        assert c.init() is True
        assert c.init() is False
        assert not c.is_running()

        assert c.start() is True
        assert c.is_running()
        assert c.start() is False  # no-op on a running cluster
        with psycopg.connect(c.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")

        assert c.stop() is True
        assert not c.is_running()
        assert c.stop() is False  # no-op on a stopped cluster
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(c.dsn("postgres"), connect_timeout=3)

        assert c.start() is True
        with psycopg.connect(c.dsn("postgres")) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    finally:
        c.remove()
    assert not (c.home / "pgdata").exists()


def test_dsn_connects_as_bootstrap_superuser(running):
    dsn = running.dsn("postgres")
    parsed = psycopg.conninfo.conninfo_to_dict(dsn)
    assert parsed["user"] == "postgres"
    assert parsed["port"] == str(running.port)
    assert parsed["dbname"] == "postgres"
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
                           " pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
                           ).fetchone()
    assert row == ("postgres", True, "UTF8")
    assert psycopg.conninfo.conninfo_to_dict(running.dsn())["dbname"] == "shift"


def test_server_settings(running):
    with psycopg.connect(running.dsn("postgres")) as conn:
        s = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'port', "
            "'unix_socket_directories', 'max_connections', 'shared_preload_libraries', 'fsync', "
            "'synchronous_commit', 'full_page_writes')").fetchall())
    assert s["listen_addresses"] == "127.0.0.1"
    assert s["port"] == str(running.port)
    assert s["unix_socket_directories"] == os.path.realpath(running.socket_dir)
    assert s["max_connections"] == "100"
    assert s["shared_preload_libraries"] == ""
    assert (s["fsync"], s["synchronous_commit"], s["full_page_writes"]) == ("off", "off", "off")


def test_durable_by_default(tmp_open):
    c = Cluster(home=tmp_open / "home", port=free_port())
    try:
        c.start()
        with psycopg.connect(c.dsn("postgres")) as conn:
            assert conn.execute("SELECT current_setting('fsync'), current_setting('full_page_writes')"
                                ).fetchone() == ("on", "on")
    finally:
        c.remove()


def test_server_runs_as_the_unprivileged_user(running):
    uid = pwd.getpwnam(SERVER_USER).pw_uid
    with psycopg.connect(running.dsn("postgres")) as conn:
        backend, data_dir = conn.execute(
            "SELECT pg_backend_pid(), current_setting('data_directory')").fetchone()
        assert proc_uid(backend) == uid  # while the connection is open: its backend exits with it
    assert proc_uid(running.status()["pid"]) == uid
    assert os.stat(data_dir).st_uid == uid
    assert os.stat(os.path.realpath(running.socket_dir)).st_uid == uid
    assert os.stat(os.path.realpath(running.log_file)).st_uid == uid
    if IS_ROOT:
        assert uid != 0


def test_status_reports_the_cluster(running):
    st = running.status()
    assert st["running"] is True and st["initialized"] is True
    assert st["port"] == running.port
    assert int(st["version"]) >= 15
    assert st["server_os_user"] == SERVER_USER
    assert st["dsn"] == running.dsn()
    assert Path(st["log_file"]).stat().st_size > 0


def test_ensure_database_creates_once(running):
    assert running.ensure_database("shift_unit", extensions=()) is True
    assert running.ensure_database("shift_unit", extensions=()) is False
    assert running.ensure_database("shift_unit", extensions=("plpgsql",)) is False
    with psycopg.connect(running.dsn("shift_unit")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("shift_unit",)


def test_ensure_database_needs_a_running_cluster(tmp_open):
    c = Cluster(home=tmp_open / "home", port=free_port())
    with pytest.raises(ClusterError, match="not running"):
        c.ensure_database("x", extensions=())


def test_psql_command(running):
    out = subprocess.run(running.psql_command("postgres") + ["-Atc", "SELECT 40 + 2"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42"


def test_failed_start_shows_the_server_log(tmp_open):
    port = free_port()
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        c = Cluster(home=tmp_open / "home", port=port, fast=True)
        try:
            with pytest.raises(ClusterError) as info:
                c.start(timeout=20)
            assert "did not start" in str(info.value)
            assert "could not" in str(info.value)  # a line from the server log
            assert not c.is_running()
        finally:
            c.remove()


def test_environment_defaults(monkeypatch, tmp_open):
    monkeypatch.setenv("SHIFT_HOME", str(tmp_open / "elsewhere"))
    monkeypatch.setenv("SHIFT_PORT", "54999")
    c = Cluster()
    assert c.home == tmp_open / "elsewhere"
    assert c.port == 54999
    monkeypatch.delenv("SHIFT_HOME")
    monkeypatch.delenv("SHIFT_PORT")
    c = Cluster()
    assert c.home == cluster_mod.project_root() / ".shift"
    assert c.port == cluster_mod.DEFAULT_PORT
    monkeypatch.setenv("SHIFT_PORT", "nope")
    with pytest.raises(ClusterError):
        Cluster()


def test_dsn_quotes_awkward_paths():
    c = Cluster(home="/tmp/a dir/it's", port=5999)
    parsed = psycopg.conninfo.conninfo_to_dict(c.dsn("my db"))
    assert parsed["host"] == "/tmp/a dir/it's/run"
    assert parsed["dbname"] == "my db"


def test_bindir_from_pg_config(monkeypatch):
    pg_config = shutil.which("pg_config")
    if not pg_config:
        pytest.skip("no pg_config on PATH")
    monkeypatch.setenv("PG_CONFIG", pg_config)
    assert (cluster_mod.find_bindir() / "initdb").exists()
    monkeypatch.setenv("PG_CONFIG", "/nonexistent/pg_config")
    with pytest.raises(ClusterError, match="PG_CONFIG"):
        cluster_mod.find_bindir()


@pytest.mark.skipif(not IS_ROOT, reason="the fallback is for a server user other than the caller")
def test_unreachable_home_falls_back_to_var_lib_shift():
    private = Path(tempfile.mkdtemp(prefix="shift-private-", dir="/tmp"))  # mode 700, owned by root
    assert os.stat(private).st_mode & 0o777 == 0o700
    c = Cluster(home=private / "project" / ".shift", port=free_port(), fast=True)
    fallback = c.fallback_dir
    try:
        assert fallback.parent == Path("/var/lib/shift")
        c.start()
        for name in ("pgdata", "run", "postgres.log"):
            link = c.home / name
            assert link.is_symlink(), name
            assert Path(os.path.realpath(link)) == fallback / name
        with psycopg.connect(c.dsn("postgres")) as conn:
            data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
        assert Path(data_dir) == fallback / "pgdata"
        assert os.stat(data_dir).st_uid == pwd.getpwnam(SERVER_USER).pw_uid
        assert psycopg.conninfo.conninfo_to_dict(c.dsn())["host"] == str(fallback / "run")
        # a restart reuses the same layout
        assert c.stop() and c.start()
        assert c.start() is False
    finally:
        c.remove()
        shutil.rmtree(private, ignore_errors=True)
    assert not fallback.exists()


FAKE_DAEMON = textwrap.dedent("""
    import argparse, signal, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--dsn"); p.add_argument("--device"); p.add_argument("--worker-id")
    a = p.parse_args()
    print("fake worker on", a.device, flush=True)
    if a.device == "broken":
        sys.exit(3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(0.1)
""")


@pytest.fixture
def fake_daemon(tmp_open, monkeypatch):
    pkg = tmp_open / "root" / "gpu_daemon"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_DAEMON)
    monkeypatch.setattr(workers_mod, "project_root", lambda: tmp_open / "root")
    return tmp_open / "whome"


def test_workers_start_list_stop(fake_daemon):
    home = fake_daemon
    pids = workers_mod.start_workers("host=/nowhere", count=2, device="cpu,cuda:1", home=home, check_s=0.5)
    try:
        assert len(pids) == 2
        live = workers_mod.running_workers(home)
        assert sorted(w.pid for w in live) == sorted(pids)
        assert [w.slot for w in live] == [1, 2]
        assert "cuda:1" in (home / "worker-2.log").read_text()
        more = workers_mod.start_workers("host=/nowhere", count=1, home=home, check_s=0.2)
        assert [w.slot for w in workers_mod.running_workers(home)] == [1, 2, 3]
        pids += more
    finally:
        stopped = workers_mod.stop_workers(home)
    assert sorted(stopped) == sorted(pids)
    assert workers_mod.running_workers(home) == []
    assert not list(home.glob("worker-*.pid"))


def test_worker_that_dies_at_once_is_reported(fake_daemon):
    with pytest.raises(workers_mod.WorkerError, match="exited with 3"):
        workers_mod.start_workers("host=/nowhere", count=1, device="broken", home=fake_daemon, check_s=5)
    assert workers_mod.running_workers(fake_daemon) == []
