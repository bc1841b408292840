"""Device drivers: a pure protocol codec per device plus a thin serial / Modbus transport.

The agent needs only this surface: :func:`create` a driver by name from its settings table,
call ``poll()`` at the sensor's interval, read ``stats``, ``close()`` at the end. See
``docs/drivers.md`` for every driver, its settings and its emulator.
"""

from .base import Driver, DriverStats, Measurement, Sample, Value
from .errors import HardwareConfigError, HardwareError
from .registry import available, create, register

__all__ = [
    "Driver",
    "DriverStats",
    "HardwareConfigError",
    "HardwareError",
    "Measurement",
    "Sample",
    "Value",
    "available",
    "create",
    "register",
]
