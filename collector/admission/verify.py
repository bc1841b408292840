"""The reading verifier: the stateless checks every reading meets, on ingest and in the audit.

A :class:`ReadingVerifier` is built once from a registry snapshot and verifies a batch. It
needs only the message, the registry and, on ingest, the collector clock: decode the envelope
(``signed_parts`` reads the shape every device signs straight from its bytes, Sig_structure
included; ``Envelope.decode`` anything else), look the key up by key id, check the ES256
signature under it (``PublicKey.verify``, which is what ``Envelope.verify`` does), parse the reading
with every rule of wire format v1 (``read_head``, as strict as ``Reading.from_payload``:
fields, determinism, no repeated map key), bind topic device = signed device = key's device.
Ingest and audit run these same checks, with the same strictness, in the same code.

Then come the rules that judge a message *as it arrives* (:meth:`ReadingVerifier.admit`): a
high-S signature, a revoked key (:func:`revocation`, the one place that rule is written) and
the future-clock bound. The audit reports the first two as warnings about stored readings,
since a reading stored before a revocation or before the collector refused high-S was
admitted rightly; it has no arrival time to judge the clock by.

Everything that depends on other readings (duplicates, sequence, hash chain) runs afterwards,
in arrival order, in :mod:`collector.admission.checks`.

``verify_batch`` is the unit of work a verification process receives; results are small tuples
because they cross a process boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import NamedTuple, ParamSpec, TypeVar

from collector.admission.reasons import Reason
from collector.admission.registry import DeviceKey, Registry, RegistryFile, RegistrySource
from provenance.envelope import Envelope, SignedParts, signed_parts
from provenance.errors import (
    MalformedError,
    ProvenanceError,
    SignatureError,
    UnsupportedAlgorithmError,
)
from provenance.keys import PublicKey, der_signature, is_low_s
from provenance.merkle import RFC9162_SHA256
from provenance.reading import check_device_id
from provenance.reading_head import ReadingHead, read_head
from provenance.wire import reading_topic, reading_topic_device

__all__ = [
    "Checked",
    "ReadingVerifier",
    "Rejected",
    "Verified",
    "registry_for",
    "revocation",
    "topic_device",
    "verify_batch",
    "verify_message",
]

_make = tuple.__new__
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
    commitment: bytes | None = None  # a private reading's signed commitment


class Rejected(NamedTuple):
    """A message to quarantine. ``device_id``/``seq`` are set only once the signature held."""

    reason: str
    detail: str
    device_id: str | None = None
    seq: int | None = None


Outcome = Verified | Rejected


class Checked(NamedTuple):
    """An envelope whose signature, reading and key binding hold: what ingest admits from
    and the audit compares with the stored row."""

    reading: ReadingHead
    key: DeviceKey
    signature: bytes  # the raw r || s signature that verified

    @property
    def low_s(self) -> bool:
        """True when the signature is in its low-S form (:func:`provenance.keys.is_low_s`)."""
        return is_low_s(self.signature)


def topic_device(topic: str) -> str | None:
    """The device id in ``sensorledger/v1/<device>/reading``, or None if the topic is not one."""
    device = reading_topic_device(topic)
    if device is None:
        return None
    try:
        return check_device_id(device)
    except ProvenanceError:
        return None


def revocation(key: DeviceKey, reading: ReadingHead | Verified) -> Rejected | None:
    """The revocation rule: a reading signed at or after its key's revocation is refused."""
    if not key.revoked_at(reading.time_ms):
        return None
    return Rejected(Reason.REVOKED_KEY,
                    f"key {key.kid.hex()[:16]}… revoked at {key.revoked_ms} ms; reading "
                    f"signed at device time {reading.time_ms} ms", reading.device_id,
                    reading.seq)


class _Opened(NamedTuple):
    """A message whose envelope decoded and whose key is enrolled: ready for the signature.
    ``device`` is the device its topic names (None for a stored reading, which has none);
    ``payload`` is the message as received, ``parts`` what the envelope signs."""

    device: str | None
    payload: bytes
    key: DeviceKey
    public: PublicKey
    parts: SignedParts
    der: bytes  # the signature in DER, as OpenSSL takes it


