"""A small fleet's ledger for the view's tests, built by the real collector over a real broker.

Five devices with the measurements each kind's page plots, a stretch with no data (a gap in
time), a seq skipped without a gap record (an unexplained gap) and a signed gap record (an
explained one), arc events and SenML names chosen to break HTML or JavaScript, and a few
quarantined messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provenance.envelope import sign_reading
from provenance.keys import PrivateKey
from provenance.reading import Gap
from provenance.senml import Measurement
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Device, Ledger, Publisher, now_ms
from tests.support.polling import wait_until

__all__ = ["HOSTILE_EVENT", "HOSTILE_NAMES", "Fleet", "build_fleet"]

HOSTILE_EVENT = "<script>window.__pwned=1</script>\"'><img src=x onerror=alert(1)>‮evil"
HOSTILE_NAMES = ("<script>alert(1)</script>", "\"quote'", "‮rtl-name")
STEP_MS = 10_000


@dataclass
class Fleet:
    ledger: Ledger
    devices: dict[str, Device] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    time_gap: tuple[int, int] = (0, 0)  # water-01 sent nothing in this device-time range
    first_ms: int = 0


def _m(name: str, value: float, unit: str | None) -> Measurement:
    return Measurement(name=name, value=value, unit=unit)


def build_fleet(root: Path, broker: Broker, per_device: int = 240) -> Fleet:
    ledger = Ledger(root).init()
    fleet = Fleet(ledger)
    devs = {name: Device(name) for name in ("water-01", "bms-01", "oxi-01", "arc-01", "lab-7")}
    ledger.enrol(devs.values())
    fleet.devices = devs
    start = now_ms() - (per_device + 40) * STEP_MS
    fleet.first_ms = start
    messages: list[tuple[str, bytes]] = []

    def send(dev: Device, **kw: object) -> None:
        messages.append((dev.topic, dev.next(**kw)))

    water, bms, oxi, arc, lab = (devs[k] for k in ("water-01", "bms-01", "oxi-01", "arc-01",
                                                   "lab-7"))
    gap_lo, gap_hi = start + 100 * STEP_MS, start + 130 * STEP_MS
    fleet.time_gap = (gap_lo, gap_hi)
    for i in range(per_device):
        t = start + i * STEP_MS
        if not gap_lo <= t < gap_hi:
            if i == 150:
                water.seq += 3  # three seqs never sent, never explained
            if i == 180:  # the device dropped two readings and says so
                dropped = water.seq
                water.seq += 2
                send(water, time_ms=t - 1, kind="gap", measurements=(), gap=_gap(dropped))
            send(water, time_ms=t, kind="water-quality", measurements=(
                _m("ph", 7.0 + (i % 20) / 40, "pH"), _m("turbidity", 0.3 + (i % 7) / 10, "NTU"),
                _m("free_chlorine", 0.5 + (i % 11) / 50, "mg/l"),
                _m("temperature", 14 + (i % 30) / 10, "Cel")))
        cells = [3.30 + ((i + c) % 5) / 100 for c in range(4)]
        send(bms, time_ms=t, kind="battery", measurements=(
            _m("state_of_charge", 90 - i / 10, "%EL"), _m("pack_current", -5 + (i % 9), "A"),
            *(_m(f"cell_voltage_{c}", v, "V") for c, v in enumerate(cells))))
        send(oxi, time_ms=t, kind="pulse-oximeter", measurements=(
            _m("spo2", 95 + i % 4, "%"), _m("pulse_rate", 60 + i % 25, "beat/min")))
        send(arc, time_ms=t, kind="arc-detector", measurements=(
            _m("total_current", 10 + (i % 13) / 2, "A"), _m("bus_voltage", 230 + i % 5, "V")))
        if i % 60 == 30:
            send(arc, time_ms=t + 1, kind="arc-detector", measurements=(),
                 event={"type": "arc", "channel": i // 60, "note": HOSTILE_EVENT})
        send(lab, time_ms=t, kind="lab-probe", measurements=tuple(
            _m(name, k + (i % 10) / 10, "V") for k, name in enumerate(HOSTILE_NAMES)))
    # Quarantine: a forged signature, and bytes that are no envelope at all.
    forged = sign_reading(water.reading(time_ms=now_ms() - 1000), PrivateKey.generate())
    messages += [(water.topic, forged), (bms.topic, b"<script>not cbor</script>")]
    fleet.quarantined = 2
    fleet.kinds = {"water-01": "water-quality", "bms-01": "battery", "oxi-01": "pulse-oximeter",
                   "arc-01": "arc-detector", "lab-7": "lab-probe"}
    total = len(messages) - fleet.quarantined
    collector = CollectorProcess(ledger, broker, "--block-size", "200", "--block-age", "0.2",
                                 "--workers", "1")
    with collector, Publisher(broker) as pub:
        pub.publish(messages)
        wait_until(lambda: ledger.sealed() >= total and ledger.count("quarantine") >= 2, 90,
                   0.1, "every reading sealed, the bad messages quarantined")
        assert collector.stop() == 0
    fleet.counts = {d: ledger.sql("SELECT COUNT(*) FROM readings WHERE device_id = ?",
                                  (d,))[0][0] for d in devs}
    assert sum(fleet.counts.values()) == total, (fleet.counts, total)
    assert ledger.sealed() == total
    return fleet


def _gap(first: int) -> Gap:
    return Gap(first, first + 1)
