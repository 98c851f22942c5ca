"""The embedded PostgreSQL cluster that `shift start` creates and runs.

Layout under the state directory (``SHIFT_HOME``, default ``<project>/.shift``)::

    pgdata/        the cluster's data directory
    run/           the unix socket directory
    postgres.log   the server log

PostgreSQL refuses to run as root. When the caller is root, initdb, pg_ctl and the
server run as an unprivileged OS user (``postgres``, or ``SHIFT_PG_USER``) through
``runuser``. If that user cannot reach the state directory (a project under a
mode-700 home, say), the real data and socket directories and the log move to
``/var/lib/shift/<hash>/`` and the state directory holds symlinks to them.

Authentication: over the socket, the project's OS user and the server's OS user log
in by peer authentication as ``postgres`` or ``shift_worker`` (pg_ident.conf map
``shift``); every other login, and every TCP connection, needs a SCRAM password. The
socket directory is entered only by those two users. The backends enqueue tasks over
a loopback connection as ``shift_worker`` (``shift.loopback_dsn``).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Mapping, Sequence

DEFAULT_PORT = 55432
DB_SUPERUSER = "postgres"
WORKER_ROLE = "shift_worker"  # the extension's group role; the embedded cluster lets it log in
FALLBACK_ROOT = Path("/var/lib/shift")
MIN_PG_MAJOR = 15
# sun_path holds 108 bytes including the terminating NUL
_MAX_SOCKET_PATH = 107


class ClusterError(RuntimeError):
    """Something about the embedded cluster went wrong; the message says what to do."""


# ---------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------

def project_root() -> Path:
    """The directory holding pyproject.toml, searched upwards from this file."""
    here = Path(__file__).resolve().parent
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file():
            return d
    return here.parent


def default_home() -> Path:
    env = os.environ.get("SHIFT_HOME")
    return Path(env).expanduser().absolute() if env else project_root() / ".shift"


def default_port() -> int:
    env = os.environ.get("SHIFT_PORT")
    if not env:
        return DEFAULT_PORT
    try:
        return int(env)
    except ValueError:
        raise ClusterError(f"SHIFT_PORT must be a port number, not {env!r}") from None


def find_bindir() -> Path:
    """PostgreSQL's bin directory: from $PG_CONFIG, else the newest /usr/lib/postgresql/N/bin."""
    needed = ("initdb", "pg_ctl", "postgres")

    def usable(d: Path) -> bool:
        return all(os.access(d / b, os.X_OK) for b in needed)

    pg_config = os.environ.get("PG_CONFIG")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise ClusterError(f"PG_CONFIG={pg_config} could not be run: {e}") from None
        d = Path(out.stdout.strip())
        if not usable(d):
            raise ClusterError(f"PG_CONFIG={pg_config} points at {d}, which lacks {', '.join(needed)}")
        return d

    candidates = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        m = re.fullmatch(r"(\d+)(?:\.(\d+))?", d.parent.name)
        if m and int(m.group(1)) >= MIN_PG_MAJOR and usable(d):
            candidates.append(((int(m.group(1)), int(m.group(2) or 0)), d))
    if candidates:
        return max(candidates)[1]

    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True)
        d = Path(out.stdout.strip())
        if out.returncode == 0 and usable(d) and _major_version(d) >= MIN_PG_MAJOR:
            return d
    raise ClusterError(
        f"no PostgreSQL >= {MIN_PG_MAJOR} server binaries found: install postgresql-{MIN_PG_MAJOR} "
        "(or newer), or set PG_CONFIG to its pg_config"
    )


