"""Receipts: what the collector tells a device's agent about its readings, signed.

A PUBACK only says the broker took a message. A receipt says what the *ledger* did with the
device's readings (docs/wire-format.md, "Receipts"):

* ``sealed_through`` — the highest seq S such that every seq 0..S of the device is either a
  reading sealed into the log tree or stated as dropped by a signed gap record the ledger
  holds. Seqs count up across boots (the agent persists them), so the mark is per device.
  Absent while seq 0 itself is not covered.
* ``tree_size`` — the size of the log tree when the receipt was made; every reading the
  receipt states as sealed is a leaf below it, so the checkpoint of that size (or any later
  one) includes it.
* ``sealed`` — seq ranges above ``sealed_through`` that are sealed too (readings sealed after
  a hole, e.g. one still missing or refused).
* ``refused`` — seq ranges the collector quarantined since its last receipt, with the reason
  code. A refusal of a single seq may carry the SHA-256 of the refused message, so the agent
  lets go of a reading only when it refused exactly those bytes.

The collector signs each receipt with its P-256 key as a COSE_Sign1 whose protected header
also holds a content type (label 3) that no reading or block header has; a receipt therefore
never verifies as either, and neither as a receipt. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from . import cbor
from .envelope import CoseSign1, to_be_signed
from .errors import MalformedError
from .keys import KID_SIZE, PrivateKey, PublicKey
from .reading import MAX_SEQ, check_device_id
from .wire import (
    ALG_ES256,
    COSE_SIGN1_TAG,
    HDR_ALG,
    HDR_CONTENT_TYPE,
    HDR_KID,
    RECEIPT_CONTENT_TYPE,
    RECEIPT_FORMAT_VERSION,
)
from .wire import ReceiptLabel as L

__all__ = ["RETRY_REASONS", "Receipt", "Refusal", "SeqRange", "SignedReceipt", "seq_ranges"]

#: Refusal reasons that may pass later: a key enrolled after its device started publishing
#: (``unknown_key``), a device clock ahead of the collector's (``clock_skew``: the signed time
#: stays, the collector's clock catches up). An agent keeps such readings and publishes them
#: again. Every other refusal is final; the collector keeps the refused bytes in its
#: quarantine as evidence, so the agent may let go of the reading.
RETRY_REASONS: frozenset[str] = frozenset({"unknown_key", "clock_skew"})

_DIGEST_SIZE = 32
_KEYS = frozenset({L.VERSION, L.DEVICE, L.TIME, L.TREE_SIZE, L.SEALED_THROUGH, L.SEALED,
                   L.REFUSED})


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Seqs ``first..last`` inclusive."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last <= MAX_SEQ:
            raise MalformedError(f"seq range {self.first}..{self.last} is not 0 <= first <= "
                                 f"last <= {MAX_SEQ}", code="bad_receipt")

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self.first <= seq <= self.last


@dataclass(frozen=True, slots=True)
class Refusal:
    """Seqs ``first..last`` were quarantined under ``reason``; ``digest`` (single seq only)
    is the SHA-256 of the refused message."""

    first: int
    last: int
    reason: str
    digest: bytes | None = None

    def __post_init__(self) -> None:
        SeqRange(self.first, self.last)
        if not self.reason or not self.reason.isascii() or len(self.reason) > 64:
            raise MalformedError(f"refusal reason {self.reason!r} is not a reason code",
                                 code="bad_receipt")
        if self.digest is not None and (len(self.digest) != _DIGEST_SIZE
                                        or self.first != self.last):
            raise MalformedError("a refusal digest is 32 bytes and names a single seq",
                                 code="bad_receipt")


def seq_ranges(seqs: Iterable[int]) -> tuple[SeqRange, ...]:
    """Sorted, merged ranges covering exactly ``seqs``."""
    out: list[SeqRange] = []
    first = last = -2
    for seq in sorted(set(seqs)):
        if seq == last + 1:
            last = seq
            continue
        if last >= 0:
            out.append(SeqRange(first, last))
        first = last = seq
    if last >= 0:
        out.append(SeqRange(first, last))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Receipt:
    device_id: str
    time_ms: int
    tree_size: int
    sealed_through: int | None = None
    sealed: tuple[SeqRange, ...] = ()
    refused: tuple[Refusal, ...] = ()

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if self.time_ms < 0 or self.tree_size < 0:
            raise MalformedError("receipt time and tree size are unsigned", code="bad_receipt")
        if self.sealed_through is not None and not 0 <= self.sealed_through <= MAX_SEQ:
            raise MalformedError(f"sealed_through {self.sealed_through} out of range",
                                 code="bad_receipt")

    def covers(self, seq: int) -> bool:
        """True when the receipt states ``seq`` as sealed (or dropped by a gap record)."""
        if self.sealed_through is not None and seq <= self.sealed_through:
            return True
        return any(seq in r for r in self.sealed)

    def to_payload(self) -> bytes:
        body: dict[int, Any] = {
            L.VERSION: RECEIPT_FORMAT_VERSION, L.DEVICE: self.device_id, L.TIME: self.time_ms,
            L.TREE_SIZE: self.tree_size,
        }
        if self.sealed_through is not None:
            body[L.SEALED_THROUGH] = self.sealed_through
        if self.sealed:
            body[L.SEALED] = [[r.first, r.last] for r in self.sealed]
        if self.refused:
            body[L.REFUSED] = [[r.first, r.last, r.reason]
                               + ([r.digest] if r.digest is not None else [])
                               for r in self.refused]
        return cbor.encode(body)

    @classmethod
    def from_payload(cls, payload: bytes) -> Receipt:
        body = cbor.decode(payload, what="receipt")
        if not isinstance(body, dict) or not set(body) <= _KEYS:
            raise MalformedError("a receipt is a map with labels 1..7", code="bad_receipt")
        if body.get(L.VERSION) != RECEIPT_FORMAT_VERSION:
            raise MalformedError(f"receipt version {body.get(L.VERSION)!r} is not "
                                 f"{RECEIPT_FORMAT_VERSION}", code="bad_receipt")
        try:
            receipt = cls(
                device_id=_typed(body.get(L.DEVICE), str, "device id"),
                time_ms=_typed(body.get(L.TIME), int, "time"),
                tree_size=_typed(body.get(L.TREE_SIZE), int, "tree size"),
                sealed_through=(None if L.SEALED_THROUGH not in body
                                else _typed(body[L.SEALED_THROUGH], int, "sealed_through")),
                sealed=tuple(SeqRange(*_items(r, (int, int), "sealed range"))
                             for r in _list(body, L.SEALED, "sealed")),
                refused=tuple(_refusal(r) for r in _list(body, L.REFUSED, "refused")),
            )
        except MalformedError:
            raise
        except Exception as exc:  # a check_device_id ProvenanceError et al.
            raise MalformedError(f"receipt: {exc}", code="bad_receipt") from None
        if receipt.to_payload() != payload:
            raise MalformedError("receipt is not deterministically encoded",
                                 code="bad_receipt")
        return receipt


def _typed(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedError(f"receipt {what} must be {kind.__name__}", code="bad_receipt")
    return value


def _list(body: dict[Any, Any], label: int, what: str) -> list[Any]:
    """The array at ``label``: absent means none; present means at least one entry."""
    if label not in body:
        return []
    value = body[label]
    if not isinstance(value, list) or not value:
        raise MalformedError(f"receipt {what} must be a non-empty array", code="bad_receipt")
    return value


def _items(value: Any, kinds: Sequence[type], what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != len(kinds):
        raise MalformedError(f"receipt {what} must be an array of {len(kinds)}",
                             code="bad_receipt")
    return [_typed(v, k, what) for v, k in zip(value, kinds, strict=True)]


def _refusal(value: Any) -> Refusal:
    if isinstance(value, list) and len(value) == 4:
        first, last, reason, digest = _items(value, (int, int, str, bytes), "refusal")
        return Refusal(first, last, reason, digest)
    first, last, reason = _items(value, (int, int, str), "refusal")
    return Refusal(first, last, reason)


def _protected(kid: bytes) -> bytes:
    return cbor.encode({HDR_ALG: ALG_ES256, HDR_CONTENT_TYPE: RECEIPT_CONTENT_TYPE,
                        HDR_KID: kid})


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    """A receipt as the collector signed it: the bytes on the wire, and what they say."""

    raw: bytes
    receipt: Receipt
    kid: bytes
    _message: CoseSign1

    @classmethod
    def sign(cls, receipt: Receipt, key: PrivateKey) -> SignedReceipt:
        protected = _protected(key.kid)
        payload = receipt.to_payload()
        signature = key.sign(to_be_signed(protected, payload))
        raw = cbor.encode(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
        header = {HDR_ALG: ALG_ES256, HDR_CONTENT_TYPE: RECEIPT_CONTENT_TYPE, HDR_KID: key.kid}
        return cls(raw, receipt, key.kid,
                   CoseSign1(raw, protected, header, {}, payload, signature, True))

    @classmethod
    def decode(cls, raw: bytes) -> SignedReceipt:
        """Parse (signature not checked: call :meth:`verify` with the collector's key)."""
        message = CoseSign1.decode(raw)
        kid = message.protected_header.get(HDR_KID)
        if (not message.tagged or message.unprotected_header
                or not isinstance(kid, bytes) or len(kid) != KID_SIZE
                or message.protected != _protected(kid)):
            raise MalformedError("not a SensorLedger receipt (tagged COSE_Sign1 with protected "
                                 "header {1: -7, 3: receipt content type, 4: kid})",
                                 code="bad_receipt")
        return cls(raw, Receipt.from_payload(message.payload), kid, message)

    def verify(self, collector_key: PublicKey) -> None:
        """Raise unless the collector key ``collector_key`` signed this receipt."""
        self._message.verify(collector_key)
