"""Device drivers: a pure protocol codec per device plus a thin serial / Modbus transport.

The agent needs only this surface: :func:`create` a driver by name from its settings table,
run it in a :class:`RunningDriver` (which builds it, times and guards each ``poll()`` and keeps
the sensor's health), poll at the sensor's interval, ``close()`` at the end. See
``docs/drivers.md`` for every driver, its settings and its emulator.
"""

from .base import Driver, DriverStats, Measurement, Sample, Value
from .errors import HardwareConfigError, HardwareError
from .registry import available, create, register
from .running import RunningDriver, SensorHealth

__all__ = [
    "Driver",
    "DriverStats",
    "HardwareConfigError",
    "HardwareError",
    "Measurement",
    "RunningDriver",
    "Sample",
    "SensorHealth",
    "Value",
    "available",
    "create",
    "register",
]
