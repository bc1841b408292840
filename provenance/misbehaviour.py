"""Proofs of log misbehaviour: two checkpoints a log signed that cannot both be true.

A log promises never to sign two checkpoints that do not extend one another (c2sp.org/
tlog-checkpoint). A witness or a mirror that is shown two such checkpoints keeps them as a
self-contained proof anyone can check offline, with the log's public key alone:

``split-view``
    the same origin and tree size, different roots;
``inconsistent``
    a checkpoint of size m with root A, a checkpoint of size n > m with root B, and an RFC 9162
    consistency proof that rebuilds B and, from the same nodes, a root ``prefix`` != A for the
    first m leaves of B's tree. Short of a SHA-256 collision the nodes are B's, so B's tree
    does not begin with A's.

The file is a C2SP signed note, signed by whoever reports it (a witness, a mirror) with an
Ed25519 note key; the checkpoints travel verbatim, base64-encoded one a line, so the log's own
signatures are checked, not the reporter's word::

    sensorledger/misbehaviour@v1
    kind split-view | inconsistent
    origin <log origin>
    log <log vkey>                       (one or more: a key that signed both checkpoints)
    reporter <reporter's vkey>
    time <unix seconds the reporter saw it>
    checkpoint <base64 signed note>      (the one held first)
    checkpoint <base64 signed note>      (the one that contradicts it)
    prefix <base64 root>                 (inconsistent: the rebuilt root of the first m leaves)
    consistency <base64 hash>            (inconsistent: zero or more, the proof m -> n)

    — <reporter name> <signature>

:func:`verify_misbehaviour` never raises for bad input; it returns a report of every check.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint
from .errors import MalformedError, ProvenanceError
from .merkle import old_root_from_consistency, verify_consistency
from .note import NoteSigner, NoteVerifier, open_note, parse_verifier_key, sign_note
from .prooffile import Check, run_check

__all__ = ["HEADER", "KINDS", "Misbehaviour", "MisbehaviourReport", "detect",
           "sign_misbehaviour", "verify_misbehaviour"]

HEADER = "sensorledger/misbehaviour@v1"
KINDS = ("split-view", "inconsistent")


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """Two contradicting checkpoints of one log (signed notes, verbatim) and what shows it."""

    kind: str
    origin: str
    log_keys: tuple[str, ...]
    first: bytes
    second: bytes
    prefix: bytes | None = None
    consistency: tuple[bytes, ...] = ()
    time: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MalformedError(f"misbehaviour kind must be one of {', '.join(KINDS)}")
        if (self.kind == "inconsistent") != (self.prefix is not None):
            raise MalformedError("an inconsistent-log proof, and only one, carries a prefix root")

    def text(self, reporter: NoteVerifier) -> str:
        lines = [HEADER, f"kind {self.kind}", f"origin {self.origin}",
                 *(f"log {k}" for k in self.log_keys), f"reporter {reporter.vkey}",
                 f"time {self.time}", f"checkpoint {_b64(self.first)}",
                 f"checkpoint {_b64(self.second)}"]
        if self.prefix is not None:
            lines.append(f"prefix {_b64(self.prefix)}")
        lines += [f"consistency {_b64(h)}" for h in self.consistency]
        return "".join(line + "\n" for line in lines)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise MalformedError(f"{what} is not base64") from None
    return raw


def sign_misbehaviour(proof: Misbehaviour, reporter: NoteSigner) -> bytes:
    """The proof as a signed note of ``reporter``."""
    return sign_note(proof.text(reporter.verifier), [reporter])


def detect(held: SignedCheckpoint, offered: SignedCheckpoint, proof: Sequence[bytes],
           log_keys: Sequence[NoteVerifier], now: int) -> Misbehaviour | None:
    """A proof of misbehaviour when ``offered`` contradicts ``held`` (both already verified
    under ``log_keys``), else None. ``proof`` is the consistency proof that came with
    ``offered``, from ``held``'s size."""
    a, b = held.checkpoint, offered.checkpoint
    if a.origin != b.origin:
        return None
    keys = tuple(k.vkey for k in log_keys if _signed_by(held, k) and _signed_by(offered, k))
    if not keys:
        return None
    if a.size == b.size and a.root != b.root:
        return Misbehaviour("split-view", a.origin, keys, held.data, offered.data, time=now)
    if 0 < a.size < b.size:
        try:
            prefix = old_root_from_consistency(a.size, b.size, b.root, proof)
        except ProvenanceError:
            return None
        if prefix is not None and prefix != a.root:
            return Misbehaviour("inconsistent", a.origin, keys, held.data, offered.data,
                                prefix, tuple(proof), now)
    return None


def _signed_by(signed: SignedCheckpoint, key: NoteVerifier) -> bool:
    return any((s.name, s.key_id) == (key.name, key.key_id) for s in signed.note.verified)


