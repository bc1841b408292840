"""C2SP tlog-proof files (c2sp.org/tlog-proof@v1): an offline proof that an entry is logged.

The text form::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>          (optional, not authenticated)
    index <zero-based leaf index>
    <base64 hash>                       (audit path, leaf's sibling first; zero or more lines)
    <empty line>
    <the signed checkpoint note, verbatim>

:func:`parse_tlog_proof` is strict (:class:`TlogProofFormatError`): the header line, decimal
without leading zeros, canonical base64, 32-byte hashes, at most 63 of them.
:func:`verify_tlog_proof` checks the checkpoint's signatures against trusted note keys, then
the inclusion of a leaf hash under its root; computing the leaf hash from the entry is the
application's part.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from . import merkle
from .checkpoint import MAX_TREE_SIZE, SignedCheckpoint, open_checkpoint
from .errors import TlogProofFormatError
from .note import MAX_NOTE_SIZE, NoteVerifier

__all__ = [
    "MAX_PATH_LENGTH",
    "TLOG_PROOF_HEADER",
    "TlogProof",
    "parse_tlog_proof",
    "verify_tlog_proof",
]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
"""First line of every tlog-proof."""

MAX_PATH_LENGTH = 63
"""Longest audit path in a tree of at most 2**63 - 1 leaves."""

_MAX_PROOF_SIZE = MAX_NOTE_SIZE + 64 * 1024
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise TlogProofFormatError(f"{what} is not standard base64: {text[:60]!r}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise TlogProofFormatError(f"{what} is not canonical base64: {text[:60]!r}")
    return raw


@dataclass(frozen=True, slots=True)
class TlogProof:
    """Leaf index, audit path and the signed checkpoint note they prove against."""

    index: int
    path: tuple[bytes, ...]
    checkpoint: bytes
    """The signed checkpoint note, verbatim (log signature and any cosignatures)."""
    extra: bytes | None = None
    """Opaque, unauthenticated application data; ``None`` when absent."""

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise TlogProofFormatError(f"index must be an integer, got {self.index!r}")
        if not 0 <= self.index < MAX_TREE_SIZE:
            raise TlogProofFormatError(f"index {self.index} is not in 0..2**63-2")
        if len(self.path) > MAX_PATH_LENGTH:
            raise TlogProofFormatError(
                f"audit path has {len(self.path)} hashes, at most {MAX_PATH_LENGTH} possible"
            )
        for i, node in enumerate(self.path):
            if len(node) != merkle.HASH_SIZE:
                raise TlogProofFormatError(
                    f"audit path hash {i} is {len(node)} bytes, not {merkle.HASH_SIZE}"
                )
        if not self.checkpoint.endswith(b"\n"):
            raise TlogProofFormatError("the checkpoint note must end with a newline")
        if self.extra is not None and not self.extra:
            raise TlogProofFormatError("extra data must be non-empty (use None for none)")

    def to_bytes(self) -> bytes:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(node).decode("ascii") for node in self.path)
        return ("".join(line + "\n" for line in lines) + "\n").encode("ascii") + self.checkpoint


def parse_tlog_proof(data: bytes) -> TlogProof:
    """A tlog-proof from its text form; the checkpoint is kept verbatim and not yet verified."""
    if len(data) > _MAX_PROOF_SIZE:
        raise TlogProofFormatError(f"proof is {len(data)} bytes, over {_MAX_PROOF_SIZE}")
    head, sep, checkpoint = data.partition(b"\n\n")
    if not sep:
        raise TlogProofFormatError("no empty line between the proof and the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise TlogProofFormatError("proof lines above the checkpoint must be ASCII") from None
    if lines[0] != TLOG_PROOF_HEADER:
        raise TlogProofFormatError(f"first line must be {TLOG_PROOF_HEADER!r}, got {lines[0]!r}")
    at = 1
    extra = None
    if at < len(lines) and lines[at].startswith("extra "):
        extra = _b64decode(lines[at][len("extra ") :], "extra data")
        at += 1
    if at >= len(lines) or not lines[at].startswith("index "):
        raise TlogProofFormatError("missing the 'index N' line")
    index_text = lines[at][len("index ") :]
    if not _DECIMAL.fullmatch(index_text):
        raise TlogProofFormatError(
            f"index must be decimal digits without leading zeros, got {index_text[:30]!r}"
        )
    path_lines = lines[at + 1 :]
    if len(path_lines) > MAX_PATH_LENGTH:
        raise TlogProofFormatError(f"audit path has more than {MAX_PATH_LENGTH} hashes")
    path = tuple(_b64decode(line, f"audit path line {i}") for i, line in enumerate(path_lines))
    return TlogProof(int(index_text), path, checkpoint, extra)


def verify_tlog_proof(
    proof: TlogProof,
    leaf_hash: bytes,
    verifiers: Iterable[NoteVerifier],
    *,
    origin: str | None = None,
) -> SignedCheckpoint:
    """Check the checkpoint's signatures, then that ``leaf_hash`` is leaf ``proof.index`` of it.

    ``leaf_hash`` is the RFC 9162 leaf hash the application computed from the entry (for
    SensorLedger, ``SHA-256(0x00 || envelope bytes)``). Returns the verified checkpoint. Raises
    the errors of :func:`provenance.checkpoint.open_checkpoint`, then a
    :class:`provenance.merkle.MerkleError` when the inclusion does not hold.
    """
    signed = open_checkpoint(proof.checkpoint, verifiers, origin=origin)
    cp = signed.checkpoint
    merkle.verify_inclusion(proof.index, cp.size, leaf_hash, proof.path, cp.root)
    return signed
