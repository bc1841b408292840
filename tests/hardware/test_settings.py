"""Driver settings: every wrong setting reported at once, through the registry."""

from __future__ import annotations

import pytest

from hardware.errors import HardwareConfigError
from hardware.registry import create


def test_every_wrong_setting_is_reported_at_once() -> None:
    with pytest.raises(HardwareConfigError) as caught:
        create("jbd-bms", {"baudrate": "fast", "parity": "X", "retrys": 3, "timeout_s": 99})
    assert [p.key for p in caught.value.problems] == [
        "port", "baudrate", "parity", "timeout_s", "retrys"]
    assert str(caught.value).splitlines() == [
        "jbd-bms: setting 'port' is required (text)",
        "jbd-bms: setting 'baudrate' must be an integer, got 'fast'",
        "jbd-bms: setting 'parity' must be one of N, E, O; got 'X'",
        "jbd-bms: setting 'timeout_s' must be in 0.001..60.0, got 99",
        "jbd-bms: unknown setting(s) 'retrys'; this driver reads baudrate, counters_interval_s, "
        "parity, port, retries, stopbits, timeout_s; did you mean 'retries'?",
    ]


def test_a_factory_refusal_and_the_settings_problems_read_before_it_come_together() -> None:
    with pytest.raises(HardwareConfigError) as caught:
        create("modbus-water", {"port": 7, "unit": 0, "profile": "supmea-ph8001"})
    assert str(caught.value).splitlines() == [
        "modbus-water: setting 'port' must be non-empty text, got 7",
        "modbus-water: setting 'unit' must be in 1..247, got 0",
    ]
    with pytest.raises(HardwareConfigError) as caught:
        create("modbus-water", {"port": "/dev/x", "profile": "ph-9000"})
    assert str(caught.value).startswith("modbus-water: unknown profile 'ph-9000'; built-in")
    assert "modbus-water: modbus-water" not in str(caught.value)


def test_good_settings_build_a_driver() -> None:
    create("jbd-bms", {"port": "/dev/x", "retries": 3}).close()
