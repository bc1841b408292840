"""The audit's worker side: the reading verifier's checks on a block's stored envelopes.

A verification process imports this module only (not the audit's main side), runs
:func:`audit_envelopes` on each batch it is sent, and returns one small tuple per envelope.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from collector.admission.reasons import Reason
from collector.admission.registry import RegistrySource
from collector.admission.verify import Rejected, verifier_for
from provenance.keys import is_low_s
from provenance.statement import is_statement

__all__ = ["AUDIT_CHECKS", "Result", "audit_envelopes", "cycle_collection_paused"]

#: The audit check under which each reason the reading verifier gives is reported. The
#: verifier is ingest's own (:class:`collector.admission.verify.ReadingVerifier`), so a stored
#: reading is held to exactly the rules it was admitted by.
AUDIT_CHECKS: dict[str, str] = {
    Reason.NOT_CBOR: "envelope",
    Reason.NOT_COSE: "envelope",
    Reason.BAD_KID: "envelope",
    Reason.WRONG_ALGORITHM: "envelope",
    Reason.UNKNOWN_KEY: "device key",
    Reason.BAD_SIGNATURE: "device signature",
    Reason.BAD_PAYLOAD: "payload",
    Reason.BAD_VERSION: "payload",
    Reason.NOT_DETERMINISTIC: "payload",
    Reason.DEVICE_KEY_MISMATCH: "device key binding",
    Reason.UNVERIFIABLE: "verifier",
}
_HIGH_S = "high_s"

# What a worker sends back for each envelope, as a plain tuple (a NamedTuple pickles about six
# times slower): what it signs, (device_id, seq, boot, time_ms, kind, prev, revoked by then),
# with "high_s" appended when its signature is in the high-S form; or why it failed,
# (check, detail).
Result = tuple[Any, ...]


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """The cycle collector off for the block (as it was, after): the audit makes several
    tuples per reading and keeps thousands alive at a time, none in a cycle, and the collector
    would otherwise walk them again and again (0.6-0.9 us a reading in each process).
    Reference counting still frees everything; cycles made meanwhile wait for the next
    collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def audit_envelopes(registry_source: RegistrySource, envelopes: list[bytes]) -> list[Result]:
    """Worker side: the reading verifier's checks on each stored envelope; the signed fields,
    or the failure under its audit check name."""
    with cycle_collection_paused():
        return _audit_envelopes(registry_source, envelopes)


def _audit_envelopes(registry_source: RegistrySource, envelopes: list[bytes]) -> list[Result]:
    verifier = verifier_for(registry_source)
    out: list[Result] = []
    append = out.append
    # Collector statements are checked in the main process, with the collector key.
    statements = [i for i, raw in enumerate(envelopes) if is_statement(raw)]
    if statements:
        envelopes = [raw for raw in envelopes if not is_statement(raw)]
    # One object per device id and kind in the batch: each then crosses the pipe once (the
    # pickler refers back to an object it has sent), and arrives as one object.
    names: dict[str, str] = {}
    name = names.setdefault
    for result in verifier.check_batch([(None, raw) for raw in envelopes]):
        if isinstance(result, Rejected):
            append((AUDIT_CHECKS.get(result.reason, result.reason), result.detail))
            continue
        (device_id, seq, boot, time_ms, prev, kind, _, _), key, signature = result
        revoked_ms = key.revoked_ms  # (DeviceKey.revoked_at, inline)
        signed = (name(device_id, device_id), seq, boot, time_ms, name(kind, kind), prev,
                  revoked_ms is not None and time_ms >= revoked_ms)
        append(signed if is_low_s(signature) else (*signed, _HIGH_S))
    for i in statements:
        out.insert(i, _STATEMENT)
    return out


_STATEMENT: Result = ("statement",)
