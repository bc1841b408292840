"""One error family for the collector, on the project's error base.

Every error has a machine-readable ``code`` and a ``diagnostics()`` sentence a person can act
on. The CLI maps :class:`UsageError` subclasses to exit code 2 and :class:`VerificationFailed`
to exit code 1; errors from sqlite3, paho and the provenance core are converted at the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

from provenance.configfile import Problem
from provenance.errors import SensorLedgerError


class CollectorError(SensorLedgerError):
    """Root of every error raised by the collector."""

    code = "collector_error"


class UsageError(CollectorError):
    """The command or its configuration cannot be carried out as given (exit code 2)."""

    code = "usage"


class ConfigError(UsageError):
    """The configuration file or a flag has a missing, unknown or invalid value.

    ``problems`` lists each one (with its line) when they come from reading the config file.
    """

    code = "config"

    def __init__(self, message: str = "", *, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class NotFoundError(UsageError):
    """A device, reading or block asked for does not exist (or is not sealed yet)."""

    code = "not_found"


class RegistryError(UsageError):
    """A device key cannot be enrolled or revoked as asked."""

    code = "registry"


class StoreError(CollectorError):
    """The ledger database cannot be opened, migrated or written."""

    code = "store"


class VerificationFailed(CollectorError):
    """An audit or proof check found the ledger or a proof file broken (exit code 1)."""

    code = "verification_failed"
