"""The witness's error family, on the project's one base."""

from __future__ import annotations

from provenance.errors import SensorLedgerError

__all__ = ["WitnessConfigError", "WitnessError", "WitnessStateError"]


class WitnessError(SensorLedgerError):
    """Root of the errors the witness raises."""

    code = "witness_error"


class WitnessConfigError(WitnessError):
    """The witness's configuration or key file is not usable."""

    code = "witness_config"


class WitnessStateError(WitnessError):
    """The witness's state database cannot be read or written."""

    code = "witness_state"
