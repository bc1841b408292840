"""Drivers by name, so an agent config can say ``driver = "jbd-bms"``.

Usage::

    driver = create("jbd-bms", {"port": "/dev/ttyUSB0"})

A driver module registers its factory with :func:`register`; the factory receives a
:class:`~hardware.settings.Settings` view and must read every key it accepts, after which
unknown keys are refused.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .base import Driver
from .errors import HardwareConfigError
from .settings import Settings

__all__ = ["available", "create", "register"]

Factory = Callable[[Settings], Driver]
F = TypeVar("F", bound=Factory)

_FACTORIES: dict[str, Factory] = {}

# The module whose import registers each built-in driver. Imported on demand: the registry
# must be importable by the driver modules themselves, and an agent with one BMS should not
# load pymodbus (a few MB on a Raspberry Pi) for drivers it does not use.
_BUILTIN_MODULES = {
    "modbus-water": "hardware.water",
    "jbd-bms": "hardware.jbd",
    "contec-oximeter": "hardware.contec",
    "arc-monitor": "hardware.arc",
    "self-signing-serial": "hardware.self_signing",
}


def register(name: str) -> Callable[[F], F]:
    """Class or function decorator: make ``name`` resolve to this driver factory."""

    def decorate(factory: F) -> F:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"driver name {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return decorate


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES.values():
        importlib.import_module(module)


def available() -> list[str]:
    """Names of all registered drivers, sorted."""
    _load_builtins()
    return sorted(_FACTORIES)


def create(name: str, settings: Mapping[str, Any]) -> Driver:
    """Build the driver called ``name`` from its settings table.

    Raises :class:`HardwareConfigError` for an unknown name, or listing every missing or
    mistyped setting and every setting no driver reads. A device that is absent or silent is
    *not* an error here: the driver starts and counts the fault at each poll until it answers.
    """
    if name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    factory = _FACTORIES.get(name)
    if factory is None:
        _load_builtins()  # to list every name in the message
        raise HardwareConfigError(
            f"unknown driver {name!r}; available drivers: {', '.join(sorted(_FACTORIES))}"
        )
    view = Settings(name, settings)
    try:
        driver = factory(view)
    except HardwareConfigError as exc:
        raise view.error(exc) from None
    except Exception:
        if view.problems:  # a factory given placeholders for wrong settings may fail on them
            raise view.error() from None
        raise
    try:
        view.finish()
    except HardwareConfigError:
        driver.close()
        raise
    return driver
