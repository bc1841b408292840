"""One-log proofs at 10^6 and 10^7 readings: inclusion proof size and generation time, the
verify time, and the cost of a consistency proof, set against what per-block proofs need.

Signing and verifying ten million readings would take hours and measures nothing a proof
depends on: a proof reads O(log n) tree nodes and one reading. So each size is a real ledger
whose log tree holds ``size`` leaves, where a few hundred leaves, drawn at random (fixed seed),
are real signed readings stored with their device key, and every other leaf is a synthetic
leaf hash. The tree is stored exactly as the collector stores it (tiles of height 8), and the
checkpoint is signed with real keys, so the proofs are real proof files that ``verify-proof``
passes.

What a per-block (format 1) proof needs to reach the same head is counted, not built: the
block's own proof plus every block header after it (the only way to link block N to a later
head without one tree), at the size of a real signed format 1 header measured here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from collector.ledger.records import BatchWrite, CheckpointRecord, ReadingRecord
from collector.ledger.sqlite_store import SQLiteStore
from collector.tools.proofs import build_consistency, build_log_proof
from provenance.block import BlockHeader, SignedBlock
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.compact import CompactRange
from provenance.envelope import sign_reading
from provenance.keys import PrivateKey
from provenance.logproof import decode_log_proof, verify_log_proof
from provenance.merkle import RFC9162_SHA256, consistency_nodes, verify_consistency
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner, parse_verifier_key
from provenance.reading import GENESIS_PREV
from provenance.trust import TrustPolicy

from .backlog import water_reading
from .context import RunContext
from .ledger import collector_cli
from .results import BenchResult

__all__ = ["run_log_proofs"]

ORIGIN = "bench.sensorledger.example/log-proofs"
_SECONDS_A_YEAR = 365 * 24 * 3600
_CHUNK = 1 << 20
_PROCESS_RUNS = 5


@dataclass(frozen=True, slots=True)
class _Skeleton:
    db: Path
    size: int
    picks: tuple[tuple[str, int], ...]  # (device, seq) of the real readings
    vkeys: tuple[str, ...]
    pem: bytes  # the collector's public key


def _synthetic(index: int) -> bytes:
    return hashlib.sha256(b"bench-leaf" + index.to_bytes(8, "big")).digest()


async def _build(db: Path, size: int, samples: int) -> _Skeleton:
    """A ledger whose log tree has ``size`` leaves, ``samples`` of them real readings."""
    rng = random.Random(size)
    positions = sorted(rng.sample(range(size), samples))
    collector = PrivateKey.generate()
    note_key = Ed25519NoteSigner.generate(ORIGIN)
    signers = [note_key, EcdsaNoteSigner(ORIGIN, collector)]
    store = await SQLiteStore.open(db, create=True)
    try:
        await store.set_log_identity(ORIGIN, [s.verifier.vkey for s in signers])
        await store.set_collector_public_key(collector.public)
        device_key = PrivateKey.generate()
        await store.enrol("bench-probe", device_key.public, 0)
        real: dict[int, bytes] = {}
        rows: list[ReadingRecord] = []
        for seq, index in enumerate(positions):
            reading = water_reading("bench-probe", seq, GENESIS_PREV, 1_700_000_000_000 + seq)
            envelope = sign_reading(reading, device_key)
            real[index] = RFC9162_SHA256.hash_leaf(envelope)
            rows.append(ReadingRecord(index + 1, "bench-probe", seq, 1, reading.time_ms,
                                      reading.time_ms, reading.kind, envelope))
        await store.commit_batch(BatchWrite(readings=rows))
        tree = CompactRange()
        for begin in range(0, size, _CHUNK):
            end = min(size, begin + _CHUNK)
            nodes = tree.append(real.get(i) or _synthetic(i) for i in range(begin, end))
            await store.commit_tree(nodes, end)
        root = tree.root()
        note = sign_checkpoint(Checkpoint(ORIGIN, size, root), signers)
        await store.commit_checkpoint(CheckpointRecord(size, root, note, None, 0))
    finally:
        await store.close()
    return _Skeleton(db, size, tuple(("bench-probe", s) for s in range(samples)),
                     tuple(s.verifier.vkey for s in signers), collector.public.to_pem().encode())


def _format1_header_bytes() -> int:
    """The size of a real signed format 1 block header (what each block adds to a chain)."""
    key = PrivateKey.generate()
    header = BlockHeader(height=31_536_000, prev_hash=bytes(range(32)),
                         merkle_root=bytes(32), leaf_count=1000,
                         first_time_ms=1_700_000_000_000, last_time_ms=1_700_000_001_000,
                         sealed_at_ms=1_700_000_001_500, collector_kid=key.kid)
    return len(SignedBlock.seal(header, key).raw)


async def _measure(sk: _Skeleton, out: Path) -> dict[str, float]:
    store = await SQLiteStore.open(sk.db)
    build_ms: list[float] = []
    verify_ms: list[float] = []
    sizes: list[int] = []
    paths: list[int] = []
    policy = TrustPolicy(tuple(parse_verifier_key(v) for v in sk.vkeys))
    try:
        for device_id, seq in sk.picks:
            start = time.perf_counter()
            data = (await build_log_proof(store, device_id, seq)).encode()
            build_ms.append((time.perf_counter() - start) * 1000)
            sizes.append(len(data))
            paths.append(len(decode_log_proof(data).audit_path))
            start = time.perf_counter()
            report = verify_log_proof(data, policy)
            verify_ms.append((time.perf_counter() - start) * 1000)
            if not report.ok:
                raise RuntimeError(f"a generated proof does not verify:\n{report.render()}")
        out.write_bytes(data)
        half = sk.size // 2
        start = time.perf_counter()
        cp, proof = await build_consistency(store, half, None)
        consistency_ms = (time.perf_counter() - start) * 1000
        old_root = await store.tree_root(half)
        verify_consistency(half, cp.size, old_root, cp.root, proof)
    finally:
        await store.close()
    return {
        "build_median_ms": statistics.median(build_ms),
        "verify_median_ms": statistics.median(verify_ms),
        "proof_bytes_median": statistics.median(sizes),
        "path_hashes_median": statistics.median(paths),
        "consistency_ms": consistency_ms,
        "consistency_hashes": len(proof),
    }


def _process_verify(sk: _Skeleton, proof: Path) -> float:
    argv = [*collector_cli(), "verify-proof", str(proof)]
    for vkey in sk.vkeys:
        argv += ["--vkey", vkey]
    walls = []
    for _ in range(_PROCESS_RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def run_log_proofs(ctx: RunContext) -> BenchResult:
    result = BenchResult("log-proofs", "one-log proofs at 10^6 and 10^7 readings")
    sizes = ctx.sizes.log_proof_sizes
    samples = ctx.sizes.proof_samples
    header_bytes = _format1_header_bytes()
    params: dict[str, object] = {"format1_header_bytes": header_bytes, "samples": samples}
    for size in sizes:
        db = ctx.cache_dir / f"log-proofs-{size}-s{samples}-v1" / "ledger.db"
        meta = db.with_suffix(".built")
        if not meta.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            db.unlink(missing_ok=True)
            start = time.perf_counter()
            sk = asyncio.run(_build(db, size, samples))
            meta.write_text(json.dumps({"vkeys": sk.vkeys, "pem": sk.pem.decode(),
                                        "seconds": time.perf_counter() - start}))
        built = json.loads(meta.read_text())
        built_s = built["seconds"]
        sk = _Skeleton(db, size, tuple(("bench-probe", s) for s in range(samples)),
                       tuple(built["vkeys"]), built["pem"].encode())
        proof = ctx.scratch(f"log-proofs-{size}") / "reading.proof"
        figures = asyncio.run(_measure(sk, proof))
        label = f"{size:,}"
        result.add(f"build_ms_{size}", f"inclusion proof generation, median, n={label}",
                   figures["build_median_ms"], "ms")
        result.add(f"bytes_{size}", f"proof file size, median, n={label}",
                   figures["proof_bytes_median"], "B")
        result.add(f"verify_ms_{size}", f"proof check in-process, median, n={label}",
                   figures["verify_median_ms"], "ms")
        result.add(f"verify_process_s_{size}", f"verify-proof whole process, median, "
                   f"n={label}", _process_verify(sk, proof), "s")
        result.add(f"consistency_ms_{size}", f"consistency proof n/2 -> n, generation, "
                   f"n={label}", figures["consistency_ms"], "ms")
        # A per-block proof of a reading in the first block, linked to the same head: its
        # headers after it, at 1,000 readings a block.
        chain = (size // 1000 - 1) * header_bytes
        result.add(f"format1_chain_bytes_{size}", f"per-block proof's header chain to the "
                   f"head, n={label} (1,000-reading blocks)", chain, "B")
        params[f"n{size}"] = {"path_hashes_median": figures["path_hashes_median"],
                              "consistency_hashes": figures["consistency_hashes"],
                              "tree_build_seconds": round(built_s, 1)}
    # A year of 1 s blocks between two checkpoints: 31,536,000 blocks. One tree: one
    # consistency proof of at most 2·log2(n) hashes; per-block: every header in between.
    for per_block in (10, 100):
        new = 2 * _SECONDS_A_YEAR * per_block
        old = new - _SECONDS_A_YEAR * per_block
        hashes = len(consistency_nodes(old, new))
        result.add(f"year_consistency_bytes_{per_block}", f"consistency proof a year of 1 s "
                   f"blocks apart ({per_block} readings/block)", hashes * 32, "B")
    result.add("year_format1_chain_bytes", "per-block header chain for the same year",
               _SECONDS_A_YEAR * header_bytes, "B")
    result.params = params
    return result
