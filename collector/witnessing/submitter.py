"""Submit the log's checkpoints to its witnesses, in the background, and keep the cosignatures.

One asyncio task per witness, on the collector's event loop but never in the ingest path: it
reads checkpoints and tree nodes through its own connection to the ledger, and its HTTP
requests run in its own thread pool. A witness that is slow or down only delays its own
cosignatures.

Each task remembers the size the witness last cosigned for us (the largest in the
``cosignatures`` table, else 0) and, whenever a newer checkpoint is sealed, sends
``add-checkpoint`` from that size with the consistency proof to the newest checkpoint. On 200 it
checks the cosignature against the witness's key and stores it; on 409 it takes the size the
witness names and resends from there at once; on a refused connection or a 5xx it waits, with
exponential backoff up to ``backoff_max``, and then catches the witness up in one request from
its size to the newest checkpoint. A 403/404/422 means the witness does not accept this log as
it is (wrong key configured, log unknown to it, or a history it cannot reconcile): it is logged
loudly and retried at the slowest pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from collector.config import WitnessEndpoint, WitnessingConfig
from collector.ledger.opening import Ledger, open_store
from collector.ledger.records import CheckpointRecord
from collector.logs import event
from collector.witnessing.client import WitnessClient, WitnessReply
from provenance.cosignature import CosignatureVerifier, parse_any_verifier_key, signature_time
from provenance.errors import ProvenanceError
from provenance.merkle import consistency_nodes
from provenance.note import parse_note
from provenance.witnessproto import SIZE_CONTENT_TYPE, AddCheckpoint, parse_size_body

__all__ = ["WitnessProgress", "Witnessing"]

log = logging.getLogger("collector.witnessing")

_FIRST_BACKOFF = 0.25
_MAX_409_IN_A_ROW = 5


@dataclass(slots=True)
class WitnessProgress:
    """What the collector knows of one witness (for status and metrics)."""

    endpoint: WitnessEndpoint
    verifier: CosignatureVerifier
    size: int | None = None  # the witness's latest cosigned size for our log, when known
    cosigned: int = 0
    failures: int = 0
    last_error: str = ""
    last_ok_s: float = field(default=0.0)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        """The witness's name, as its verifier key and cosignatures give it."""
        return self.verifier.name


