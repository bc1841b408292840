"""Stateless checks of one message: the part of ingest that runs in parallel on every core.

``verify_message`` needs only the message, the registry and the collector clock: decode the
envelope, look the key up by key id, check the ES256 signature, parse the reading, bind topic
device = signed device = key's device, apply revocation and the future-clock bound. Everything
that depends on other readings (duplicates, sequence, hash chain) runs afterwards, in arrival
order, in :mod:`collector.admission.checks`.

``verify_batch`` is the unit of work a verification process receives; results are small tuples
because they cross a process boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple, ParamSpec, TypeVar

from collector.admission.reasons import Reason
from collector.admission.registry import DeviceKey, Registry, RegistryFile, RegistrySource
from provenance.envelope import Envelope, to_be_signed
from provenance.errors import (
    MalformedError,
    ProvenanceError,
    SignatureError,
    UnsupportedAlgorithmError,
)
from provenance.keys import PublicKey
from provenance.merkle import RFC9162_SHA256
from provenance.reading import check_device_id

__all__ = [
    "Rejected",
    "Verified",
    "topic_device",
    "verify_batch",
    "verify_message",
]

TOPIC_PREFIX = "sensorledger/v1/"
TOPIC_SUFFIX = "/reading"
_DECODE_CODES = frozenset({Reason.NOT_CBOR, Reason.NOT_COSE, Reason.BAD_KID})
_PAYLOAD_CODES = frozenset({Reason.BAD_VERSION, Reason.NOT_DETERMINISTIC})
P = ParamSpec("P")
T = TypeVar("T")


class Verified(NamedTuple):
    """A message that passed every stateless check."""

    device_id: str
    seq: int
    boot: int
    time_ms: int
    prev: bytes
    kind: str
    gap: tuple[int, int] | None
    envelope_hash: bytes
    leaf_hash: bytes
    kid: bytes


class Rejected(NamedTuple):
    """A message to quarantine. ``device_id``/``seq`` are set only once the signature held."""

    reason: str
    detail: str
    device_id: str | None = None
    seq: int | None = None


Outcome = Verified | Rejected


def topic_device(topic: str) -> str | None:
    """The device id in ``sensorledger/v1/<device>/reading``, or None if the topic is not one."""
    if not (topic.startswith(TOPIC_PREFIX) and topic.endswith(TOPIC_SUFFIX)):
        return None
    device = topic[len(TOPIC_PREFIX):-len(TOPIC_SUFFIX)]
    try:
        return check_device_id(device)
    except ProvenanceError:
        return None


class _Opened(NamedTuple):
    """A message whose envelope decoded and whose key is enrolled: ready for the signature."""

    device: str
    payload: bytes
    envelope: Envelope
    key: DeviceKey
    public: PublicKey


def _open(registry: Registry, topic: str, payload: bytes) -> _Opened | Rejected:
    """Topic, envelope and key lookup: everything before the signature."""
    device = topic_device(topic)
    if device is None:
        return Rejected(Reason.BAD_TOPIC,
                        f"topic {topic!r} is not sensorledger/v1/<device>/reading")
    try:
        envelope = Envelope.decode(payload)
    except UnsupportedAlgorithmError as exc:
        return Rejected(Reason.WRONG_ALGORITHM, exc.diagnostics())
    except MalformedError as exc:
        code = exc.code if exc.code in _DECODE_CODES else Reason.NOT_COSE
        return Rejected(code, exc.diagnostics())
    except Exception as exc:  # hostile bytes must never stop ingest
        return Rejected(Reason.NOT_CBOR, f"decoder failed: {exc!r}")

    entry = registry.lookup(envelope.kid)
    if entry is None:
        return Rejected(Reason.UNKNOWN_KEY, f"key id {envelope.kid.hex()} is not enrolled")
    return _Opened(device, payload, envelope, *entry)


def _check_signature(opened: _Opened) -> Rejected | None:
    # Envelope.verify() minus what decode and the lookup by kid already established (alg is
    # ES256, kid names this key).
    message = opened.envelope.message
    try:
        opened.public.verify(message.signature, to_be_signed(message.protected, message.payload))
    except SignatureError as exc:
        return Rejected(Reason.BAD_SIGNATURE, exc.diagnostics())
    return None


def _check_reading(opened: _Opened, received_ms: int, max_future_ms: int) -> Outcome:
    """The signed payload, and the checks that need what it says."""
    device, payload, envelope, key = opened.device, opened.payload, opened.envelope, opened.key
    try:
        reading = envelope.reading()
    except ProvenanceError as exc:
        code = exc.code if exc.code in _PAYLOAD_CODES else Reason.BAD_PAYLOAD
        return Rejected(code, exc.diagnostics())
    except Exception as exc:  # a signed but hostile payload is still just input
        return Rejected(Reason.BAD_PAYLOAD, f"payload parser failed: {exc!r}")

    dev, seq = reading.device_id, reading.seq
    if dev != device:
        return Rejected(Reason.TOPIC_MISMATCH,
                        f"topic names device {device!r}, the signed reading {dev!r}", dev, seq)
    if key.device_id != dev:
        return Rejected(Reason.DEVICE_KEY_MISMATCH,
                        f"key {key.kid.hex()[:16]}… is enrolled for {key.device_id!r}, "
                        f"not {dev!r}", dev, seq)
    if key.revoked_at(reading.time_ms):
        return Rejected(Reason.REVOKED_KEY,
                        f"key {key.kid.hex()[:16]}… revoked at {key.revoked_ms} ms; reading "
                        f"signed at device time {reading.time_ms} ms", dev, seq)
    if reading.time_ms > received_ms + max_future_ms:
        return Rejected(Reason.CLOCK_SKEW,
                        f"device time {reading.time_ms} ms is "
                        f"{(reading.time_ms - received_ms) / 1000:.1f} s ahead of the collector "
                        f"(limit {max_future_ms / 1000:.1f} s)", dev, seq)
    gap = (reading.gap.first, reading.gap.last) if reading.gap is not None else None
    return Verified(
        device_id=dev,
        seq=seq,
        boot=reading.boot,
        time_ms=reading.time_ms,
        prev=reading.prev,
        kind=reading.kind,
        gap=gap,
        envelope_hash=hashlib.sha256(payload).digest(),
        leaf_hash=RFC9162_SHA256.hash_leaf(payload),
        kid=key.kid,
    )


def verify_message(
    registry: Registry, topic: str, payload: bytes, received_ms: int, max_future_ms: int
) -> Outcome:
    """Run the stateless checks in :data:`collector.admission.reasons.REASONS` order."""
    opened = _open(registry, topic, payload)
    if isinstance(opened, Rejected):
        return opened
    return _check_signature(opened) or _check_reading(opened, received_ms, max_future_ms)


# A verification process keeps the registry it last built; snapshots carry a version so a
# process rebuilds it (parsing every public key) only when the registry changed.
_registry: Registry | None = None


def registry_for(source: RegistrySource) -> Registry:
    global _registry
    if _registry is None or _registry.version != source.version:
        snapshot = source.load() if isinstance(source, RegistryFile) else source
        _registry = Registry.from_snapshot(snapshot)
    return _registry


# Placeholder for a batch's outcomes; every slot is overwritten before verify_batch returns.
_UNSET = Rejected(Reason.UNVERIFIABLE, "not verified")


def verify_batch(
    registry_source: RegistrySource, items: list[tuple[str, bytes, int]], max_future_ms: int
) -> list[Outcome]:
    """Verify ``(topic, payload, received_ms)`` items; one outcome per item, in order.

    The same checks as :func:`verify_message`, in three passes over the batch (open every
    envelope, check every signature, read every payload): the signatures then run back to back
    with OpenSSL's code and tables in the CPU caches, which costs measurably less than
    interleaving them with the decoding.
    """
    registry = registry_for(registry_source)
    out: list[Outcome] = [_UNSET] * len(items)
    opened: list[tuple[int, _Opened]] = []
    for index, (topic, payload, _) in enumerate(items):
        step = _guarded(_open, registry, topic, payload)
        if isinstance(step, Rejected):
            out[index] = step
        else:
            opened.append((index, step))
    signed: list[tuple[int, _Opened]] = []
    for index, step in opened:
        failed = _guarded(_check_signature, step)
        if failed is None:
            signed.append((index, step))
        else:
            out[index] = failed
    for index, step in signed:
        out[index] = _guarded(_check_reading, step, items[index][2], max_future_ms)
    return out



def _guarded(check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | Rejected:
    """``check(*args)``, with any exception turned into a quarantine: one message must never
    fail its whole batch (and stop the collector on every re-delivery); it is kept, with what
    went wrong, for investigation."""
    try:
        return check(*args, **kwargs)
    except Exception as exc:
        return Rejected(Reason.UNVERIFIABLE, f"verifier failed: {exc!r}")
