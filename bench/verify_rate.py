"""The yardstick: pyca/cryptography's raw ES256 verify rate on one core, over our own envelopes.

Everything that can be done before the clock starts is: envelopes decoded, Sig_structures built,
signatures converted to DER, keys loaded. What is timed is the bare OpenSSL call in a tight loop
on one thread, which is the ceiling a single-threaded verifier could approach.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from provenance.envelope import Envelope

from .backlog import Backlog

__all__ = ["VerifyRate", "measure_verify_rate"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class VerifyRate:
    per_s: float  # median over the rounds
    rounds: tuple[float, ...]
    verifies_per_round: int


def measure_verify_rate(backlog: Backlog, *, sample: int = 20_000, rounds: int = 5) -> VerifyRate:
    """Median verifies/s over ``rounds`` passes of ``sample`` envelopes from the backlog."""
    keys = [d.public.key for d in backlog.devices]
    jobs: list[tuple[ec.EllipticCurvePublicKey, bytes, bytes]] = []
    for index, raw in backlog.envelopes[:sample]:
        msg = Envelope.decode(raw).message
        r = int.from_bytes(msg.signature[:32], "big")
        s = int.from_bytes(msg.signature[32:], "big")
        jobs.append((keys[index], encode_dss_signature(r, s), msg.to_be_signed()))
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for key, signature, tbs in jobs:
            key.verify(signature, tbs, _ECDSA_SHA256)
        rates.append(len(jobs) / (time.perf_counter() - start))
    return VerifyRate(statistics.median(rates), tuple(rates), len(jobs))
