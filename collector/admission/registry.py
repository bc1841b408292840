"""The device registry: which public key belongs to which device, and since when it is revoked.

A device may hold several keys over its life (rotation); each key is enrolled for exactly one
device. Revocation has an effective time: a reading whose signed device time is at or after it
is refused (``revoked_key``); readings signed before it stay valid, because an agent may deliver
a spool backlog long after signing. To refuse a key's readings at once, revoke with an effective
time in the past.

A :class:`RegistrySnapshot` is the registry as bytes plus a version number, so verification
processes can be handed the registry with each batch and rebuild it only when it changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from cryptography.exceptions import UnsupportedAlgorithm

from collector.errors import NotFoundError, RegistryError
from provenance import cbor
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.reading import check_device_id

__all__ = [
    "DeviceKey",
    "Enrolment",
    "Registry",
    "RegistryFile",
    "RegistrySnapshot",
    "RegistrySource",
    "check_enrolment_device_id",
    "enrolled_again",
    "parse_enrolment_text",
    "revocation",
]


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One enrolled device public key."""

    kid: bytes
    device_id: str
    public_key_der: bytes
    enrolled_ms: int
    revoked_ms: int | None = None
    revoke_reason: str | None = None

    def revoked_at(self, time_ms: int) -> bool:
        """True when a reading signed at device time ``time_ms`` falls under the revocation."""
        return self.revoked_ms is not None and time_ms >= self.revoked_ms


def enrolled_again(known: DeviceKey, device_id: str) -> DeviceKey:
    """Enrolling for ``device_id`` a key the registry already holds as ``known``: the same
    enrolment, returned as it is (safe to run again); :class:`RegistryError` when the key
    belongs to another device or was revoked (a revoked key is never enrolled again)."""
    kid = known.kid.hex()
    if known.device_id != device_id:
        raise RegistryError(f"key {kid} is already enrolled for device {known.device_id!r}")
    if known.revoked_ms is not None:
        raise RegistryError(f"key {kid} of {device_id!r} was revoked; a revoked key is not "
                            "enrolled again: give the device a new key")
    return known


def revocation(device_id: str, kid: bytes | None, found: Sequence[DeviceKey], at_ms: int,
               reason: str | None) -> list[DeviceKey]:
    """What revoking ``device_id``'s keys (or its key ``kid``) from ``at_ms`` changes, given
    the keys a store ``found`` for it: the keys still live at ``at_ms`` (not revoked, or
    revoked later), as they are once revoked. A key revoked earlier keeps its earlier time.
    :class:`NotFoundError` when the store found none."""
    if not found:
        raise NotFoundError(f"device {device_id!r} has no enrolled key {kid.hex()}" if kid
                            else f"device {device_id!r} has no enrolled key")
    return [replace(k, revoked_ms=at_ms, revoke_reason=reason) for k in found
            if k.revoked_ms is None or k.revoked_ms > at_ms]


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """The registry at one version, serialised for verification workers."""

    version: int
    blob: bytes

    @classmethod
    def of(cls, version: int, keys: Iterable[DeviceKey]) -> RegistrySnapshot:
        rows = [[k.kid, k.device_id, k.public_key_der, k.revoked_ms] for k in keys]
        return cls(version, cbor.encode(rows))

    def keys(self) -> list[DeviceKey]:
        rows = cbor.decode(self.blob, what="registry snapshot")
        return [DeviceKey(kid=r[0], device_id=r[1], public_key_der=r[2], enrolled_ms=0,
                          revoked_ms=r[3]) for r in rows]


@dataclass(frozen=True, slots=True)
class RegistryFile:
    """A snapshot written to a file, named in work items instead of carried by each of them."""

    version: int
    path: str

    def load(self) -> RegistrySnapshot:
        with open(self.path, "rb") as f:
            return RegistrySnapshot(self.version, f.read())


RegistrySource = RegistrySnapshot | RegistryFile


class Registry:
    """Device keys by key id, with the parsed public keys ready for verification."""

    __slots__ = ("_by_kid", "version")

    def __init__(self, version: int, keys: Iterable[DeviceKey]) -> None:
        self.version = version
        # Keyed by the id computed from the key itself, never by a stored id column.
        self._by_kid: dict[bytes, tuple[DeviceKey, PublicKey]] = {}
        for k in keys:
            public = PublicKey.from_der(k.public_key_der)
            self._by_kid[public.kid] = (k, public)

    @classmethod
    def from_snapshot(cls, snapshot: RegistrySnapshot) -> Registry:
        return cls(snapshot.version, snapshot.keys())

    def lookup(self, kid: bytes) -> tuple[DeviceKey, PublicKey] | None:
        return self._by_kid.get(kid)

    def __len__(self) -> int:
        return len(self._by_kid)


_PEM_BLOCK = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+?-----END PUBLIC KEY-----"
)
_KID_LINE = re.compile(r"(?i)\b(?:kid|key[ _-]?id)\b[^0-9a-f]{0,8}([0-9a-f]{64})\b")


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A public key read from enrolment text, and the device id printed with it, if any."""

    key: PublicKey
    device_id: str | None = None


def parse_enrolment_text(text: str, *, expected_kid: str | None = None) -> Enrolment:
    """The public key in what ``sensor-agent pubkey`` prints (or any PEM public key file).

    Accepts a bare PEM ``PUBLIC KEY`` block, the same followed by a ``key id: <hex>`` line,
    or the JSON object of ``sensor-agent pubkey --json`` (``device_id``, ``kid``, ``pem``).
    A key id printed beside the key, and ``expected_kid`` if given, must equal the SHA-256 of
    the key: that catches a key pasted for the wrong device or damaged in transit.
    """
    pem_text = text
    device_id: str | None = None
    kids = [expected_kid] if expected_kid else []
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, Mapping):
            pem_text = "\n".join(str(v) for v in obj.values() if isinstance(v, str))
            kids += [obj[n] for n in ("kid", "key_id") if isinstance(obj.get(n), str)]
            if isinstance(obj.get("device_id"), str):
                device_id = obj["device_id"]
    blocks = _PEM_BLOCK.findall(pem_text)
    if not blocks:
        raise RegistryError("no PEM public key (-----BEGIN PUBLIC KEY-----) in the input")
    if len(blocks) > 1:
        raise RegistryError("the input holds more than one public key; enrol one at a time")
    try:
        key = PublicKey.from_pem(blocks[0])
    except ProvenanceError as exc:
        raise RegistryError(f"not a P-256 public key: {exc.diagnostics()}") from None
    except UnsupportedAlgorithm as exc:  # not converted by the core (see collector.tools.proofs)
        raise RegistryError(f"not a P-256 public key: {exc}") from None
    kids += _KID_LINE.findall(pem_text.replace(blocks[0], ""))
    for kid in kids:
        if kid.lower() != key.kid_hex:
            raise RegistryError(
                f"key id {kid} given with the key does not match the key's own id "
                f"{key.kid_hex}; check that the key belongs to this device"
            )
    return Enrolment(key, device_id)


def check_enrolment_device_id(device_id: str) -> str:
    try:
        return check_device_id(device_id)
    except ProvenanceError as exc:
        raise RegistryError(exc.diagnostics()) from None
