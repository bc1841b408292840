"""``python -m bench.agent_synthetic run -c agent.toml``: the real agent, plus one test driver.

The maximum-rate benchmark must measure the agent's sign + spool + publish path, not a serial
line, so this entry point registers ``bench-synthetic`` — a driver whose ``poll`` returns a
batch of water-quality samples at once — and then runs the unchanged ``sensor-agent`` CLI.
"""

from __future__ import annotations

from hardware.base import DriverStats, Measurement, Sample
from hardware.registry import register
from hardware.settings import Settings

__all__ = ["SyntheticDriver"]


class SyntheticDriver:
    name = "bench-synthetic"
    kind = "water-quality"

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.stats = DriverStats()
        self._n = 0

    def poll(self) -> list[Sample]:
        out = []
        for _ in range(self.batch):
            n = self._n = self._n + 1
            # The same five probe values as the ingest backlog, so envelopes are the same size.
            out.append(Sample(self.kind, (
                Measurement(name="ph", value=round(7.0 + (n % 50) / 100, 2), unit="pH"),
                Measurement(name="turbidity", value=round(0.2 + (n % 7) / 10, 2), unit="NTU"),
                Measurement(name="chlorine", value=round(0.5 + (n % 11) / 100, 2), unit="mg/l"),
                Measurement(name="conductivity", value=480 + n % 40, unit="uS/cm"),
                Measurement(name="temperature", value=round(12.0 + (n % 30) / 10, 1), unit="Cel"),
            )))
        self.stats.polls += 1
        self.stats.samples += len(out)
        self.stats.frames_ok += 1
        return out

    def close(self) -> None:
        pass


@register("bench-synthetic")
def _factory(settings: Settings) -> SyntheticDriver:
    return SyntheticDriver(settings.integer("batch", 100, low=1, high=10_000))


if __name__ == "__main__":
    from agent.cli import main

    main()
