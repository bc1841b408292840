"""One error family for the agent, on the project's error base.

Every error says what is wrong in words a person can act on (``diagnostics()``) and maps to a
process exit code: 2 for anything a person must fix in the configuration or the files it
names (systemd's ``RestartPreventExitStatus=2`` keeps such an agent from restarting in a
loop), 1 for failures at run time.
"""

from __future__ import annotations

from provenance.configfile import Problem, describe
from provenance.errors import SensorLedgerError

__all__ = [
    "EXIT_CONFIG",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "AgentError",
    "BrokerError",
    "ConfigError",
    "Problem",
    "SpoolError",
    "SpoolLockedError",
    "SpoolMismatchError",
]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2


class AgentError(SensorLedgerError):
    """Root of every error the agent raises."""

    code = "agent_error"
    exit_code = EXIT_RUNTIME


class ConfigError(AgentError):
    """The configuration (or a file it names) must be fixed before the agent can run."""

    code = "config"
    exit_code = EXIT_CONFIG

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(describe(path, problems))


class SpoolError(AgentError):
    """The spool database cannot be opened or written."""

    code = "spool"


class SpoolLockedError(SpoolError):
    """Another agent process holds the spool; two writers would reuse sequence numbers."""

    code = "spool_locked"


class SpoolMismatchError(SpoolError):
    """The spool belongs to another device id: point ``spool.path`` elsewhere."""

    code = "spool_mismatch"
    exit_code = EXIT_CONFIG


class BrokerError(AgentError):
    """A connection to the MQTT broker failed; the message says why in plain words."""

    code = "broker"