@dataclass(slots=True)
class MisbehaviourReport:
    checks: list[Check] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def render(self) -> str:
        lines = [f"[{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        if self.ok:
            lines.append(self.summary)
        lines.append("misbehaviour PROVEN" if self.ok else "misbehaviour NOT proven")
        return "\n".join(lines)


def _parse(text: str) -> tuple[Misbehaviour, NoteVerifier]:
    lines = text[:-1].split("\n")
    if not lines or lines[0] != HEADER:
        raise MalformedError(f"first line must be {HEADER!r}")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        word, sep, rest = line.partition(" ")
        if not sep or word not in ("kind", "origin", "log", "reporter", "time", "checkpoint",
                                   "prefix", "consistency"):
            raise MalformedError(f"unexpected line {line[:60]!r}")
        fields.setdefault(word, []).append(rest)
    for one in ("kind", "origin", "reporter", "time"):
        if len(fields.get(one, [])) != 1:
            raise MalformedError(f"exactly one {one!r} line expected")
    if len(fields.get("checkpoint", [])) != 2 or not fields.get("log"):
        raise MalformedError("two 'checkpoint' lines and at least one 'log' line expected")
    if len(fields.get("prefix", [])) > 1 or not fields["time"][0].isdigit():
        raise MalformedError("at most one 'prefix' line; time is decimal seconds")
    prefix = fields.get("prefix")
    proof = Misbehaviour(
        fields["kind"][0], fields["origin"][0], tuple(fields["log"]),
        _unb64(fields["checkpoint"][0], "first checkpoint"),
        _unb64(fields["checkpoint"][1], "second checkpoint"),
        _unb64(prefix[0], "prefix root") if prefix else None,
        tuple(_unb64(h, "consistency hash") for h in fields.get("consistency", [])),
        int(fields["time"][0]))
    return proof, parse_verifier_key(fields["reporter"][0])


def verify_misbehaviour(data: bytes, trusted_log_keys: Sequence[NoteVerifier] = ()
                        ) -> MisbehaviourReport:
    """Check a proof of misbehaviour offline. With ``trusted_log_keys``, the log key in the
    file must be one of them (else the file only shows that *some* key signed both)."""
    report = MisbehaviourReport()
    state: dict[str, Any] = {}

    def check(name: str, fn: Callable[[], str]) -> bool:
        return run_check(report.checks, name, fn)

    def reporter() -> str:
        from .note import parse_note

        text = parse_note(data).text
        proof, key = _parse(text)
        open_note(data, [key])
        state["proof"] = proof
        return f"signed note of reporter {key.name}+{key.key_id:08x}: {proof.kind}"

    def log_signatures() -> str:
        proof: Misbehaviour = state["proof"]
        keys = [parse_verifier_key(k) for k in proof.log_keys]
        if trusted_log_keys:
            trusted = {v.vkey for v in trusted_log_keys}
            keys = [k for k in keys if k.vkey in trusted]
            if not keys:
                raise MalformedError("no log key in the file is one of the trusted log keys")
        checked = []
        for note in (proof.first, proof.second):
            signed = open_checkpoint(note, keys, origin=proof.origin)
            if not all(_signed_by(signed, k) for k in keys):
                raise MalformedError("a log key in the file did not sign both checkpoints")
            checked.append(signed)
        state["a"], state["b"] = (s.checkpoint for s in checked)
        names = ", ".join(f"{k.name}+{k.key_id:08x}" for k in keys)
        return f"both checkpoints of log {proof.origin} are signed by {names}"

    def contradiction() -> str:
        proof: Misbehaviour = state["proof"]
        a: Checkpoint = state["a"]
        b: Checkpoint = state["b"]
        if proof.kind == "split-view":
            if a.size != b.size or a.root == b.root:
                raise MalformedError("a split view is two checkpoints of one size with "
                                     "different roots")
            state["summary"] = (f"log {a.origin} signed two different trees of size {a.size}: "
                                f"roots {a.root.hex()[:16]}… and {b.root.hex()[:16]}…")
            return f"size {a.size}, roots differ"
        assert proof.prefix is not None
        if not 0 < a.size < b.size:
            raise MalformedError("an inconsistent-log proof needs sizes 0 < m < n")
        if proof.prefix == a.root:
            raise MalformedError("the prefix root equals the first checkpoint's root")
        verify_consistency(a.size, b.size, proof.prefix, b.root, proof.consistency)
        state["summary"] = (f"log {a.origin} signed size {a.size} with root "
                            f"{a.root.hex()[:16]}…, then size {b.size} whose first {a.size} "
                            f"leaves have root {proof.prefix.hex()[:16]}…: it rewrote history")
        return (f"the consistency proof {a.size} -> {b.size} rebuilds the second root from a "
                "different first-tree root")

    if check("reporter signature", reporter) and check("log signatures", log_signatures):
        check("contradiction", contradiction)
    report.summary = state.get("summary", "")
    return report
