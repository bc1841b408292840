"""The error base of the whole project, and the provenance core's own family on top of it.

Every SensorLedger error carries a short machine-readable ``code`` (a quarantine reason, a
verification report's reason, a log field) and a sentence a person can act on
(``diagnostics()``). Each package keeps its own family on this base: :class:`ProvenanceError`
here, ``AgentError``, ``CollectorError`` and ``HardwareError`` in theirs; so a caller that
only wants to print the sentence can catch :class:`SensorLedgerError` once.
"""

from __future__ import annotations

__all__ = [
    "KeyBindingError",
    "KeyFormatError",
    "MalformedError",
    "ProvenanceError",
    "SensorLedgerError",
    "SignatureError",
    "UnsupportedAlgorithmError",
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
