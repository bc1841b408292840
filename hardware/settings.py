"""Typed access to a driver's settings table, with errors a person can act on.

Settings come from the agent's TOML config. Every key a driver reads is checked for type and
range here, by the project's one config reader (:mod:`provenance.configfile`), and keys nobody
read are refused: a misspelt ``baud_rate`` must fail at start-up,
not show up weeks later as a sensor that always times out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provenance.configfile import Problem, Table

from .errors import HardwareConfigError

__all__ = ["AGENT_KEYS", "SerialLine", "Settings"]

#: Keys the agent keeps in a sensor's table for itself; drivers ignore them.
AGENT_KEYS = frozenset({"driver", "name", "interval_s", "poll_interval_s", "enabled"})

_PARITIES = ("N", "E", "O")


class _SettingsTable(Table):
    """The shared reader, worded for driver settings: "setting 'unit' must be in 1..247"."""

    noun = "setting"

    def problem(self, key: str | None, message: str) -> None:
        super().problem(key, f"setting {key!r} {message}" if key is not None else message)

    def range_text(self, low: float | None, high: float | None) -> str:
        return f"in {low}..{high}"


class Settings:
    """Read-once view of one driver's settings; call :meth:`finish` after the last read.

    A wrong value is recorded, not raised: the read returns the default (or a placeholder for
    a required one) so the driver reads on, and :meth:`finish` raises one
    :class:`HardwareConfigError` listing every problem.
    """

    def __init__(self, driver: str, table: Mapping[str, Any]) -> None:
        if not isinstance(table, Mapping):
            raise HardwareConfigError(
                f"{driver}: settings must be a table, got {type(table).__name__}"
            )
        self.driver = driver
        self._table = _SettingsTable(dict(table))
        self._table.used.update(AGENT_KEYS)

    @property
    def problems(self) -> list[Problem]:
        return self._table.problems

    def has(self, key: str) -> bool:
        return self._table.has(key)

    def raw(self, key: str, default: Any = None) -> Any:
        return self._table.get(key, default)

    def _required(self, key: str, kind: str) -> bool:
        """Whether ``key`` is absent (and so reported as required)."""
        if self._table.get(key) is None:
            self._table.problem(key, f"is required ({kind})")
            return True
        return False

    def text(self, key: str, default: str | None = None) -> str:
        if default is None and self._required(key, "text"):
            return ""
        return self._table.text(key, default) or default or ""

    def integer(
        self, key: str, default: int | None = None, *, low: int | None = None,
        high: int | None = None,
    ) -> int:
        fallback = default if default is not None else (low if low is not None else 0)
        if default is None and self._required(key, "integer"):
            return fallback
        return self._table.integer(key, fallback, low=low, high=high)

    def number(
        self, key: str, default: float | None = None, *, low: float | None = None,
        high: float | None = None,
    ) -> float:
        fallback = default if default is not None else (low if low is not None else 0.0)
        if default is None and self._required(key, "number"):
            return float(fallback)
        return self._table.number(key, float(fallback), low=low, high=high)

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        if default is None and self._required(key, "text"):
            return choices[0]
        return self._table.choice(key, choices, default or choices[0])

    def serial_line(
        self, *, baudrate: int, parity: str = "N", stopbits: int = 1, timeout_s: float = 0.5
    ) -> SerialLine:
        """The common ``port`` / ``baudrate`` / ``parity`` / ``stopbits`` / ``timeout_s`` keys."""
        return SerialLine(
            port=self.text("port"),
            baudrate=self.integer("baudrate", baudrate, low=300, high=4_000_000),
            parity=self.choice("parity", _PARITIES, parity),
            stopbits=self.integer("stopbits", stopbits, low=1, high=2),
            timeout_s=self.number("timeout_s", timeout_s, low=0.001, high=60.0),
        )

    def error(self, cause: HardwareConfigError | None = None) -> HardwareConfigError:
        """Every problem recorded so far (and ``cause``'s) as one error."""
        problems = list(self.problems)
        if cause is not None:
            problems += cause.problems or [Problem("", str(cause).removeprefix(
                f"{self.driver}: "))]
        return HardwareConfigError.listing(self.driver, problems)

    def finish(self) -> None:
        """Raise every problem found, and refuse keys that no setting read; call once the
        driver has read its settings."""
        unknown = sorted(self._table.unread())
        if unknown:
            known = sorted(self._table.used - AGENT_KEYS)
            self.problems.append(Problem(unknown[0], (
                f"unknown setting(s) {', '.join(map(repr, unknown))}; this driver reads "
                f"{', '.join(known)}{self._table.suggestion(unknown[0])}")))
        if self.problems:
            raise self.error()


@dataclass(frozen=True, slots=True)
class SerialLine:
    """How to open a serial port: path and line settings."""

    port: str
    baudrate: int
    parity: str
    stopbits: int
    timeout_s: float
