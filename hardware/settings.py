"""Typed access to a driver's settings table, with errors a person can act on.

Settings come from the agent's TOML config. Every key a driver reads is checked for type and
range here, and keys nobody read are refused: a misspelt ``baud_rate`` must fail at start-up,
not show up weeks later as a sensor that always times out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import HardwareConfigError

__all__ = ["AGENT_KEYS", "SerialLine", "Settings"]

#: Keys the agent keeps in a sensor's table for itself; drivers ignore them.
AGENT_KEYS = frozenset({"driver", "name", "interval_s", "poll_interval_s", "enabled"})

_PARITIES = ("N", "E", "O")


class Settings:
    """Read-once view of one driver's settings; call :meth:`finish` after the last read."""

    def __init__(self, driver: str, table: Mapping[str, Any]) -> None:
        if not isinstance(table, Mapping):
            raise HardwareConfigError(
                f"{driver}: settings must be a table, got {type(table).__name__}"
            )
        self.driver = driver
        self._table = dict(table)
        self._read: set[str] = set(AGENT_KEYS)

    def _error(self, key: str, problem: str) -> HardwareConfigError:
        return HardwareConfigError(f"{self.driver}: setting {key!r} {problem}")

    def has(self, key: str) -> bool:
        return key in self._table

    def raw(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self._table.get(key, default)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key, default)
        if value is None:
            raise self._error(key, "is required (text)")
        if not isinstance(value, str) or not value:
            raise self._error(key, f"must be non-empty text, got {value!r}")
        return value

    def integer(
        self, key: str, default: int | None = None, *, low: int | None = None,
        high: int | None = None,
    ) -> int:
        value = self.raw(key, default)
        if value is None:
            raise self._error(key, "is required (integer)")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(key, f"must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._error(key, f"must be in {low}..{high}, got {value}")
        return value

    def number(
        self, key: str, default: float | None = None, *, low: float | None = None,
        high: float | None = None,
    ) -> float:
        value = self.raw(key, default)
        if value is None:
            raise self._error(key, "is required (number)")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"must be a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._error(key, f"must be in {low}..{high}, got {value}")
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self._error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

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

    def finish(self) -> None:
        """Refuse keys that no setting read; call once the driver has read its settings."""
        unknown = sorted(set(self._table) - self._read)
        if unknown:
            known = sorted(self._read - AGENT_KEYS)
            raise HardwareConfigError(
                f"{self.driver}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"this driver reads {', '.join(known)}"
            )


@dataclass(frozen=True, slots=True)
class SerialLine:
    """How to open a serial port: path and line settings."""

    port: str
    baudrate: int
    parity: str
    stopbits: int
    timeout_s: float
