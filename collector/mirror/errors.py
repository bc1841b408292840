"""What goes wrong when mirroring a log."""

from __future__ import annotations

from collector.errors import CollectorError, VerificationFailed

__all__ = ["FetchError", "ForkError", "MirrorError"]


class MirrorError(VerificationFailed):
    """What the log served does not verify; nothing of it was kept (exit code 1)."""

    code = "mirror_verification"


class ForkError(MirrorError):
    """The log signed a checkpoint that does not extend the one the mirror holds: two
    histories. The evidence (both signed checkpoints) is kept."""

    code = "fork"

    def __init__(self, message: str, evidence: str | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


class FetchError(CollectorError):
    """The log could not be fetched (network, HTTP status); try again later."""

    code = "fetch"
