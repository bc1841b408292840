"""A pool of verification processes: ES256 verification is CPU-bound and holds the GIL, so
using every core means using processes.

Work items are pure functions of their arguments (batch + registry snapshot), so any process
can take any batch, and the pipeline keeps arrival order by awaiting results in submission
order. With one worker, work runs inside the calling process (no pickling, no extra process);
that is the faster choice on a single core.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from collector.admission.registry import RegistryFile, RegistrySnapshot, RegistrySource

__all__ = ["RegistryShare", "WorkerPool"]

P = ParamSpec("P")
T = TypeVar("T")


def _ready() -> bool:
    return True


def _exit_with_parent() -> None:
    """Worker initializer: exit as soon as the collector process is gone.

    A SIGKILLed collector cannot shut its pool down, and an idle worker blocks forever on a
    queue whose write end it holds itself; the parent's sentinel becomes readable exactly when
    the parent dies, whatever killed it.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    # Ctrl-C reaches the whole process group; the parent decides how to stop and shuts the
    # pool down, so a worker must not die of it mid-task (nor print a KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class WorkerPool:
    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def in_process(self) -> bool:
        return self.workers == 1

    async def start(self) -> None:
        """Start the processes now (spawn: no fork of a threaded parent) and wait until ready."""
        await asyncio.gather(*self.launch())

    def launch(self) -> list[asyncio.Future[bool]]:
        """Start spawning the processes and return at once; the futures complete as they are
        ready. Work submitted meanwhile waits for them, so a caller can do its own work (read,
        check) while the workers import."""
        if self.in_process or self._pool is not None:
            return []
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
        )
        loop = asyncio.get_running_loop()
        # The processes are spawned by these submits. Spawned while SIGINT is ignored, they
        # start with it ignored (an ignored signal stays ignored across exec, and Python keeps
        # it so): a Ctrl-C while a worker is still importing cannot kill it with a traceback.
        with _sigint_ignored():
            return [loop.run_in_executor(self._pool, _ready) for _ in range(self.workers * 2)]

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a worker; the result arrives through the returned future."""
        loop = asyncio.get_running_loop()
        if self._pool is None:
            future: asyncio.Future[T] = loop.create_future()
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:  # delivered to the awaiting caller
                future.set_exception(exc)
            return future
        return loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)


class RegistryShare:
    """Hands the registry to the pool's processes without sending it with every batch.

    Each registry version is written once to a private folder and work items carry only its
    version and path; a worker reads the file when it meets a version it has not built yet. In
    process (one worker) the snapshot itself is passed, as nothing needs pickling.
    """

    def __init__(self, pool: WorkerPool, folder: Path | None = None) -> None:
        """``folder`` (emptied first) instead of a fresh temporary one: a collector killed
        with SIGKILL cannot clean up, so it reuses a folder beside its database."""
        self._in_process = pool.in_process
        self._wanted = folder
        self._folder: Path | None = None

    def publish(self, snapshot: RegistrySnapshot) -> RegistrySource:
        if self._in_process:
            return snapshot
        if self._folder is None:
            if self._wanted is None:
                self._folder = Path(tempfile.mkdtemp(prefix="sensorledger-registry-"))
            else:
                shutil.rmtree(self._wanted, ignore_errors=True)
                self._wanted.mkdir(mode=0o700, parents=True)
                self._folder = self._wanted
        path = self._folder / f"registry-{snapshot.version}.cbor"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(snapshot.blob)
        tmp.replace(path)  # a worker never reads a half-written file
        return RegistryFile(snapshot.version, str(path))

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
