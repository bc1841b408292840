"""A 1,000,000-reading ledger for the audit and proof benchmarks, built once and cached.

Draining a million readings through MQTT would cost minutes and measure nothing new (the ingest
benchmark does that). So the readings are signed as real device chains (bench.backlog), then
written through the collector's own store interface and sealed by its own ``Sealer`` into
1,000-reading format 2 blocks of the one log tree, each with its signed checkpoint, as
``ledger-collector run`` would with its default settings. The result
is a ledger ``ledger-collector audit`` accepts; the audit benchmark checks that it does.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cbor2

from collector.ledger.logkeys import load_tree_log
from collector.ledger.records import BatchWrite, DeviceState, PendingLeaf, ReadingRecord
from collector.ledger.sealer import Sealer
from collector.ledger.sqlite_schema import MIGRATIONS
from collector.ledger.sqlite_store import SQLiteStore
from provenance.keyfile import load_private_key
from provenance.merkle import RFC9162_SHA256

from .backlog import CACHE_FORMAT, Backlog, build_backlog
from .ledger import LedgerFiles, enrol, init_ledger

__all__ = ["BigLedger", "cached_ledger"]

_BLOCK_SIZE = 1000  # the collector's default blocks.size
_COMMIT = 10_000
# Payload labels of wire format v1.
_SEQ, _BOOT, _TIME, _KIND = 3, 4, 5, 8


@dataclass(frozen=True, slots=True)
class BigLedger:
    files: LedgerFiles
    readings: int
    devices: tuple[str, ...]
    readings_per_device: int
    envelope_bytes: int  # sum of envelope lengths
    build_seconds: float
    cached: bool


def _marker(directory: Path) -> Path:
    return directory / "complete.cbor"


def cached_ledger(cache_dir: Path, devices: int, readings: int) -> BigLedger:
    """The cached ledger of this size, or a new one (about 1.5 minutes for a million)."""
    schema = MIGRATIONS[-1][0]
    directory = cache_dir / f"ledger-d{devices}-n{readings}-schema{schema}-sig{CACHE_FORMAT}-log"
    marker = _marker(directory)
    if marker.exists():
        info = cbor2.loads(marker.read_bytes())
        return BigLedger(LedgerFiles(directory / "ledger.db", directory / "collector-key.pem"),
                         info["readings"], tuple(info["devices"]), info["per_device"],
                         info["envelope_bytes"], info["build_seconds"], cached=True)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    start = time.perf_counter()
    backlog = build_backlog(devices, readings)
    files = init_ledger(directory)
    enrol(files.db, [(d.device_id, d.public) for d in backlog.devices])
    asyncio.run(_write(files, backlog))
    seconds = time.perf_counter() - start
    ids = tuple(d.device_id for d in backlog.devices)
    info = {"readings": len(backlog), "devices": list(ids), "per_device": readings // devices,
            "envelope_bytes": backlog.envelope_bytes, "build_seconds": round(seconds, 1)}
    marker.write_bytes(cbor2.dumps(info))
    return BigLedger(files, len(backlog), ids, readings // devices, backlog.envelope_bytes,
                     seconds, cached=False)


async def _write(files: LedgerFiles, backlog: Backlog) -> None:
    key = load_private_key(files.key)
    store = await SQLiteStore.open(files.db)
    try:
        # Format 2 blocks growing the one log tree, each with its checkpoint, as the collector
        # seals them.
        sealer = Sealer(key, await store.last_block(), [], size=_BLOCK_SIZE, age_ms=1000,
                        log=await load_tree_log(store, key, str(files.key)))
        next_id = await store.next_reading_id()
        states: dict[str, DeviceState] = {}
        device_ids = [d.device_id for d in backlog.devices]
        envelopes = backlog.envelopes
        for offset in range(0, len(envelopes), _COMMIT):
            now_ms = time.time_ns() // 1_000_000
            batch = BatchWrite()
            leaves = []
            for index, raw in envelopes[offset:offset + _COMMIT]:
                device_id = device_ids[index]
                # The envelope is COSE_Sign1 [protected, {}, payload, signature] under tag 18.
                body = cbor2.loads(cbor2.loads(raw).value[2])
                seq, boot, time_ms, kind = body[_SEQ], body[_BOOT], body[_TIME], body[_KIND]
                batch.readings.append(ReadingRecord(next_id, device_id, seq, boot, time_ms,
                                                    now_ms, kind, raw))
                leaves.append(PendingLeaf(next_id, RFC9162_SHA256.hash_leaf(raw), time_ms,
                                          now_ms))
                state = states.get(device_id)
                if state is None:
                    state = states[device_id] = DeviceState(
                        device_id, seq, seq, b"", boot, time_ms, now_ms)
                state.last_seq, state.last_time_ms, state.last_received_ms = seq, time_ms, now_ms
                state.last_hash = hashlib.sha256(raw).digest()
                state.accepted += 1
                next_id += 1
            batch.devices = list(states.values())
            await store.commit_batch(batch)
            sealer.add(leaves)
            while len(sealer.pending) >= _BLOCK_SIZE or (
                    offset + _COMMIT >= len(envelopes) and sealer.pending):
                block = sealer.seal(time.time_ns() // 1_000_000)
                await store.commit_block(block)
                sealer.sealed(block)
    finally:
        await store.close()
