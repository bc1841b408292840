"""A device's complete history, provable offline: one file, checked without the ledger.

A history file holds every envelope of one device in a seq range, in seq order, the device key,
one signed checkpoint of the log, and each envelope's leaf index and inclusion path under it::

    history-file = {
        1 => 1,                               ; history format version
        2 => bstr,                            ; device public key, DER SubjectPublicKeyInfo
        3 => bstr,                            ; the signed checkpoint note, verbatim
        4 => uint,                            ; first seq of the range asked for
        5 => uint,                            ; last seq of the range asked for
        6 => [* [uint, bstr, [* bstr .size 32]]],   ; (leaf index, envelope, audit path)
    }

:func:`verify_history` checks every signature, that the seqs run without a hole from the
first to the last except for ranges a signed gap record in the file covers, that each
reading's ``prev`` is the hash of the one before (a break only where the boot counter
changes), that every reading is in the log under the checkpoint, and says in plain words what
the file shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import cbor
from .checkpoint import SignedCheckpoint
from .envelope import Envelope
from .errors import MalformedError
from .keys import PublicKey
from .logproof import check_checkpoint, describe_signers
from .merkle import RFC9162_SHA256, verify_inclusion
from .prooffile import Check, run_check
from .reading import Reading
from .trust import TrustPolicy

__all__ = ["HISTORY_FORMAT_VERSION", "HistoryFile", "HistoryReport", "verify_history"]

HISTORY_FORMAT_VERSION = 1
_KEYS = frozenset({1, 2, 3, 4, 5, 6})


@dataclass(frozen=True, slots=True)
class HistoryFile:
    device_public_key: bytes
    checkpoint: bytes
    first_seq: int
    last_seq: int
    entries: tuple[tuple[int, bytes, tuple[bytes, ...]], ...] = field(repr=False)

    def encode(self) -> bytes:
        return cbor.encode({
            1: HISTORY_FORMAT_VERSION, 2: self.device_public_key, 3: self.checkpoint,
            4: self.first_seq, 5: self.last_seq,
            6: [[index, envelope, list(path)] for index, envelope, path in self.entries],
        })

    @classmethod
    def decode(cls, data: bytes) -> HistoryFile:
        body: Any = cbor.decode(data, what="history file")
        if not isinstance(body, dict) or set(body) != _KEYS or body[1] != HISTORY_FORMAT_VERSION:
            raise MalformedError("a history file is a CBOR map with keys 1..6, format 1")
        entries = []
        for item in body[6]:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], int)
                    and isinstance(item[1], bytes) and isinstance(item[2], list)
                    and all(isinstance(h, bytes) and len(h) == 32 for h in item[2])):
                raise MalformedError("a history entry is [leaf index, envelope, audit path]")
            entries.append((item[0], item[1], tuple(item[2])))
        for key, kind in ((2, bytes), (3, bytes), (4, int), (5, int)):
            if not isinstance(body[key], kind):
                raise MalformedError(f"history file key {key} has the wrong type")
        return cls(body[2], body[3], body[4], body[5], tuple(entries))


@dataclass(slots=True)
class HistoryReport:
    checks: list[Check] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def render(self) -> str:
        lines = [f"[{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        if self.ok:
            lines.append(self.summary)
        lines.append("history VERIFIED" if self.ok else "history FAILED")
        return "\n".join(lines)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


def verify_history(data: bytes, policy: TrustPolicy) -> HistoryReport:
    """Check a history file offline; never raises for bad input."""
    report = HistoryReport()
    state: dict[str, Any] = {}

    def check(name: str, fn: Callable[[], str]) -> bool:
        return run_check(report.checks, name, fn)

    def parse() -> str:
        hf = state["file"] = HistoryFile.decode(data)
        return (f"{len(data):,} bytes, {len(hf.entries):,} readings, seqs "
                f"{hf.first_seq}..{hf.last_seq}")

    if not check("history file format", parse):
        return report
    hf: HistoryFile = state["file"]

    def checkpoint() -> str:
        signed = state["cp"] = check_checkpoint(hf.checkpoint, policy)
        return (f"log {signed.checkpoint.origin} tree size {signed.checkpoint.size}, "
                + describe_signers(signed, policy))

    def signatures() -> str:
        key = PublicKey.from_der(hf.device_public_key)
        readings: list[Reading] = []
        for n, (_, raw, _) in enumerate(hf.entries):
            envelope = Envelope.decode(raw)
            if envelope.kid != key.kid:
                raise MalformedError(f"entry {n} is signed by key {envelope.kid.hex()[:16]}…, "
                                     f"not the device key {key.kid_hex[:16]}…")
            envelope.verify(key)
            reading = envelope.reading()
            if readings and reading.device_id != readings[0].device_id:
                raise MalformedError(f"entry {n} is a reading of device {reading.device_id}, "
                                     f"the history is of {readings[0].device_id}")
            readings.append(reading)
        state["readings"] = readings
        return f"{len(readings):,} ES256 signatures valid under key {key.kid_hex[:16]}…"

    def complete() -> str:
        readings: list[Reading] = state["readings"]
        gaps, dropped, boots, restarts = 0, 0, 0, 0
        expect = hf.first_seq
        prev: tuple[Reading, bytes] | None = None
        covered: list[tuple[int, int]] = [(r.gap.first, r.gap.last) for r in readings if r.gap]
        for n, ((_, raw, _), r) in enumerate(zip(hf.entries, readings, strict=True)):
            if r.seq < expect:
                raise MalformedError(f"entry {n} (seq {r.seq}) is out of seq order: seq "
                                     f"{expect} or later expected")
            if r.seq > expect:
                hole = (expect, r.seq - 1)
                if not any(a <= hole[0] and hole[1] <= b for a, b in covered):
                    raise MalformedError(f"seqs {hole[0]}..{hole[1]} are missing and no signed "
                                         "gap record in the file covers them")
            if prev is not None:
                before, digest = prev
                if r.boot != before.boot:
                    boots += 1
                if r.seq == before.seq + 1 and r.prev != digest:
                    if r.boot == before.boot:
                        raise MalformedError(f"seq {r.seq}: prev is not the hash of seq "
                                             f"{before.seq} and the device did not reboot")
                    restarts += 1
            if r.gap is not None:
                gaps += 1
                dropped += r.gap.last - r.gap.first + 1
            prev = (r, hashlib.sha256(raw).digest())
            expect = r.seq + 1
        if expect != hf.last_seq + 1:
            raise MalformedError(f"the history ends at seq {expect - 1}, the range asked for "
                                 f"ends at {hf.last_seq}")
        device = readings[0].device_id if readings else "?"
        span = (f" {_day(min(r.time_ms for r in readings))}.."
                f"{_day(max(r.time_ms for r in readings))}" if readings else "")
        state["summary"] = (f"device {device}: {len(readings):,} readings{span}, complete"
                            + (f" except {gaps} signed gap(s) ({dropped:,} readings dropped by "
                               "the device)" if gaps else "")
                            + f", {boots} boot(s)"
                            + (f" ({restarts} hash chain restart(s) at a boot)"
                               if restarts else ""))
        return (f"seqs {hf.first_seq}..{hf.last_seq} all present or in a signed gap; "
                "hash chain unbroken except at boots")

    def inclusion() -> str:
        signed: SignedCheckpoint = state["cp"]
        cp = signed.checkpoint
        seen: set[int] = set()
        for index, raw, path in hf.entries:
            if index in seen:
                raise MalformedError(f"leaf {index} appears twice")
            seen.add(index)
            verify_inclusion(index, cp.size, RFC9162_SHA256.hash_leaf(raw), list(path), cp.root)
        return f"{len(hf.entries):,} readings in the log under the checkpoint's root"

    have_cp = check("checkpoint signature", checkpoint)
    if check("device signatures", signatures):
        check("complete sequence", complete)
    if have_cp:
        check("inclusion in log", inclusion)
    report.summary = state.get("summary", "")
    return report
