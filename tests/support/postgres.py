"""The tests' private PostgreSQL: ``initdb`` and ``pg_ctl`` in a temporary folder.

No test uses the machine's PostgreSQL service (port 5432): each server here has its own data
folder, a free TCP port on 127.0.0.1 and its unix socket in its own folder, so the tests run on
a bare machine and can stop, restart and kill their database to inject faults. PostgreSQL
refuses to run as root; under root the server runs as the ``postgres`` system user (created by
the Debian package), which owns the temporary folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.broker import free_port

__all__ = ["PostgresServer", "pg_binary"]


def pg_binary(name: str) -> str:
    """``initdb``/``pg_ctl``/``postgres`` from PATH or Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"PostgreSQL's {name} is not installed: run `make test` (it installs the "
                       "postgresql package) or `apt-get install postgresql`")


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PostgresServer:
    """One throwaway PostgreSQL cluster; databases are made per test with :meth:`create_db`."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sl-pg-")))
    port: int = field(default_factory=free_port)
    _made: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL over TCP to ``dbname`` (user ``postgres``, trust authentication)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={self.port}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_as_server_user(), *args], capture_output=True, text=True,
                              check=check, timeout=120)

    def init(self) -> PostgresServer:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            os.chmod(self.root, 0o755)
        self._run(pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
                # A test server: a crash of the machine loses it anyway.
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                "log_min_messages = warning\n"
            )
        return self

    def start(self) -> PostgresServer:
        self._run(pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(pg_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
                  check=False)

    def kill(self) -> None:
        """SIGKILL the postmaster (and so the server): a crash, recovered at the next start."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [pg_binary("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement,
             self.socket_url(dbname)], capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(f"psql: {out.stderr.strip()}")
        return out.stdout.strip()

    def create_db(self) -> str:
        """A new, empty database; returns its URL."""
        self._made += 1
        name = f"ledger_{os.getpid()}_{self._made}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
