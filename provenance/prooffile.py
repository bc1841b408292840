"""Proof files: self-contained evidence that one reading was sealed into the ledger.

A proof file carries the envelope exactly as the device signed it, the device public key, the
reading's leaf index and audit path, and the collector-signed block header. ``verify_proof``
needs only the file and the collector's public key: no database, no network. It returns a
report that lists every check and its outcome, never a bare yes or no.

What it proves: the collector holding the trusted key committed, in block H, to these exact
envelope bytes; the envelope was signed by the private key matching the enclosed public key,
whose key id the envelope names. That the key belongs to the physical device is the enrolment
fact an auditor compares with the device's own ``sensor-agent pubkey`` output (the key id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import cbor
from .block import SignedBlock
from .envelope import Envelope
from .errors import MalformedError, ProvenanceError
from .keys import PublicKey
from .merkle import HASH_SIZE, RFC9162_SHA256, verify_inclusion
from .reading import Reading
from .senml import Measurement, Value
from .wire import PROOF_FORMAT_VERSION
from .wire import ProofLabel as L

__all__ = [
    "PROOF_FORMAT_VERSION",
    "Check",
    "ProofFile",
    "ProofReport",
    "bind_device_key",
    "check_proof_fields",
    "run_check",
    "verify_device_signature",
    "verify_proof",
]

_MAX_PATH = 64


def run_check(checks: list[Check], name: str, fn: Callable[[], str]) -> bool:
    """Run one named check of a proof: its detail on success, the error's words on failure."""
    try:
        detail = fn()
    except ProvenanceError as exc:
        checks.append(Check(name, False, exc.diagnostics()))
        return False
    checks.append(Check(name, True, detail))
    return True


def bind_device_key(envelope_bytes: bytes, device_public_key: bytes) -> tuple[PublicKey, Envelope]:
    """The enclosed device key and the envelope, when the envelope's key id names that key."""
    key = PublicKey.from_der(device_public_key)
    envelope = Envelope.decode(envelope_bytes)
    if envelope.kid != key.kid:
        raise MalformedError(f"envelope names key id {envelope.kid.hex()}, the enclosed "
                             f"device key has key id {key.kid.hex()}")
    return key, envelope


def verify_device_signature(envelope: Envelope, key: PublicKey) -> tuple[Reading, str]:
    """The reading an envelope carries, once its ES256 signature verifies under ``key``."""
    envelope.verify(key)
    reading = envelope.reading()
    return reading, (f"ES256 signature valid; device {reading.device_id} seq {reading.seq} "
                     f"time {reading.time_ms} ms")


def check_proof_fields(proof: Any, byte_fields: tuple[str, ...], *, max_path: int) -> None:
    """The checks every proof file format makes when built: ``byte_fields`` are bytes, the leaf
    index is a non-negative int, the audit path a tuple of at most ``max_path`` hashes."""
    for name in byte_fields:
        if not isinstance(getattr(proof, name), bytes):
            raise MalformedError(f"proof file {name} must be bytes")
    index, path = proof.leaf_index, proof.audit_path
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise MalformedError("proof file leaf index must be a non-negative integer")
    if not isinstance(path, tuple) or len(path) > max_path or not all(
        isinstance(h, bytes) and len(h) == HASH_SIZE for h in path
    ):
        raise MalformedError(f"audit path must be at most {max_path} hashes of {HASH_SIZE} B")
K_VERSION, K_ENVELOPE, K_DEVICE_KEY, K_INDEX = L.VERSION, L.ENVELOPE, L.DEVICE_KEY, L.INDEX
K_PATH, K_BLOCK, K_COLLECTOR_KID = L.PATH, L.BLOCK, L.COLLECTOR_KID
_KEYS = frozenset({K_VERSION, K_ENVELOPE, K_DEVICE_KEY, K_INDEX, K_PATH, K_BLOCK,
                   K_COLLECTOR_KID})