def _open(registry: Registry, topic: str | None, payload: bytes) -> _Opened | Rejected:
    """Topic, envelope and key lookup: everything before the signature."""
    device = None
    if topic is not None:
        device = topic_device(topic)
        if device is None:
            return Rejected(Reason.BAD_TOPIC,
                            f"topic {topic!r} is not {reading_topic('<device>')}")
    try:
        # The shape every device signs is read from its bytes; anything else is decoded
        # the strict way, which names what is wrong with it.
        parts = signed_parts(payload) or Envelope.decode(payload).parts()
    except UnsupportedAlgorithmError as exc:
        return Rejected(Reason.WRONG_ALGORITHM, exc.diagnostics())
    except MalformedError as exc:
        code = exc.code if exc.code in _DECODE_CODES else Reason.NOT_COSE
        return Rejected(code, exc.diagnostics())
    except Exception as exc:  # hostile bytes must never stop ingest
        return Rejected(Reason.NOT_CBOR, f"decoder failed: {exc!r}")

    entry = registry.lookup(parts[0])
    if entry is None:
        return Rejected(Reason.UNKNOWN_KEY, f"key id {parts[0].hex()} is not enrolled")
    # (tuple.__new__: a NamedTuple's own __new__ is a Python call; these run per reading)
    return _make(_Opened, (device, payload, entry[0], entry[1], parts, der_signature(parts[3])))


def _check_signature(opened: _Opened) -> Rejected | None:
    """The ES256 signature over the envelope's Sig_structure, under the key its kid names (the
    registry is keyed by each key's own id): exactly :meth:`Envelope.verify`, with the DER
    conversion done while opening, so that the signatures run back to back."""
    try:
        opened.public.verify_der(opened.der, opened.parts[2])
    except SignatureError as exc:
        return Rejected(Reason.BAD_SIGNATURE, exc.diagnostics())
    return None


def _check_reading(opened: _Opened) -> Checked | Rejected:
    """The signed payload, and the bindings that need what it says."""
    device, key, parts = opened.device, opened.key, opened.parts
    try:
        reading = read_head(parts[1])
    except ProvenanceError as exc:
        code = exc.code if exc.code in _PAYLOAD_CODES else Reason.BAD_PAYLOAD
        return Rejected(code, exc.diagnostics())
    except Exception as exc:  # a signed but hostile payload is still just input
        return Rejected(Reason.BAD_PAYLOAD, f"payload parser failed: {exc!r}")

    dev = reading.device_id
    if device is not None and dev != device:
        return Rejected(Reason.TOPIC_MISMATCH,
                        f"topic names device {device!r}, the signed reading {dev!r}", dev,
                        reading.seq)
    if key.device_id != dev:
        return Rejected(Reason.DEVICE_KEY_MISMATCH,
                        f"key {key.kid.hex()[:16]}… is enrolled for {key.device_id!r}, "
                        f"envelope signs {dev!r}", dev, reading.seq)
    return _make(Checked, (reading, key, parts[3]))


