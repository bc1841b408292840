"""The oximeter window summary (pure)."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware.contec_protocol import RealTime
from hardware.oximetry import OximetryWindow, median_low, summarise


@given(st.lists(st.integers(0, 255) | st.floats(0, 20, allow_nan=False), min_size=1))
def test_median_low_is_the_standard_librarys(values: list[float]) -> None:
    assert median_low(values) == statistics.median_low(values)


def test_median_low_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        median_low([])


def sample(spo2: int | None, pulse: int | None, *, finger_out: bool = False) -> RealTime:
    return RealTime(signal=6, pleth=40, bar=3, spo2=spo2, pulse_rate=pulse, pi_percent=2.5,
                    finger_out=finger_out, searching=False)


def test_a_window_reports_the_lower_median_and_range_of_valid_samples_only() -> None:
    window = [sample(97, 70), sample(95, 74), sample(99, 72), sample(96, 71),
              sample(None, None, finger_out=True)]
    got = {m.name: m.value for m in summarise(window)}
    assert got["spo2"] == 96 and got["spo2_min"] == 95 and got["spo2_max"] == 99
    assert got["pulse_rate"] == 71 and got["pulse_rate_max"] == 74
    assert got["valid_samples"] == 4 and got["samples"] == 5 and got["finger_out"] is True


def test_a_window_without_a_valid_sample_carries_no_values() -> None:
    got = {m.name for m in summarise([sample(None, None, finger_out=True)] * 3)}
    assert "spo2" not in got and "pulse_rate" not in got and "samples" in got


def test_the_window_yields_every_size_samples() -> None:
    window = OximetryWindow(3)
    assert window.add(sample(97, 70)) is None and window.add(sample(97, 70)) is None
    summary = window.add(sample(97, 70))
    assert summary is not None and window.add(sample(97, 70)) is None
