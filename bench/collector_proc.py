"""``ledger-collector run`` as a child process: start, wait for a condition, account CPU, stop."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import psutil  # type: ignore[import-untyped]

from demo.processes import terminate

from .ledger import LedgerFiles, collector_cli

__all__ = ["CollectorProcess", "TreeCpu", "cpu_seconds", "thread_cpu_seconds"]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of a process, and of all its living descendants (workers)."""
    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        t = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    total = 0.0
    for p in children:
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            continue
    return t.user + t.system, total


class TreeCpu:
    """CPU of a process and of each descendant, sampled in the background until ``stop``.

    For processes whose workers exit before the parent does (the audit): the last sample of
    each process is kept, so at most one sampling interval of a worker's CPU goes uncounted.
    """

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid = pid
        self._every = every
        self._last: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    t = p.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                self._last[p.pid] = t.user + t.system

    def stop(self) -> tuple[float, float]:
        """(main process, all descendants) CPU seconds, as last sampled."""
        self._done.set()
        self._thread.join()
        main = self._last.get(self.pid, 0.0)
        return main, sum(v for k, v in self._last.items() if k != self.pid)


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread of one process: ``main`` and the others by thread id, busiest
    first (Python 3.11 does not name OS threads, so ids are all there is)."""
    try:
        threads = psutil.Process(pid).threads()
    except psutil.NoSuchProcess:
        return {}
    out = {("main" if t.id == pid else str(t.id)): round(t.user_time + t.system_time, 2)
           for t in threads}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


class CollectorProcess:
    # What every benchmark passes besides paths, broker and client id: the defaults otherwise.
    ARGS = ("run", "--log-format", "json")

    def __init__(self, files: LedgerFiles, broker_url: str, client_id: str, log_path: Path,
                 extra_args: Sequence[str] = ()) -> None:
        self.argv = [*collector_cli(), *self.ARGS, "--db", str(files.db), "--key", str(files.key),
                     "--broker", broker_url, "--client-id", client_id, *extra_args]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # wall clock (time.time) at launch

    def start(self) -> CollectorProcess:
        self._log = self.log_path.open("wb")
        self.started_at = time.time()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_until(self, done: Callable[[], bool], *, timeout: float, poll: float = 0.05) -> None:
        """Poll ``done`` until it holds; fail early if the collector exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not done():
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}; "
                                   f"log: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"collector did not finish in {timeout} s; "
                                   f"log: {self.log_tail()}")
            time.sleep(poll)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the collector drains, commits and seals), wait, return the exit code."""
        if self.proc is None:
            return 0
        code = terminate(self.proc, timeout)
        self._log.close()
        self.proc = None
        return code

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
