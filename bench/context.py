"""What the benchmarks of one run share: sizes, directories, the backlog, earlier results."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .backlog import Backlog, load_or_build_backlog
from .queued import queued_snapshot
from .results import BenchResult

__all__ = ["RunContext", "Sizes", "collector_mqtt", "sessions"]


def collector_mqtt() -> tuple[bool, int]:
    """(MQTT 5?, Receive Maximum) as ``ledger-collector run`` connects by default.

    The baseline copies them, so both consumers get the same broker window.
    """
    from collector.config import MqttConfig

    config = MqttConfig()
    return config.protocol == "5", config.receive_maximum


def sessions() -> dict[str, tuple[str, bool]]:
    """One persistent session per backlog consumer, all filled by one publish of the backlog:
    consumer -> (client id, MQTT 5?), each made with the protocol its consumer will use."""
    mqtt5, _ = collector_mqtt()
    return {
        "mosquitto-sub": ("bench-mosquitto-sub", False),
        "baseline-receipt": ("bench-baseline-receipt", mqtt5),
        "baseline-commit": ("bench-baseline-commit", mqtt5),
        "collector": ("bench-collector", mqtt5),
    }


@dataclass(frozen=True, slots=True)
class Sizes:
    """Problem sizes. ``full`` is what the issue's targets are stated for."""

    name: str
    devices: int
    readings: int
    verify_sample: int
    verify_rounds: int
    drain_repeats: int  # backlog drains per consumer; the median is quoted
    live_devices: int
    live_rate: int  # readings/s offered
    live_seconds: float
    audit_readings: int
    proof_samples: int
    log_proof_sizes: tuple[int, ...]  # one-log proofs: log tree sizes
    agent_idle_seconds: float
    agent_readings: int

    @classmethod
    def full(cls) -> Sizes:
        return cls("full", devices=100, readings=100_000, verify_sample=20_000, verify_rounds=5,
                   drain_repeats=3,
                   live_devices=100, live_rate=5000, live_seconds=60.0,
                   audit_readings=1_000_000, proof_samples=200,
                   log_proof_sizes=(1_000_000, 10_000_000),
                   agent_idle_seconds=60.0, agent_readings=100_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls("quick", devices=20, readings=10_000, verify_sample=5000, verify_rounds=3,
                   drain_repeats=2,
                   live_devices=20, live_rate=1000, live_seconds=10.0,
                   audit_readings=50_000, proof_samples=50,
                   log_proof_sizes=(100_000, 1_000_000),
                   agent_idle_seconds=10.0, agent_readings=10_000)

    @classmethod
    def tiny(cls) -> Sizes:
        """For the smoke test: every code path, in seconds."""
        return cls("tiny", devices=4, readings=200, verify_sample=100, verify_rounds=1,
                   drain_repeats=1,
                   live_devices=4, live_rate=100, live_seconds=2.0,
                   audit_readings=500, proof_samples=5,
                   log_proof_sizes=(3_000,),
                   agent_idle_seconds=2.0, agent_readings=300)


@dataclass
class RunContext:
    workdir: Path
    sizes: Sizes
    results: dict[str, BenchResult] = field(default_factory=dict)
    _backlog: Backlog | None = None
    _snapshot: Path | None = None
    backlog_cached: bool = False

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    def scratch(self, name: str) -> Path:
        """An empty directory for one benchmark's databases, broker and logs."""
        path = self.workdir / "run" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def backlog(self) -> Backlog:
        if self._backlog is None:
            self._backlog, self.backlog_cached = load_or_build_backlog(
                self.cache_dir, self.sizes.devices, self.sizes.readings
            )
        return self._backlog

    def snapshot(self) -> Path:
        """The broker database with the backlog queued for every consumer's session."""
        if self._snapshot is None:
            self._snapshot = queued_snapshot(self.cache_dir, self.backlog(),
                                             list(sessions().values()))
        return self._snapshot

    def figure(self, bench: str, key: str) -> float:
        """A figure measured earlier in this run (benchmarks declare what they need)."""
        if bench not in self.results or self.results[bench].error:
            raise RuntimeError(f"needs {bench!r} from the same run, which did not complete")
        return self.results[bench].value(key)
