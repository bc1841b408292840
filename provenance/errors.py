"""One error family for the provenance core.

Every error carries a short machine-readable ``code`` (used as a quarantine reason and in
verification reports) and a sentence a person can act on (``diagnostics()``).
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Root of every error raised by provenance."""

    code = "provenance_error"

    def diagnostics(self) -> str:
        """A sentence that says what is wrong and, where possible, what to do about it."""
        return str(self) or self.__class__.__doc__ or self.code


class MalformedError(ProvenanceError):
    """Bytes that do not parse as the structure they claim to be."""

    code = "malformed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


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
