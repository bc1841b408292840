"""The cluster demo's private PostgreSQL (also what the benchmarks run against).

``initdb`` and ``pg_ctl`` in a folder of the run, on a free port, with its unix socket in that
folder: no system service is used or needed. PostgreSQL refuses to run as root; under root the
server runs as the ``postgres`` system user (made by the Debian package), which owns the folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .broker import free_port

__all__ = ["LocalPostgres", "pg_binary"]


def pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"PostgreSQL's {name} is not installed: `make demo-cluster` installs it "
                       "(deploy/ensure-postgresql.sh), or `apt-get install postgresql`")


@dataclass
class LocalPostgres:
    """A server in a temporary folder (every folder above it must let the server's user
    through, which /tmp does), removed by :meth:`stop`."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sensorledger-pg-")))
    port: int = field(default_factory=free_port)
    conf: str = ""  # extra postgresql.conf lines

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> LocalPostgres:
        sock = self.root / "sock"
        sock.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.root, sock):
                shutil.chown(path, "postgres", "postgres")
            os.chmod(self.root, 0o755)
        self._run(pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{sock}'\nmax_connections = 100\n{self.conf}\n")
        self._run(pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")
        return self

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*prefix, pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
