"""A real, throwaway PostgreSQL server for tests: initdb + pg_ctl on a free port in a temp folder.

`PostgresServer.find_bin()` is None when no PostgreSQL binaries are installed (tests skip).
initdb refuses to run as root, so under root the server runs as the `postgres` user (or
`nobody`), in a folder of its own under /tmp that this user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`with PostgresServer() as pg: pg.create_database("x") -> URL`."""

    USER = "autotune"

    def __init__(self) -> None:
        bindir = self.find_bin()
        if bindir is None:
            raise RuntimeError(self.missing_reason())
        self.bindir = bindir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.run_as: str | None = None
        if os.geteuid() == 0:
            self.run_as = _unprivileged_user()
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.started = False

    @staticmethod
    def find_bin() -> Path | None:
        """The folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
        on_path = shutil.which("initdb")
        if on_path and shutil.which("pg_ctl"):
            return Path(os.path.realpath(on_path)).parent
        for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
            if os.access(f"{folder}/initdb", os.X_OK) and os.access(f"{folder}/pg_ctl", os.X_OK):
                return Path(folder)
        return None

    @staticmethod
    def missing_reason() -> str:
        return ("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
                "install Debian's `postgresql` package (scripts/setup.sh does, as root)")

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr}{proc.stdout}\n{log}")
        return proc

    def start(self) -> "PostgresServer":
        self._run("initdb", "-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        # Durability off: a test server is thrown away. Sockets only in our folder, TCP on localhost.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (via psycopg2) and return its URL (`postgresql://`, no driver)."""
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.USER, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")
