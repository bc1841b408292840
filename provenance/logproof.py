"""Proof files, format 2: one reading's inclusion in the log tree, against a signed checkpoint.

A format 2 proof carries the envelope exactly as the device signed it, the device public key,
the reading's leaf index in the one log tree, the audit path, and the checkpoint note (C2SP
signed note: origin, tree size, root; the log's signatures and any cosignatures) it proves
against. The same content travels in the C2SP ``tlog-proof`` text form, the envelope and the
device key then riding in its ``extra`` line as CBOR ``{2: envelope, 3: device key}``.

``verify_log_proof`` needs the file and a :class:`~provenance.trust.TrustPolicy`: no database,
no network, and no block header in between. Format 1 files go to
:func:`provenance.prooffile.verify_proof`; :func:`verify_any_proof` picks the right one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import cbor
from .checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, parse_checkpoint
from .envelope import Envelope
from .errors import MalformedError, ProvenanceError, SignatureError
from .merkle import RFC9162_SHA256, verify_inclusion
from .note import parse_note, parse_verifier_key
from .prooffile import (
    Check,
    ProofReport,
    bind_device_key,
    check_proof_fields,
    run_check,
    verify_device_signature,
    verify_proof,
)
from .sealed_values import Opening
from .statement import KeyRotation, SignedStatement
from .tlogproof import TLOG_PROOF_HEADER, TlogProof, parse_tlog_proof
from .trust import TrustPolicy
from .wire import PROOF_FORMAT_VERSION_2
from .wire import ProofLabel as L

__all__ = ["LOG_PROOF_CHECKS", "MISSING_SIGNER", "WITNESS_QUORUM", "EnrolmentProof", "LogProof",
           "check_checkpoint",
           "check_enrolment", "decode_log_proof", "describe_signers", "follow_rotations",
           "verify_any_proof",
           "verify_log_proof"]

#: The codes of :func:`check_checkpoint`'s refusals beyond a signature that does not verify: a
#: key the policy names for the log did not sign; the witnesses' cosignatures fall short.
MISSING_SIGNER = "missing_signer"
WITNESS_QUORUM = "witness_quorum"

#: Every check ``verify_log_proof`` can make, in its order ("device key enrolment" only for
#: a file that carries the key's enrolment statement, "collector key rotation" only for one
#: that carries key-rotate statements).
LOG_PROOF_CHECKS = ("proof file format", "collector key rotation", "checkpoint signature",
                    "device key binding", "device signature", "inclusion in log",
                    "device key enrolment")

_MAX_PATH = 63
_KEYS = frozenset({L.VERSION, L.ENVELOPE, L.DEVICE_KEY, L.INDEX, L.PATH, L.CHECKPOINT})
_OPTIONAL_KEYS = frozenset({L.ENROLMENT, L.ROTATIONS})
_EXTRA_KEYS = frozenset({L.ENVELOPE, L.DEVICE_KEY})


@dataclass(frozen=True, slots=True)
class EnrolmentProof:
    """The device key's enrolment statement and its inclusion under the proof's checkpoint."""

    statement: bytes = field(repr=False)  # the collector statement envelope, verbatim
    leaf_index: int
    audit_path: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        check_proof_fields(self, ("statement",), max_path=_MAX_PATH)

    def to_cbor(self) -> list[Any]:
        return [self.statement, self.leaf_index, list(self.audit_path)]

    @classmethod
    def from_cbor(cls, value: Any) -> EnrolmentProof:
        if not isinstance(value, list) or len(value) != 3 or not isinstance(value[2], list):
            raise MalformedError("the enrolment field is [statement, leaf index, audit path]",
                                 code="bad_proof")
        return cls(value[0], value[1], tuple(value[2]))


@dataclass(frozen=True, slots=True)
class LogProof:
    envelope: bytes = field(repr=False)
    device_public_key: bytes = field(repr=False)  # DER SubjectPublicKeyInfo
    leaf_index: int
    audit_path: tuple[bytes, ...] = field(repr=False)
    checkpoint: bytes = field(repr=False)  # the signed checkpoint note, verbatim
    enrolment: EnrolmentProof | None = None
    #: A private reading's opening (salt and values), present only in a disclosed proof.
    opening: bytes | None = field(default=None, repr=False)
    #: The log's key-rotate statements under the checkpoint, in log order (same shape as the
    #: enrolment: statement, leaf index, audit path).
    rotations: tuple[EnrolmentProof, ...] = ()

    def __post_init__(self) -> None:
        check_proof_fields(self, ("envelope", "device_public_key", "checkpoint"),
                           max_path=_MAX_PATH)
        if self.opening is not None and not isinstance(self.opening, bytes):
            raise MalformedError("proof file opening must be bytes")

    def _extra_fields(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        if self.enrolment is not None:
            out[L.ENROLMENT] = self.enrolment.to_cbor()
        if self.rotations:
            out[L.ROTATIONS] = [r.to_cbor() for r in self.rotations]
        return out

    def encode(self) -> bytes:
        body: dict[int, Any] = {
            L.VERSION: PROOF_FORMAT_VERSION_2,
            L.ENVELOPE: self.envelope,
            L.DEVICE_KEY: self.device_public_key,
            L.INDEX: self.leaf_index,
            L.PATH: list(self.audit_path),
            L.CHECKPOINT: self.checkpoint,
            **self._extra_fields(),
        }
        if self.opening is not None:
            body[L.OPENING] = self.opening
        return cbor.encode(body)

    def to_tlog_proof(self) -> bytes:
        extra = cbor.encode({L.ENVELOPE: self.envelope, L.DEVICE_KEY: self.device_public_key,
                             **self._extra_fields()})
        return TlogProof(self.leaf_index, self.audit_path, self.checkpoint, extra).to_bytes()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format_version": PROOF_FORMAT_VERSION_2,
            "leaf_index": self.leaf_index,
            "audit_path": [h.hex() for h in self.audit_path],
            "checkpoint": self.checkpoint.decode("utf-8", "replace"),
            "envelope": self.envelope.hex(),
            "device_public_key_der": self.device_public_key.hex(),
        }
        if self.enrolment is not None:
            out["enrolment"] = {"statement": self.enrolment.statement.hex(),
                                "leaf_index": self.enrolment.leaf_index,
                                "audit_path": [h.hex() for h in self.enrolment.audit_path]}
        if self.rotations:
            out["rotations"] = [{"statement": r.statement.hex(), "leaf_index": r.leaf_index,
                                 "audit_path": [h.hex() for h in r.audit_path]}
                                for r in self.rotations]
        return out


def decode_log_proof(data: bytes) -> LogProof:
    """A format 2 proof from its CBOR or its tlog-proof text form (format only, nothing
    verified)."""
    if data.startswith(TLOG_PROOF_HEADER.encode() + b"\n"):
        tp = parse_tlog_proof(data)
        if tp.extra is None:
            raise MalformedError("this tlog-proof has no 'extra' line with the envelope and "
                                 "device key", code="bad_proof")
        extra: Any = cbor.decode(tp.extra, what="tlog-proof extra data")
        if not isinstance(extra, dict) or not _EXTRA_KEYS <= set(extra) <= (
                _EXTRA_KEYS | _OPTIONAL_KEYS):
            raise MalformedError("tlog-proof extra data must be a CBOR map with keys 2 and 3 "
                                 "(and maybe 9, 11)", code="bad_proof")
        return LogProof(extra[L.ENVELOPE], extra[L.DEVICE_KEY], tp.index, tp.path,
                        tp.checkpoint, _enrolment(extra), rotations=_rotations(extra))
    body: Any = cbor.decode(data, what="proof file")
    if not isinstance(body, dict) or body.get(L.VERSION) != PROOF_FORMAT_VERSION_2 or not (
        _KEYS <= set(body) <= _KEYS | _OPTIONAL_KEYS | {L.OPENING}
    ):
        raise MalformedError("a format 2 proof file is a CBOR map with keys 1..5 and 8 (and "
                             "maybe 9, 11; 10 disclosing a private reading)", code="bad_proof")
    path = body[L.PATH]
    if not isinstance(path, list):
        raise MalformedError("audit path must be an array", code="bad_proof")
    return LogProof(body[L.ENVELOPE], body[L.DEVICE_KEY], body[L.INDEX], tuple(path),
                    body[L.CHECKPOINT], _enrolment(body), body.get(L.OPENING),
                    _rotations(body))


def _enrolment(fields: dict[Any, Any]) -> EnrolmentProof | None:
    value = fields.get(L.ENROLMENT)
    return None if value is None else EnrolmentProof.from_cbor(value)


def _rotations(fields: dict[Any, Any]) -> tuple[EnrolmentProof, ...]:
    value = fields.get(L.ROTATIONS)
    if value is None:
        return ()
    if not isinstance(value, list) or not 0 < len(value) <= 64:
        raise MalformedError("the rotations field is a non-empty array of [statement, leaf "
                             "index, audit path]", code="bad_proof")
    return tuple(EnrolmentProof.from_cbor(v) for v in value)


def _is_v1(data: bytes) -> bool:
    try:
        body: Any = cbor.decode(data, what="proof file")
    except ProvenanceError:
        return False
    return isinstance(body, dict) and body.get(L.VERSION) == 1


def verify_any_proof(data: bytes, policy: TrustPolicy) -> ProofReport:
    """Format 1 (against a block header), format 2 or tlog-proof (against a checkpoint)."""
    if _is_v1(data):
        keys = policy.block_keys()
        if not keys:
            report = ProofReport()
            report.checks.append(Check("collector key", False, "a format 1 proof is checked "
                                       "with the collector's P-256 key (PEM or ECDSA vkey)"))
            return report
        reports = [verify_proof(data, key) for key in keys]
        return next((r for r in reports if r.ok), reports[0])
    return verify_log_proof(data, policy)


def check_checkpoint(note: bytes, policy: TrustPolicy) -> SignedCheckpoint:
    """The checkpoint note, verified: of the policy's log, signed by every trusted key named
    for its log (and by at least one)."""
    origin = parse_checkpoint(parse_note(note).text).origin
    if policy.origin is not None and origin != policy.origin:
        raise MalformedError(f"checkpoint is from log {origin!r}, the policy trusts log "
                             f"{policy.origin!r}")
    signed = open_checkpoint(note, policy.note_verifiers(origin))
    have = {(s.name, s.key_id) for s in signed.note.verified}
    missing = [v for v in policy.required(origin) if (v.name, v.key_id) not in have]
    if missing:
        raise SignatureError("trusted key(s) " + ", ".join(
            f"{v.name}+{v.key_id:08x}" for v in missing) + " did not sign the checkpoint",
            code=MISSING_SIGNER)
    if policy.quorum is not None:
        result = policy.witnessed(signed.note.verified)
        if not result.met:
            raise SignatureError(f"witness quorum not met: {result.describe()}",
                                 code=WITNESS_QUORUM)
    return signed


def describe_signers(signed: SignedCheckpoint, policy: TrustPolicy) -> str:
    """Who signed a verified checkpoint: the log's keys, then the policy's witnesses."""
    witness_keys = {(v.name, v.key_id) for _, v in policy.witnesses}
    names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in signed.note.verified
                      if (s.name, s.key_id) not in witness_keys)
    text = f"signed by trusted {names}"
    if policy.quorum is not None:
        text += "; " + policy.witnessed(signed.note.verified).describe()
    return text


def verify_log_proof(data: bytes, policy: TrustPolicy) -> ProofReport:
    """Check a format 2 or tlog-proof file offline; never raises for bad input."""
    report = ProofReport(expected=tuple(c for c in LOG_PROOF_CHECKS
                                        if c != "collector key rotation"))
    state: dict[str, Any] = {}

    def check(name: str, fn: Callable[[], str]) -> bool:
        return run_check(report.checks, name, fn)

    def parse() -> str:
        state["proof"] = decode_log_proof(data)
        form = "tlog-proof" if data.startswith(TLOG_PROOF_HEADER.encode()) else "format 2"
        return f"{len(data)} bytes, {form}"

    if not check("proof file format", parse):
        return report
    pf: LogProof = state["proof"]
    if pf.rotations:
        report.expected = LOG_PROOF_CHECKS

    trust = {"checkpoint": policy, "statements": policy}

    def rotation() -> str:
        trust["checkpoint"], trust["statements"], detail = follow_rotations(pf, policy)
        return detail

    def checkpoint() -> str:
        policy = trust["checkpoint"]
        signed = check_checkpoint(pf.checkpoint, policy)
        origin = signed.checkpoint.origin
        state["cp"] = report.checkpoint = signed
        return (f"log {origin} tree size {signed.checkpoint.size} "
                f"{describe_signers(signed, policy)}")

    def device_key() -> str:
        key, envelope = bind_device_key(pf.envelope, pf.device_public_key)
        state["key"], state["envelope"] = key, envelope
        return f"envelope key id {key.kid_hex} = SHA-256 of the enclosed device public key"

    def device_signature() -> str:
        report.reading, detail = verify_device_signature(state["envelope"], state["key"])
        return detail

    def disclosed_values() -> str:
        assert report.reading is not None and pf.opening is not None
        opening = Opening.decode(pf.opening)
        opening.check(report.reading.commitment)
        report.disclosed = opening.reveal()
        return ("the disclosed salt and values hash to the commitment the device signed "
                "(SHA-256)")

    def inclusion() -> str:
        signed: SignedCheckpoint = state["cp"]
        cp = signed.checkpoint
        leaf = RFC9162_SHA256.hash_leaf(pf.envelope)
        verify_inclusion(pf.leaf_index, cp.size, leaf, list(pf.audit_path), cp.root)
        return (f"leaf {pf.leaf_index} of {cp.size} with a {len(pf.audit_path)}-node audit "
                f"path reaches the checkpoint root {cp.root.hex()[:16]}…")

    rotated = not pf.rotations or check("collector key rotation", rotation)
    have_cp = rotated and check("checkpoint signature", checkpoint)
    signed = check("device key binding", device_key) and check("device signature",
                                                                device_signature)
    if signed and pf.opening is not None:
        check("disclosed values", disclosed_values)
    if have_cp:
        check("inclusion in log", inclusion)
    if have_cp and pf.enrolment is not None:
        check("device key enrolment",
              lambda: check_enrolment(pf, state["cp"].checkpoint, trust["statements"]))
    return report


def follow_rotations(pf: LogProof, policy: TrustPolicy) -> tuple[TrustPolicy, TrustPolicy, str]:
    """Follow the proof's key-rotate statements from the collector keys ``policy`` trusts.

    Each statement, in log order, must sit in the log under the proof's checkpoint (its size
    and root: the checkpoint's signature is checked next, under the key reached here) and be
    signed by a key trusted so far; it then hands the log to the key it names. A statement
    naming a key already trusted is passed over (the verifier trusts a later key). Returns
    the policy for the checkpoint (the log's keys replaced by the last key reached), the
    policy for statements (every key of the chain) and a description."""
    cp = parse_checkpoint(parse_note(pf.checkpoint).text)
    if policy.origin is not None and cp.origin != policy.origin:
        raise MalformedError(f"checkpoint is from log {cp.origin!r}, the policy trusts log "
                             f"{policy.origin!r}")
    keys = {k.kid: k for k in policy.block_keys()}
    if not keys:
        raise SignatureError("key rotation statements are checked with the collector's P-256 "
                             "key (PEM or ECDSA vkey), which the policy does not name")
    reached: list[tuple[int, KeyRotation]] = []
    final: tuple[KeyRotation, bool] | None = None  # the last rotation; verified by us?
    last = -1
    for proof in pf.rotations:
        if proof.leaf_index <= last:
            raise MalformedError("the rotation statements are not in log order")
        last = proof.leaf_index
        verify_inclusion(proof.leaf_index, cp.size, RFC9162_SHA256.hash_leaf(proof.statement),
                         list(proof.audit_path), cp.root)
        signed = SignedStatement.decode(proof.statement)
        rotation = signed.statement.key_rotation()
        if rotation.kid in keys:
            final = (rotation, False)
            continue
        key = keys.get(signed.kid)
        if key is None:
            raise SignatureError(f"the key-rotate statement at leaf {proof.leaf_index} is "
                                 f"signed by key {signed.kid.hex()[:16]}…, not a collector key "
                                 "the policy trusts or an earlier statement announced")
        signed.verify(key)
        keys[rotation.kid] = rotation.key
        reached.append((signed.statement.seq, rotation))
        final = (rotation, True)
    if final is None:
        return policy, policy, "no key-rotate statement"
    rotation, verified = final
    note_key = parse_verifier_key(rotation.vkey)
    if note_key.name != cp.origin:
        raise MalformedError(f"the rotation names note key {rotation.vkey!r}, not a key of log "
                             f"{cp.origin!r}")
    # The checkpoint must be signed by the last key the log announced (not by retired ones);
    # its note key counts when a trusted key signed the statement naming it or the policy
    # names it too.
    trusted_note = verified or any(v.vkey == note_key.vkey for v in policy.verifiers)
    for_checkpoint = replace(
        policy, verifiers=(*(v for v in policy.verifiers if v.name != cp.origin),
                           *((note_key,) if trusted_note else ())),
        collector_keys=(rotation.key,))
    for_statements = replace(policy, collector_keys=tuple(keys.values()))
    if not reached:
        return (for_checkpoint, for_statements, f"the policy already trusts key "
                f"{rotation.kid.hex()[:16]}…, the last the log's statements announce")
    steps = ", ".join(f"statement {seq} -> {r.kid.hex()[:16]}…" for seq, r in reached)
    return (for_checkpoint, for_statements,
            f"followed {len(reached)} key-rotate statement(s) in the log before the "
            f"checkpoint, each signed by a key trusted before it: {steps}")


def check_enrolment(pf: LogProof, cp: Checkpoint, policy: TrustPolicy) -> str:
    """The proof's enrolment statement: signed by a collector key the policy trusts, enrolling
    the proof's device key for the reading's device, in the log under the same checkpoint at a
    leaf before the reading's."""
    assert pf.enrolment is not None
    proof = pf.enrolment
    keys = policy.block_keys()
    if not keys:
        raise SignatureError("the enrolment statement is checked with the collector's P-256 "
                             "key (PEM or ECDSA vkey), which the policy does not name")
    signed = SignedStatement.decode(proof.statement)
    key = next((k for k in keys if k.kid == signed.kid), None)
    if key is None:
        raise SignatureError(f"the enrolment statement is signed by key "
                             f"{signed.kid.hex()[:16]}…, not a collector key the policy trusts")
    enrolment = signed.verify(key).enrolment()
    if enrolment.key.der != pf.device_public_key:
        raise MalformedError(f"the statement enrols key {enrolment.kid.hex()[:16]}…, not the "
                             "proof's device key")
    device = Envelope.decode(pf.envelope).reading().device_id
    if enrolment.device_id != device:
        raise MalformedError(f"the statement enrols the key for {enrolment.device_id}, the "
                             f"reading is of {device}")
    verify_inclusion(proof.leaf_index, cp.size, RFC9162_SHA256.hash_leaf(proof.statement),
                     list(proof.audit_path), cp.root)
    if proof.leaf_index >= pf.leaf_index:
        raise MalformedError(f"the enrolment is leaf {proof.leaf_index}, not before the "
                             f"reading (leaf {pf.leaf_index})")
    return (f"key enrolled for {enrolment.device_id} by collector statement "
            f"{signed.statement.seq} at leaf {proof.leaf_index} < leaf {pf.leaf_index}, "
            "in the same checkpoint")