@dataclass(frozen=True, slots=True)
class ProofFile:
    envelope: bytes = field(repr=False)
    device_public_key: bytes = field(repr=False)  # DER SubjectPublicKeyInfo
    leaf_index: int
    audit_path: tuple[bytes, ...] = field(repr=False)
    block: bytes = field(repr=False)  # the signed block header (COSE_Sign1)
    collector_kid: bytes
    version: int = PROOF_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != PROOF_FORMAT_VERSION:
            raise MalformedError(f"unsupported proof file version {self.version!r}")
        check_proof_fields(self, ("envelope", "device_public_key", "block", "collector_kid"),
                           max_path=_MAX_PATH)

    def encode(self) -> bytes:
        return cbor.encode(
            {
                K_VERSION: self.version,
                K_ENVELOPE: self.envelope,
                K_DEVICE_KEY: self.device_public_key,
                K_INDEX: self.leaf_index,
                K_PATH: list(self.audit_path),
                K_BLOCK: self.block,
                K_COLLECTOR_KID: self.collector_kid,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ProofFile:
        body: Any = cbor.decode(data, what="proof file")
        if not isinstance(body, dict) or set(body) != _KEYS:
            raise MalformedError("proof file must be a CBOR map with keys 1..7", code="bad_proof")
        path = body[K_PATH]
        if not isinstance(path, list):
            raise MalformedError("audit path must be an array", code="bad_proof")
        return cls(
            version=body[K_VERSION],
            envelope=body[K_ENVELOPE],
            device_public_key=body[K_DEVICE_KEY],
            leaf_index=body[K_INDEX],
            audit_path=tuple(path),
            block=body[K_BLOCK],
            collector_kid=body[K_COLLECTOR_KID],
        )

    def to_json(self) -> dict[str, Any]:
        """A readable rendering: hex for bytes, decoded reading and block header beside them."""
        out: dict[str, Any] = {
            "format_version": self.version,
            "leaf_index": self.leaf_index,
            "audit_path": [h.hex() for h in self.audit_path],
            "collector_kid": self.collector_kid.hex(),
            "envelope": self.envelope.hex(),
            "device_public_key_der": self.device_public_key.hex(),
            "block_header": self.block.hex(),
        }
        try:
            reading = Envelope.decode(self.envelope).reading()
            out["reading"] = reading_to_json(reading)
        except ProvenanceError as exc:
            out["reading"] = {"error": exc.diagnostics()}
        try:
            header = SignedBlock.decode(self.block).header
            out["block"] = {
                "height": header.height,
                "prev_hash": header.prev_hash.hex(),
                "merkle_root": header.merkle_root.hex(),
                "leaf_count": header.leaf_count,
                "first_time_ms": header.first_time_ms,
                "last_time_ms": header.last_time_ms,
                "sealed_at_ms": header.sealed_at_ms,
            }
        except ProvenanceError as exc:
            out["block"] = {"error": exc.diagnostics()}
        return out


def reading_to_json(reading: Reading) -> dict[str, Any]:
    """A JSON-ready view of a reading (bytes as hex, measurements with SenML names)."""
    out: dict[str, Any] = {
        "device_id": reading.device_id,
        "seq": reading.seq,
        "boot": reading.boot,
        "time_ms": reading.time_ms,
        "clock_synced": reading.clock_synced,
        "prev": reading.prev.hex(),
        "kind": reading.kind,
        "measurements": [
            {k: v for k, v in (("n", m.name), ("u", m.unit), ("v", m.value),
                               ("t", m.time_offset)) if v is not None}
            for m in reading.measurements
        ],
    }
    if reading.event is not None:
        out["event"] = dict(reading.event)
    if reading.gap is not None:
        out["gap"] = {"first": reading.gap.first, "last": reading.gap.last}
    if reading.commitment is not None:
        out["commitment"] = reading.commitment.hex()
    return out


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(slots=True)
class ProofReport:
    """Every check ``verify_proof`` made, in order, with its outcome."""

    checks: list[Check] = field(default_factory=list)
    reading: Reading | None = None
    block: SignedBlock | None = None
    expected: tuple[str, ...] = ()  # the checks this kind of proof makes (empty: format 1)
    checkpoint: Any = None  # the SignedCheckpoint a format 2 proof was checked against
    #: A private reading's values, when the proof disclosed them and they match the commitment.
    disclosed: tuple[tuple[Measurement, ...], dict[str, Value] | None] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def render(self) -> str:
        lines = [f"[{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        lines.append("proof VERIFIED" if self.ok else "proof FAILED")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {"ok": self.ok, "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail}
                                       for c in self.checks]},
            indent=2,
        )


def verify_proof(proof: ProofFile | bytes, collector_key: PublicKey) -> ProofReport:
    """Check a proof file offline against the trusted collector key; never raises for bad input."""
    report = ProofReport()

    def check(name: str, fn: Callable[[], str]) -> bool:
        return run_check(report.checks, name, fn)

    if isinstance(proof, bytes | bytearray):
        data = bytes(proof)
        parsed: list[ProofFile] = []

        def parse() -> str:
            parsed.append(ProofFile.decode(data))
            return f"{len(data)} bytes, format version {parsed[0].version}"

        if not check("proof file format", parse):
            return report
        proof = parsed[0]

    pf = proof
    state: dict[str, Any] = {}

    def collector() -> str:
        if pf.collector_kid != collector_key.kid:
            raise MalformedError(
                f"the proof names collector key {pf.collector_kid.hex()}, but the trusted key "
                f"is {collector_key.kid_hex}"
            )
        return f"proof names the trusted collector key {collector_key.kid_hex}"

    def block_signature() -> str:
        block = SignedBlock.decode(pf.block)
        block.verify(collector_key)
        state["block"] = report.block = block
        return (f"block {block.header.height} header signed by collector "
                f"{collector_key.kid_hex[:16]}…, block hash {block.hash.hex()}")

    def device_key() -> str:
        key, envelope = bind_device_key(pf.envelope, pf.device_public_key)
        state["key"], state["envelope"] = key, envelope
        return f"envelope key id {key.kid_hex} = SHA-256 of the enclosed device public key"

    def device_signature() -> str:
        report.reading, detail = verify_device_signature(state["envelope"], state["key"])
        return detail

    def inclusion() -> str:
        block: SignedBlock = state["block"]
        leaf = RFC9162_SHA256.hash_leaf(pf.envelope)
        verify_inclusion(pf.leaf_index, block.header.leaf_count, leaf, list(pf.audit_path),
                         block.header.merkle_root)
        return (f"leaf {pf.leaf_index} of {block.header.leaf_count} with a "
                f"{len(pf.audit_path)}-node audit path reaches Merkle root "
                f"{block.header.merkle_root.hex()[:16]}…")

    def time_range() -> str:
        block: SignedBlock = state["block"]
        reading = report.reading
        assert reading is not None
        h = block.header
        if not h.first_time_ms <= reading.time_ms <= h.last_time_ms:
            raise MalformedError(
                f"reading time {reading.time_ms} lies outside the block's range "
                f"{h.first_time_ms}..{h.last_time_ms}"
            )
        return f"reading time lies in the block's range {h.first_time_ms}..{h.last_time_ms}"

    check("collector key", collector)
    have_block = check("block signature", block_signature)
    have_key = check("device key binding", device_key)
    signed = have_key and check("device signature", device_signature)
    if have_block:
        check("inclusion in block", inclusion)
    if have_block and signed:
        check("time within block", time_range)
    return report