def _major_version(bindir: Path) -> int:
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True)
        m = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _conninfo_quote(value: str) -> str:
    if value and not re.search(r"[\s'\\=]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_value(v: object) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (int, float)):
        return str(v)
    return _conf_quote(str(v))


def _tail(path: Path, offset: int = 0, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------

class Cluster:
    """A PostgreSQL cluster owned by this project (or by a test, in another home and port).

    ``fast=True`` trades durability for speed (fsync, synchronous_commit and
    full_page_writes off): for throwaway test clusters only. ``settings`` are extra
    postgresql.conf parameters (e.g. ``{"shift.python_dir": "/opt/shift"}``); they are
    written at every start.
    """

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        port: int | None = None,
        *,
        fast: bool = False,
        settings: Mapping[str, object] | None = None,
        pg_user: str | None = None,
        bindir: str | os.PathLike | None = None,
    ):
        self.home = Path(home).expanduser().absolute() if home is not None else default_home()
        self.port = int(port) if port is not None else default_port()
        self.fast = fast
        self.settings = dict(settings or {})
        self._bindir = Path(bindir) if bindir is not None else None
        if os.geteuid() == 0:
            self.pg_user: str | None = pg_user or os.environ.get("SHIFT_PG_USER") or "postgres"
        else:
            self.pg_user = None  # run as ourselves

    # -- paths -------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def fallback_dir(self) -> Path:
        """Where data, socket and log live when the server user cannot reach ``home``."""
        digest = hashlib.sha1(str(self.home.resolve()).encode()).hexdigest()[:12]
        if self.pg_user is not None:
            return FALLBACK_ROOT / digest
        return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"shift-{os.getuid()}" / digest

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    def _real(self, p: Path) -> Path:
        return Path(os.path.realpath(p))

    # -- running things as the server user -----------------------------------

    def _as_server_user(self, argv: Sequence[str]) -> list[str]:
        argv = [str(a) for a in argv]
        if self.pg_user is None:
            return argv
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        if not os.access(runuser, os.X_OK):
            raise ClusterError("running as root needs `runuser` (util-linux) to start PostgreSQL as "
                               f"the unprivileged user {self.pg_user!r}")
        return [runuser, "-u", self.pg_user, "--", *argv]

    def _run(self, argv: Sequence[str], check: bool = True, timeout: float | None = 120):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            res = subprocess.run(self._as_server_user(argv), cwd="/", env=env, capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{Path(argv[0]).name} did not finish within {timeout} s") from None
        if check and res.returncode != 0:
            raise ClusterError(f"{Path(argv[0]).name} failed (exit {res.returncode}):\n"
                               f"{(res.stderr or res.stdout).strip()}")
        return res

    def _server_ids(self) -> tuple[int, int]:
        if self.pg_user is None:
            return os.getuid(), os.getgid()
        try:
            pw = pwd.getpwnam(self.pg_user)
        except KeyError:
            raise ClusterError(
                f"PostgreSQL cannot run as root and the OS user {self.pg_user!r} does not exist: "
                "create it (useradd --system postgres) or set SHIFT_PG_USER to another unprivileged user"
            ) from None
        if pw.pw_uid == 0:
            raise ClusterError(f"SHIFT_PG_USER={self.pg_user!r} is root; PostgreSQL needs an unprivileged user")
        return pw.pw_uid, pw.pw_gid

    def _server_can_reach(self, d: Path) -> bool:
        if self.pg_user is None:
            return os.access(d, os.X_OK)
        return subprocess.run(self._as_server_user(["test", "-x", str(d)]), cwd="/",
                              capture_output=True).returncode == 0

    # -- layout ---------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        """Create data dir, socket dir and log file where the server user can use them."""
        uid, gid = self._server_ids()
        self.home.mkdir(parents=True, exist_ok=True)
        sock_len = len(str(self._real(self.socket_dir)) if self.socket_dir.exists() else str(self.socket_dir))
        sock_len += len(f"/.s.PGSQL.{self.port}")
        linked = any(p.is_symlink() for p in (self.data_dir, self.socket_dir))
        use_fallback = linked or not self._server_can_reach(self.home) or sock_len > _MAX_SOCKET_PATH

        if use_fallback:
            base = self.fallback_dir
            if self.pg_user is not None:
                FALLBACK_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
                os.chmod(FALLBACK_ROOT, 0o755)
            base.mkdir(mode=0o755 if self.pg_user else 0o700, parents=True, exist_ok=True)
            if self.pg_user is not None:
                os.chmod(base, 0o755)
            for name in ("pgdata", "run", "postgres.log"):
                link, target = self.home / name, base / name
                if link.is_symlink():
                    if self._real(link) == self._real(target) or os.path.lexists(os.readlink(link)):
                        continue
                    link.unlink()  # dangling link from an earlier layout: point it at ours
                elif link.exists():
                    if name == "pgdata" and (link / "PG_VERSION").exists():
                        raise ClusterError(
                            f"{link} holds a cluster that user {self.pg_user} cannot reach; make its "
                            f"parent directories traversable (chmod o+x) or move it to {target} and "
                            f"link {link} -> {target}")
                    if link.is_dir():
                        shutil.rmtree(link)
                    else:
                        link.unlink()
                link.symlink_to(target)

        data, run, log = (self._real(p) for p in (self.data_dir, self.socket_dir, self.log_file))
        if not (data / "PG_VERSION").exists():
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(data, uid, gid)
            os.chmod(data, 0o700)
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        # only the server's user (owner) and the project's (group) enter the socket directory
        os.chown(run, uid, os.getgid())
        os.chmod(run, 0o770 if uid != os.getuid() else 0o700)
        if not log.exists():
            log.touch(mode=0o640)
        if log.stat().st_uid != uid:
            os.chown(log, uid, gid)
        if len(str(run / f".s.PGSQL.{self.port}")) > _MAX_SOCKET_PATH:
            raise ClusterError(f"socket path {run}/.s.PGSQL.{self.port} is too long for a unix socket; "
                               "set SHIFT_HOME to a shorter path")
        for d in (data, run):
            if not self._server_can_reach(d):
                raise ClusterError(f"user {self.pg_user} cannot reach {d}")

    # -- lifecycle ------------------------------------------------------------

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def init(self) -> bool:
        """Create the cluster; returns False when it already existed."""
        if self.is_initialized():
            return False
        initdb = self.bindir / "initdb"  # fail on missing binaries before touching the disk
        self._prepare_dirs()
        locale = "C.UTF-8" if self._has_c_utf8() else "C"
        self._run([
            initdb, "-D", self._real(self.data_dir), "-U", DB_SUPERUSER,
            "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8",
            f"--locale={locale}", "--no-instructions",
        ], timeout=300)
        conf = self._real(self.data_dir) / "postgresql.conf"
        with open(conf, "a") as f:
            f.write("\n# settings managed by shift_cli, rewritten at every start\n"
                    "include_if_exists = 'shift.conf'\n")
        return True

    @staticmethod
    def _has_c_utf8() -> bool:
        try:
            out = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout
        except OSError:
            return False
        return any(x.lower().replace("-", "") == "c.utf8" for x in out.split())

    def _write_conf(self) -> None:
        uid, gid = self._server_ids()
        settings: dict[str, object] = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self._real(self.socket_dir)),
            "max_connections": 100,
            "shared_preload_libraries": "",
            "logging_collector": False,
            # peer authentication as the workers' role: see _write_auth
            "shift.loopback_dsn": f"user={WORKER_ROLE}",
        }
        if self.fast:
            settings.update(fsync=False, synchronous_commit=False, full_page_writes=False)
        settings.update(self.settings)
        path = self._real(self.data_dir) / "shift.conf"
        path.write_text("".join(f"{k} = {_conf_value(v)}\n" for k, v in settings.items()))
        os.chown(path, uid, gid)
        os.chmod(path, 0o600)
        self._write_auth()

    def _write_auth(self) -> None:
        """pg_hba.conf and pg_ident.conf: peer for the project's and the server's OS users as the
        superuser or the worker role, SCRAM passwords for everyone else. Rewritten at every start."""
        uid, gid = self._server_ids()
        users = sorted({pwd.getpwuid(os.getuid()).pw_name, self.pg_user or pwd.getpwuid(os.getuid()).pw_name})
        ident = "".join(f"shift  {u}  {role}\n" for u in users for role in (DB_SUPERUSER, WORKER_ROLE))
        hba = (f"# written by shift_cli at every start\n"
               f"local  all  {DB_SUPERUSER},{WORKER_ROLE}  peer  map=shift\n"
               f"local  all  all  scram-sha-256\n"
               f"host   all  all  127.0.0.1/32  scram-sha-256\n"
               f"host   all  all  ::1/128  scram-sha-256\n")
        for name, text in (("pg_hba.conf", hba), ("pg_ident.conf", "# written by shift_cli\n" + ident)):
            path = self._real(self.data_dir) / name
            path.write_text(text)
            os.chown(path, uid, gid)
            os.chmod(path, 0o600)

    def _pid(self) -> int | None:
        """Postmaster pid when the server for our data dir is alive."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        if state == "Z" or b"postgres" not in cmd:
            return None
        return pid

    def is_running(self) -> bool:
        return self._pid() is not None

    def start(self, wait: bool = True, timeout: int = 60) -> bool:
        """Start the server (initialising it first if needed); False when it already ran."""
        if self.is_running():
            return False
        self.init()
        self._prepare_dirs()
        self._write_conf()
        log = self._real(self.log_file)
        offset = log.stat().st_size if log.exists() else 0
        argv = [self.bindir / "pg_ctl", "start", "-D", self._real(self.data_dir), "-l", log, "-s",
                "-w" if wait else "-W", "-t", str(timeout)]
        res = self._run(argv, check=False, timeout=timeout + 30)
        if res.returncode != 0:
            out = (res.stderr or res.stdout).strip()
            raise ClusterError(f"PostgreSQL did not start (pg_ctl exit {res.returncode}): {out}\n"
                               f"--- tail of {self.log_file} ---\n{_tail(log, offset)}")
        return True

    def stop(self, mode: str = "fast", timeout: int = 60) -> bool:
        """Stop the server; False when it was not running."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"stop mode must be smart, fast or immediate, not {mode!r}")
        if not self.is_running():
            return False
        res = self._run([self.bindir / "pg_ctl", "stop", "-D", self._real(self.data_dir), "-m", mode,
                         "-s", "-w", "-t", str(timeout)], check=False, timeout=timeout + 30)
        if res.returncode != 0 and self.is_running():
            raise ClusterError(f"PostgreSQL did not stop: {(res.stderr or res.stdout).strip()}")
        return True

    def remove(self) -> None:
        """Stop the server and delete its data, socket dir, log and any fallback directory."""
        if self.is_running():
            self.stop("immediate")
        for p in (self.data_dir, self.socket_dir, self.log_file):
            if p.is_symlink():
                target = self._real(p)
                p.unlink()
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.exists():
                    target.unlink()
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        fb = self.fallback_dir
        if fb.is_dir():
            shutil.rmtree(fb, ignore_errors=True)

    def status(self) -> dict:
        pid = self._pid()
        version = None
        try:
            version = (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            pass
        return {
            "home": str(self.home),
            "data_dir": str(self._real(self.data_dir)),
            "socket_dir": str(self._real(self.socket_dir)),
            "log_file": str(self._real(self.log_file)),
            "port": self.port,
            "initialized": version is not None,
            "version": version,
            "running": pid is not None,
            "pid": pid,
            "server_os_user": self.pg_user or pwd.getpwuid(os.getuid()).pw_name,
            "dsn": self.dsn(),
        }

    def server_readable_dir(self, name: str) -> Path:
        """A directory beside the cluster's data that the server's OS user can read (e.g. for .npz readers)."""
        d = self._real(self.socket_dir).parent / name
        d.mkdir(mode=0o755, parents=True, exist_ok=True)
        d.chmod(0o755)
        return d

    # -- connecting -------------------------------------------------------------

    def dsn(self, dbname: str = "shift") -> str:
        """libpq conninfo for the unix socket, as the bootstrap superuser (peer authentication)."""
        parts = {"host": str(self._real(self.socket_dir)), "port": str(self.port),
                 "user": DB_SUPERUSER, "dbname": dbname}
        return " ".join(f"{k}={_conninfo_quote(v)}" for k, v in parts.items())

    def worker_dsn(self, dbname: str = "shift") -> str:
        """libpq conninfo for the unix socket as the workers' role, which is not a superuser."""
        return self.dsn(dbname).replace(f"user={DB_SUPERUSER}", f"user={WORKER_ROLE}")

    def psql_command(self, dbname: str = "shift") -> list[str]:
        psql = self.bindir / "psql"
        exe = str(psql) if os.access(psql, os.X_OK) else (shutil.which("psql") or "psql")
        return [exe, "-h", str(self._real(self.socket_dir)), "-p", str(self.port),
                "-U", DB_SUPERUSER, "-d", dbname]

    def connect(self, dbname: str = "shift", **kwargs):
        import psycopg
        return psycopg.connect(self.dsn(dbname), **kwargs)

    def ensure_database(self, dbname: str = "shift", extensions: Iterable[str] = ("shift",)) -> bool:
        """Create ``dbname`` if missing and the extensions in it; True when the database was created."""
        import psycopg
        from psycopg import sql

        if not self.is_running():
            raise ClusterError("the cluster is not running; start it first (shift start)")
        created = False
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                    created = True
                except psycopg.errors.DuplicateDatabase:
                    pass
        extensions = list(extensions)
        if extensions:
            with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
                for ext in extensions:
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} CASCADE").format(sql.Identifier(ext)))
                if "shift" in extensions:
                    allow_worker_login(conn)
        return created

    def __repr__(self) -> str:
        return f"Cluster(home={str(self.home)!r}, port={self.port})"


def allow_worker_login(conn) -> None:
    """Let the extension's shift_worker role log in (peer authentication only, see _write_auth)."""
    conn.execute(f"ALTER ROLE {WORKER_ROLE} LOGIN")
