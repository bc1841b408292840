"""C2SP tlog checkpoints (c2sp.org/tlog-checkpoint): a log's signed tree head as a note text.

The note text is the origin (the log's name), the tree size in decimal and the base64 RFC 9162
root, one per line, then optional extension lines::

    sensorledger.example/water-busan
    1234
    kXo6Rx8mXDDhJwGFeoVDmoXP8wE4GxyGWR7EpjwT4KA=

:class:`Checkpoint` checks itself when built; :func:`parse_checkpoint` is strict (no leading
zeros, canonical base64, a 32-byte root, no empty lines). :func:`sign_checkpoint` and
:func:`open_checkpoint` wrap :mod:`provenance.note` so the checkpoint travels as a signed note.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import CheckpointFormatError, CheckpointOriginError
from .merkle import HASH_SIZE
from .note import NoteSigner, NoteVerifier, VerifiedNote, open_note, sign_note

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "SignedCheckpoint",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

MAX_TREE_SIZE = (1 << 63) - 1
"""Largest tree size accepted: what a signed 64-bit integer (Go's int64) holds."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size and root hash, with optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin:
            raise CheckpointFormatError("a checkpoint origin must not be empty")
        if any(c < " " for c in self.origin):
            raise CheckpointFormatError("a checkpoint origin is one line, no control characters")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointFormatError(f"tree size must be an integer, got {self.size!r}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointFormatError(f"tree size {self.size} is not in 0..2**63-1")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointFormatError(
                f"root hash must be {HASH_SIZE} bytes, got {len(self.root)}"
            )
        for line in self.extensions:
            if not line or any(c < " " for c in line):
                raise CheckpointFormatError(
                    "extension lines must be non-empty single lines without control characters"
                )

    def text(self) -> str:
        """The note text: every line ends in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(line + "\n" for line in (*lines, *self.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """A checkpoint from its note text (the part above the blank line, final newline included)."""
    if not text.endswith("\n"):
        raise CheckpointFormatError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointFormatError(
            f"a checkpoint has at least 3 lines (origin, size, root), got {len(lines)}"
        )
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointFormatError(
            f"tree size must be decimal digits without leading zeros, got {size_text[:30]!r}"
        )
    try:
        root = base64.b64decode(root_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointFormatError(f"root hash is not base64: {root_text[:60]!r}") from None
    if base64.b64encode(root).decode("ascii") != root_text:
        raise CheckpointFormatError(f"root hash is not canonical base64: {root_text[:60]!r}")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose note carried at least one verified signature from a trusted key."""

    checkpoint: Checkpoint
    note: VerifiedNote
    data: bytes
    """The signed note exactly as received."""


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> bytes:
    """The checkpoint as a signed note, one signature line per signer, in order."""
    return sign_note(checkpoint.text(), signers)


def open_checkpoint(
    data: bytes, verifiers: Iterable[NoteVerifier], *, origin: str | None = None
) -> SignedCheckpoint:
    """Verify a checkpoint note against trusted keys and parse it.

    Raises what :func:`provenance.note.open_note` raises, then :class:`CheckpointFormatError`
    for a body that is not a checkpoint and :class:`CheckpointOriginError` when ``origin`` is
    given and differs from the checkpoint's.
    """
    note = open_note(data, verifiers)
    checkpoint = parse_checkpoint(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointOriginError(
            f"checkpoint is from log {checkpoint.origin!r}, expected {origin!r}"
        )
    return SignedCheckpoint(checkpoint, note, data)
