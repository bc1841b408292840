"""Deterministic CBOR (RFC 8949 §4.2.1) on top of cbor2.

cbor2's ``canonical=True`` sorts map keys length-first (the RFC 7049 rule). RFC 8949's core
deterministic encoding sorts by the bytewise order of the encoded keys. The two orders agree
whenever every key encodes to a single head byte plus content of the same major type, which is
what our wire format uses: small integer labels (-24..23) for every fixed structure and short
text keys (< 24 bytes) for event maps. ``check_text_key`` enforces that for event data.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import cbor2

from .errors import MalformedError

__all__ = ["DECODE_ERRORS", "decode", "encode", "is_deterministic"]


def encode(value: Any) -> bytes:
    """Encode ``value`` deterministically: sorted keys, shortest numbers, definite lengths."""
    return cbor2.dumps(value, canonical=True)


def _canonical_encoder() -> cbor2.CBOREncoder:
    return cbor2.CBOREncoder(io.BytesIO(), canonical=True)


class _Encoders(threading.local):
    """One canonical encoder per thread. Building a ``CBOREncoder`` costs about as much as
    encoding a whole reading, and every payload a verifier accepts is re-encoded once."""

    def __init__(self) -> None:
        self.encoder = _canonical_encoder()


_encoders = _Encoders()


#: What cbor2 raises for bytes that are not CBOR.
DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


def decode(data: bytes, *, what: str) -> Any:
    """Decode exactly one CBOR item; trailing bytes or a broken item raise MalformedError."""
    try:
        value, rest = _loads_one(data)
    except DECODE_ERRORS as exc:
        raise MalformedError(f"{what} is not valid CBOR: {exc}", code="not_cbor") from exc
    if rest:
        raise MalformedError(f"{what} has {rest} bytes after the CBOR item", code="not_cbor")
    return value


def is_deterministic(data: bytes, value: Any) -> bool:
    """True when ``data`` is the deterministic encoding of ``value``."""
    encoder = _encoders.encoder
    encoder.fp = out = io.BytesIO()
    encoded = False
    try:
        encoder.encode(value)
        encoded = True
    except (cbor2.CBOREncodeError, TypeError, ValueError):
        return False
    finally:
        if not encoded:  # it may have stopped mid-container: the next call gets a new one
            _encoders.encoder = _canonical_encoder()
    return out.getvalue() == data


def _loads_one(data: bytes) -> tuple[Any, int]:
    # cbor2.loads ignores trailing data; the decoder tells us how far it read.
    buf = io.BytesIO(data)
    value = cbor2.CBORDecoder(buf).decode()
    return value, len(data) - buf.tell()
