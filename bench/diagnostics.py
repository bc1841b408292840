"""Where the CPU goes: the collector's per-reading work timed on one core, and a process's
memory split by mapping. These explain the headline figures; they are not targets.

The per-reading timings call the collector's own worker functions (``verify_batch`` for
ingest, ``audit_envelopes`` for audit) in this process on the backlog's envelopes, so they show
the cost of one reading's stateless work with no pipeline, IPC or contention around it. They
use internal functions: if those change shape, the diagnostic is left out (with a note), and the
benchmark itself still runs.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backlog import Backlog, topic_for

if TYPE_CHECKING:
    from collector.admission.registry import Registry, RegistrySnapshot

__all__ = [
    "audit_us_per_reading",
    "memory_by_mapping",
    "reading_costs_us",
    "verify_message_us_per_reading",
]


def _registry_parts(backlog: Backlog) -> tuple[Registry, RegistrySnapshot]:
    from collector.admission.registry import DeviceKey, Registry, RegistrySnapshot

    keys = [DeviceKey(d.public.kid, d.device_id, d.public.der, 0) for d in backlog.devices]
    return Registry(1, keys), RegistrySnapshot.of(1, keys)


def verify_message_us_per_reading(backlog: Backlog, sample: int) -> float | None:
    """Median-of-3 µs per reading of the ingest worker's stateless checks, on one core, in
    batches of the collector's default size (``verify_batch``, as a worker runs them)."""
    try:
        from collector.admission.verify import verify_batch
        from collector.config import IngestConfig

        _, snapshot = _registry_parts(backlog)
        now_ms = time.time_ns() // 1_000_000
        items = [(topic_for(backlog.devices[i].device_id), raw, now_ms)
                 for i, raw in backlog.envelopes[:sample]]
        size = IngestConfig().verify_batch
        batches = [items[i:i + size] for i in range(0, len(items), size)]
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            for batch in batches:
                verify_batch(snapshot, batch, 300_000)
            runs.append((time.perf_counter() - start) / len(items) * 1e6)
        return sorted(runs)[1]
    except (ImportError, TypeError, AttributeError):
        return None


def audit_us_per_reading(backlog: Backlog, sample: int) -> float | None:
    """Median-of-3 µs per reading of the audit worker's decode + verify, on one core."""
    try:
        from collector.tools.audit import audit_envelopes

        _, snapshot = _registry_parts(backlog)
        envelopes = [raw for _, raw in backlog.envelopes[:sample]]
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            audit_envelopes(snapshot, envelopes)
            runs.append((time.perf_counter() - start) / len(envelopes) * 1e6)
        return sorted(runs)[1]
    except (ImportError, TypeError, AttributeError):
        return None


def _median_us(fn: Callable[[Any], object], items: Sequence[Any]) -> float:
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - start) / len(items) * 1e6)
    return round(sorted(runs)[1], 2)


def reading_costs_us(backlog: Backlog, sample: int) -> dict[str, float]:
    """µs per reading, one core, of the provenance steps a verifier runs on every envelope."""
    from provenance import cbor
    from provenance.envelope import Envelope
    from provenance.reading import Reading

    raws = [raw for _, raw in backlog.envelopes[:sample]]
    keys = {d.public.kid: d.public for d in backlog.devices}
    envelopes = [Envelope.decode(raw) for raw in raws]
    payloads = [e.payload for e in envelopes]
    bodies = [cbor.decode(p, what="payload") for p in payloads]
    return {
        "Envelope.decode": _median_us(Envelope.decode, raws),
        "Envelope.verify (ES256 + Sig_structure)": _median_us(
            lambda e: e.verify(keys[e.kid]), envelopes),
        "Reading.from_payload": _median_us(Reading.from_payload, payloads),
        "of which CBOR decode": _median_us(lambda p: cbor.decode(p, what="payload"), payloads),
        "of which deterministic re-encode": _median_us(cbor.encode, bodies),
    }


def memory_by_mapping(pid: int, top: int = 6) -> dict[str, int]:
    """Resident kB by mapping (anonymous, heap, and the largest files) from /proc/PID/smaps."""
    rss: collections.Counter[str] = collections.Counter()
    current = "[anon]"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            current = Path(fields[5]).name if len(fields) > 5 and "/" in fields[5] else (
                fields[5] if len(fields) > 5 else "[anon]")
        elif fields and fields[0] == "Rss:":
            rss[current] += int(fields[1])
    out = {name: kb for name, kb in rss.most_common(top)}
    out["(all)"] = sum(rss.values())
    return out
