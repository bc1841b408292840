"""The erasure record: a collector-signed statement that a subject's sealed values were destroyed.

Payload (deterministic CBOR, text keys as collector statements use)::

    {"v": 1, "type": "erase", "time": ms, "authority": tstr,
     "readings": [* [device id, seq]], "keys": [* data key id]}

It names the readings whose values were erased (device id and seq are public anyway) and the
data keys whose grants were destroyed, and never the subject: the record outlives the data,
and a subject's name in it would be personal data that can no longer be erased. Signed as a
COSE_Sign1 by the collector's key; verifiable with its public key alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import cbor
from .envelope import Envelope, sign
from .errors import MalformedError
from .keys import PrivateKey, PublicKey

__all__ = ["ERASE", "ErasureRecord", "sign_erasure", "verify_erasure"]

ERASE = "erase"
_KEYS = frozenset({"v", "type", "time", "authority", "readings", "keys"})


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    time_ms: int
    authority: str
    readings: tuple[tuple[str, int], ...]
    keys: tuple[bytes, ...]

    def to_payload(self) -> bytes:
        return cbor.encode({"v": 1, "type": ERASE, "time": self.time_ms,
                            "authority": self.authority,
                            "readings": [list(r) for r in self.readings],
                            "keys": list(self.keys)})

    @classmethod
    def from_payload(cls, payload: bytes) -> ErasureRecord:
        body: Any = cbor.decode(payload, what="erasure record")
        if not isinstance(body, dict) or set(body) != _KEYS or body["type"] != ERASE:
            raise MalformedError("not an erasure record", code="bad_erasure")
        try:
            readings = tuple((str(d), int(s)) for d, s in body["readings"])
            keys = tuple(bytes(k) for k in body["keys"])
            return cls(int(body["time"]), str(body["authority"]), readings, keys)
        except (TypeError, ValueError):
            raise MalformedError("erasure record fields are malformed",
                                 code="bad_erasure") from None


def sign_erasure(record: ErasureRecord, key: PrivateKey) -> bytes:
    return sign(record.to_payload(), key)


def verify_erasure(signed: bytes, collector: PublicKey) -> ErasureRecord:
    """The record, once its collector signature holds; SignatureError / MalformedError else."""
    envelope = Envelope.decode(signed)
    envelope.verify(collector)
    return ErasureRecord.from_payload(envelope.payload)
