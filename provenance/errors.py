"""The error base of the whole project, and the provenance core's own family on top of it.

Every SensorLedger error carries a short machine-readable ``code`` (a quarantine reason, a
verification report's reason, a log field) and a sentence a person can act on
(``diagnostics()``). Each package keeps its own family on this base: :class:`ProvenanceError`
here, ``AgentError``, ``CollectorError`` and ``HardwareError`` in theirs; so a caller that
only wants to print the sentence can catch :class:`SensorLedgerError` once.
"""

from __future__ import annotations

__all__ = [
    "CheckpointFormatError",
    "CheckpointOriginError",
    "KeyBindingError",
    "KeyFormatError",
    "MalformedError",
    "NoteFormatError",
    "NoteKeyError",
    "NoteSignatureError",
    "ProvenanceError",
    "SensorLedgerError",
    "SignatureError",
    "TlogProofFormatError",
    "UnsupportedAlgorithmError",
    "UnverifiedNoteError",
]


class SensorLedgerError(Exception):
    """Root of every error SensorLedger raises."""

    code = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def diagnostics(self) -> str:
        """A sentence that says what is wrong and, where possible, what to do about it."""
        return str(self) or self.__class__.__doc__ or self.code


class ProvenanceError(SensorLedgerError):
    """Root of every error raised by provenance."""

    code = "provenance_error"


class MalformedError(ProvenanceError):
    """Bytes that do not parse as the structure they claim to be."""

    code = "malformed"


class UnsupportedAlgorithmError(ProvenanceError):
    """The envelope names a signature algorithm other than ES256."""

    code = "wrong_algorithm"


class SignatureError(ProvenanceError):
    """A signature does not verify under the key it claims."""

    code = "bad_signature"


class KeyBindingError(ProvenanceError):
    """A key id does not match the public key it is bound to."""

    code = "key_mismatch"


class KeyFormatError(ProvenanceError):
    """A key is not a P-256 key in the expected encoding."""

    code = "bad_key"


class NoteFormatError(MalformedError):
    """Text that is not a well-formed C2SP signed note (c2sp.org/signed-note)."""

    code = "malformed_note"


class NoteKeyError(KeyFormatError):
    """A signed-note verifier or signer key string that does not parse or does not match."""

    code = "bad_note_key"


class NoteSignatureError(SignatureError):
    """A signature by a trusted note key does not verify, so the whole note is rejected."""

    code = "bad_note_signature"

    def __init__(self, message: str = "", *, name: str = "", key_id: int = 0) -> None:
        super().__init__(message)
        self.name = name
        self.key_id = key_id


class UnverifiedNoteError(SignatureError):
    """No signature on a note comes from a trusted key."""

    code = "unverified_note"


class CheckpointFormatError(MalformedError):
    """A note text that is not a C2SP tlog checkpoint (origin, tree size, root hash)."""

    code = "malformed_checkpoint"


class CheckpointOriginError(ProvenanceError):
    """A checkpoint comes from another log than the one expected (its origin line differs)."""

    code = "wrong_origin"


class TlogProofFormatError(MalformedError):
    """Text that is not a C2SP tlog-proof (c2sp.org/tlog-proof@v1)."""

    code = "malformed_tlog_proof"
