"""The C2SP tlog-witness ``add-checkpoint`` request and response bodies (c2sp.org/tlog-witness).

Request::

    old <size>                 (decimal, no leading zeros)
    <base64 hash>              (0..63 lines: the RFC 9162 consistency proof old -> new)
    <empty line>
    <the signed checkpoint note>

A 200 response is one or more note signature lines (the cosignatures); a 409 response is the
witness's own latest size and a newline, content type ``text/x.tlog.size``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import MalformedError
from .merkle import HASH_SIZE
from .note import MAX_NOTE_SIZE

__all__ = ["MAX_PROOF_LINES", "MAX_REQUEST_SIZE", "SIZE_CONTENT_TYPE", "AddCheckpoint",
           "parse_add_checkpoint", "parse_size_body"]

MAX_PROOF_LINES = 63
MAX_REQUEST_SIZE = MAX_NOTE_SIZE + 8 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    """The signed checkpoint note, verbatim."""

    def to_bytes(self) -> bytes:
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode() for h in self.proof)]
        return ("".join(line + "\n" for line in lines) + "\n").encode() + self.checkpoint


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """The request; :class:`MalformedError` (an HTTP 400) for anything else."""
    if len(body) > MAX_REQUEST_SIZE:
        raise MalformedError(f"request is {len(body)} bytes, over {MAX_REQUEST_SIZE}")
    head, sep, checkpoint = body.partition(b"\n\n")
    if not sep or not checkpoint:
        raise MalformedError("no empty line between the old size and proof and the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise MalformedError("old size and proof lines must be ASCII") from None
    if not lines[0].startswith("old ") or not _DECIMAL.fullmatch(lines[0][4:]):
        raise MalformedError("first line must be 'old <size>' in decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            raw = base64.b64decode(line.encode(), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedError(f"proof line {line[:60]!r} is not base64") from None
        if len(raw) != HASH_SIZE or base64.b64encode(raw).decode() != line:
            raise MalformedError(f"proof line {line[:60]!r} is not a canonical 32-byte hash")
        proof.append(raw)
    return AddCheckpoint(int(lines[0][4:]), tuple(proof), checkpoint)


def parse_size_body(body: bytes) -> int:
    """The size in a 409 ``text/x.tlog.size`` body."""
    text = body.decode("ascii", "replace")
    if not text.endswith("\n") or not _DECIMAL.fullmatch(text[:-1]):
        raise MalformedError(f"a tlog size body is a decimal and a newline, got {text[:40]!r}")
    return int(text[:-1])


def proof_lines(proof: Sequence[bytes]) -> str:
    return "".join(base64.b64encode(h).decode() + "\n" for h in proof)