class Witnessing:
    """The background submitter for every configured witness."""

    def __init__(self, config: WitnessingConfig, database: str) -> None:
        self.config = config
        self.database = database
        self.poll = config.poll
        self.progress = [WitnessProgress(w, _verifier(w.vkey)) for w in config.witnesses]
        self._tasks: list[asyncio.Task[None]] = []
        self._store: Ledger | None = None
        # The tasks share one connection: one statement or transaction at a time (a read left
        # open by one task would turn another's write into SQLITE_BUSY at once).
        self._db = asyncio.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(config.witnesses)),
                                        thread_name_prefix="witness")

    def sealed(self) -> None:
        """A checkpoint was committed: wake every witness task."""
        for p in self.progress:
            p.wake.set()

    async def start(self) -> None:
        if not self.progress:
            return
        self._store = await open_store(self.database)
        for p in self.progress:
            async with self._db:
                p.size = await self._store.witness_size(p.endpoint.vkey)
            self._tasks.append(asyncio.get_running_loop().create_task(self._run(p)))

    async def drain(self, timeout: float) -> None:
        """On the way out: give the witnesses up to ``timeout`` seconds to cosign the last
        checkpoint sealed (a witness that is down is not waited for beyond that)."""
        if self._store is None or not self.progress:
            return
        self.sealed()
        async with self._db:
            latest = await self._store.checkpoint()
        if latest is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any((p.size or 0) < latest.size and
                                                  not p.failures for p in self.progress):
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            await self._store.close()

    @staticmethod
    async def _wait(p: WitnessProgress, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(p.wake.wait(), timeout=seconds)

    async def _run(self, p: WitnessProgress) -> None:
        client = WitnessClient(p.endpoint.url, self.config.timeout)
        backoff = _FIRST_BACKOFF
        conflicts = 0
        try:
            while True:
                # Clear before reading, so a seal during this round wakes the next one.
                p.wake.clear()
                try:
                    outcome = await self._round(p, client)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug or a ledger error: report, keep witnessing
                    self._failed(p, f"{type(exc).__name__}: {exc}")
                    outcome = "retry"
                if outcome == "idle":
                    backoff, conflicts = _FIRST_BACKOFF, 0
                    await self._wait(p, self.poll)
                elif outcome == "again":
                    conflicts += 1
                    if conflicts > _MAX_409_IN_A_ROW:
                        await self._wait(p, backoff)
                        backoff = min(backoff * 2, self.config.backoff_max)
                else:  # "retry": unreachable or refused
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max)
        finally:
            client.close()

    async def _round(self, p: WitnessProgress, client: WitnessClient) -> str:
        assert self._store is not None
        async with self._db:
            latest = await self._store.checkpoint()
        if latest is None:
            return "idle"
        old = p.size or 0
        if old == latest.size and await self._has_cosignature(p, latest.size):
            return "idle"
        if old > latest.size:
            self._failed(p, f"the witness has cosigned size {old}, beyond our newest checkpoint "
                            f"{latest.size}: was this ledger restored from an old backup?")
            return "retry"
        proof: list[bytes] = []
        if 0 < old < latest.size:
            async with self._db:
                proof = await self._store.subtree_hashes(consistency_nodes(old, latest.size))
        body = AddCheckpoint(old, tuple(proof), latest.note).to_bytes()
        started = time.monotonic()
        try:
            reply = await asyncio.get_running_loop().run_in_executor(
                self._pool, client.add_checkpoint, body)
        except (OSError, http.client.HTTPException) as exc:
            self._failed(p, f"unreachable: {exc}", quiet=p.failures > 0)
            return "retry"
        return await self._handle(p, latest, old, reply, time.monotonic() - started)

    async def _handle(self, p: WitnessProgress, latest: CheckpointRecord, old: int,
                      reply: WitnessReply, seconds: float) -> str:
        assert self._store is not None
        if reply.status == 200:
            try:
                line, when = self._check_cosignature(p, latest, reply.body)
            except ProvenanceError as exc:
                self._failed(p, f"returned a cosignature that does not verify: "
                                f"{exc.diagnostics()}")
                return "retry"
            async with self._db:
                await self._store.add_cosignature(latest.size, p.endpoint.vkey, line, when)
            p.size, p.cosigned, p.failures, p.last_error = latest.size, p.cosigned + 1, 0, ""
            p.last_ok_s = time.time()
            event(log, "checkpoint_cosigned", witness=p.verifier.name, size=latest.size,
                  old=old, ms=round(seconds * 1000, 1))
            return "idle"
        if reply.status == 409 and reply.content_type.startswith(SIZE_CONTENT_TYPE):
            try:
                size = parse_size_body(reply.body)
            except ProvenanceError as exc:
                self._failed(p, f"409 with a bad size body: {exc.diagnostics()}")
                return "retry"
            event(log, "witness_size", witness=p.verifier.name, size=size, we_sent=old)
            p.size = size
            return "again"
        detail = reply.body[:300].decode("utf-8", "replace").strip()
        quiet = reply.status >= 500 and p.failures > 0
        self._failed(p, f"HTTP {reply.status}: {detail}", quiet=quiet)
        return "retry"

    async def _has_cosignature(self, p: WitnessProgress, size: int) -> bool:
        assert self._store is not None
        async with self._db:
            rows = await self._store.cosignatures(size)
        return any(w == p.endpoint.vkey for w, _ in rows)

    def _check_cosignature(self, p: WitnessProgress, latest: CheckpointRecord,
                           body: bytes) -> tuple[str, int]:
        """The witness's own cosignature line in a 200 body, verified on our checkpoint."""
        text = parse_note(latest.note).text
        lines = body.decode("utf-8").rstrip("\n").split("\n")
        note = parse_note(text.encode() + b"\n" + "\n".join(lines).encode() + b"\n")
        v = p.verifier
        for sig in note.signatures:
            if (sig.name, sig.key_id) == (v.name, v.key_id):
                if not v.verify(text.encode(), sig.signature):
                    raise ProvenanceError("the cosignature does not verify under the "
                                          "witness's key")
                return sig.line(), signature_time(sig) or 0
        raise ProvenanceError(f"no cosignature by {v.name}+{v.key_id:08x} in the reply")

    def _failed(self, p: WitnessProgress, message: str, *, quiet: bool = False) -> None:
        p.failures += 1
        p.last_error = message
        if not quiet:
            event(log, "witness_failed", level=logging.WARNING, witness=p.verifier.name,
                  url=p.endpoint.url, failures=p.failures, detail=message)


def _verifier(vkey: str) -> CosignatureVerifier:
    v = parse_any_verifier_key(vkey)
    assert isinstance(v, CosignatureVerifier)  # checked when the config was read
    return v