class ReadingVerifier:
    """The stateless checks of readings against one registry snapshot.

    :meth:`check_batch` runs the checks every reading meets wherever it is read (ingest and
    audit); :meth:`admit` adds the rules for a message arriving now; :meth:`verify_batch`
    is the two together, as ingest runs them.
    """

    __slots__ = ("registry",)

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @property
    def version(self) -> int:
        return self.registry.version

    def check_batch(self, items: Sequence[tuple[str | None, bytes]]) -> list[Checked | Rejected]:
        """Check ``(topic, envelope)`` items (topic None: a stored reading, no topic to bind);
        one result per item, in order.

        Three passes over the batch (open every envelope, check every signature, read every
        payload): the signatures then run back to back with OpenSSL's code and tables in the
        CPU caches, which costs measurably less than interleaving them with the decoding.
        Any exception in a check becomes that message's ``unverifiable`` result, never the
        batch's failure.
        """
        # (``_guarded`` written out inline: three calls fewer per reading.)
        registry = self.registry
        out: list[Checked | Rejected] = [_UNSET] * len(items)
        opened: list[tuple[int, _Opened]] = []
        for index, (topic, payload) in enumerate(items):
            try:
                step = _open(registry, topic, payload)
            except Exception as exc:
                step = _unverifiable(exc)
            if isinstance(step, Rejected):
                out[index] = step
            else:
                opened.append((index, step))
        signed: list[tuple[int, _Opened]] = []
        for index, step in opened:
            try:
                failed = _check_signature(step)
            except Exception as exc:
                failed = _unverifiable(exc)
            if failed is None:
                signed.append((index, step))
            else:
                out[index] = failed
        for index, step in signed:
            try:
                out[index] = _check_reading(step)
            except Exception as exc:
                out[index] = _unverifiable(exc)
        return out

    @staticmethod
    def admit(checked: Checked, payload: bytes, received_ms: int,
              max_future_ms: int) -> Outcome:
        """The rules for a message arriving now, in :data:`REASONS` order, and what the
        writer needs of one that passes."""
        reading = checked.reading
        if not checked.low_s:
            return Rejected(Reason.HIGH_S,
                            "the signature verifies but is in its high-S form (s > n/2); "
                            "anyone can make it from the low-S signature a device sends, "
                            "so it is refused and cannot displace the genuine reading",
                            reading.device_id, reading.seq)
        refused = revocation(checked.key, reading)
        if refused is not None:
            return refused
        if reading.time_ms > received_ms + max_future_ms:
            return Rejected(Reason.CLOCK_SKEW,
                            f"device time {reading.time_ms} ms is "
                            f"{(reading.time_ms - received_ms) / 1000:.1f} s ahead of the "
                            f"collector (limit {max_future_ms / 1000:.1f} s)",
                            reading.device_id, reading.seq)
        gap = (reading.gap.first, reading.gap.last) if reading.gap is not None else None
        return _make(Verified, (  # (Verified's fields, in order)
            reading.device_id, reading.seq, reading.boot, reading.time_ms, reading.prev,
            reading.kind, gap, hashlib.sha256(payload).digest(),
            RFC9162_SHA256.hash_leaf(payload), checked.key.kid, reading.commitment))

    def verify_batch(self, items: Sequence[tuple[str, bytes, int]],
                     max_future_ms: int) -> list[Outcome]:
        """Verify ``(topic, payload, received_ms)`` items as ingest does; one outcome per item,
        in order."""
        checked = self.check_batch([(topic, payload) for topic, payload, _ in items])
        out: list[Outcome] = []
        for (_, payload, received_ms), result in zip(items, checked, strict=True):
            if isinstance(result, Rejected):
                out.append(result)
            else:
                out.append(_guarded(self.admit, result, payload, received_ms, max_future_ms))
        return out


def verify_message(
    registry: Registry, topic: str, payload: bytes, received_ms: int, max_future_ms: int
) -> Outcome:
    """Run the stateless checks on one message, in :data:`collector.admission.reasons.REASONS`
    order."""
    return ReadingVerifier(registry).verify_batch([(topic, payload, received_ms)],
                                                  max_future_ms)[0]


# A verification process keeps the verifier it last built; snapshots carry a version so a
# process rebuilds it (parsing every public key) only when the registry changed.
_verifier: ReadingVerifier | None = None


def verifier_for(source: RegistrySource) -> ReadingVerifier:
    """The verifier for ``source``, built once per registry version in each process."""
    global _verifier
    if _verifier is None or _verifier.version != source.version:
        snapshot = source.load() if isinstance(source, RegistryFile) else source
        _verifier = ReadingVerifier(Registry.from_snapshot(snapshot))
    return _verifier


def registry_for(source: RegistrySource) -> Registry:
    return verifier_for(source).registry


# Placeholder for a batch's outcomes; every slot is overwritten before check_batch returns.
_UNSET = Rejected(Reason.UNVERIFIABLE, "not verified")


def verify_batch(
    registry_source: RegistrySource, items: list[tuple[str, bytes, int]], max_future_ms: int
) -> list[Outcome]:
    """Ingest's work item: :meth:`ReadingVerifier.verify_batch` with the process's verifier
    for ``registry_source``."""
    return verifier_for(registry_source).verify_batch(items, max_future_ms)


def _guarded(check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | Rejected:
    """``check(*args)``, with any exception turned into a quarantine: one message must never
    fail its whole batch (and stop the collector on every re-delivery); it is kept, with what
    went wrong, for investigation."""
    try:
        return check(*args, **kwargs)
    except Exception as exc:
        return _unverifiable(exc)


def _unverifiable(exc: Exception) -> Rejected:
    return Rejected(Reason.UNVERIFIABLE, f"verifier failed: {exc!r}")
