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
from collections.abc import Mapping
from typing import Any

import cbor2

from .errors import MalformedError

__all__ = ["DECODE_ERRORS", "decode", "duplicate_key", "encode", "is_deterministic"]


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


_BREAK: Any = getattr(cbor2, "break_marker", None)  # what cbor2 returns for a stray 0xff

#: What cbor2 raises for bytes that are not CBOR.
DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


def decode(data: bytes, *, what: str, deterministic: bool = False) -> Any:
    """Decode exactly one CBOR item; trailing bytes, a broken item or a map that repeats a key
    (RFC 8949 §5.6) raise MalformedError.

    ``deterministic=True`` is the caller's promise that it then holds the bytes to the
    deterministic encoding of the value (:func:`is_deterministic`), which no map with a
    repeated key passes, so the separate scan for repeated keys is left out; on the way out
    such a caller names the key with :func:`duplicate_key`.
    """
    try:
        value, rest = _loads_one(data)
    except DECODE_ERRORS as exc:
        message = f"{what} is not valid CBOR: {exc}"
        _forget(exc)
        raise MalformedError(message, code="not_cbor") from None
    if value is _BREAK:
        raise MalformedError(f"{what} is not valid CBOR: it starts with a break stop code "
                             "(0xff) outside any indefinite-length item", code="not_cbor")
    if rest:
        raise MalformedError(f"{what} has {rest} bytes after the CBOR item", code="not_cbor")
    if not deterministic:
        check_unique_keys(data, what=what)
    return value


def _forget(exc: BaseException | None) -> None:
    """Cut a decode error loose from the frames it was raised through.

    cbor2's C decoder leaks one reference to the errors it raises with a cause (an invalid
    UTF-8 text string, a bad epoch datetime: agronholm/cbor2#257); each leaked error kept its
    traceback, hence our frames and the whole message they held, forever. Without traceback,
    cause and arguments only a small exception object is left behind.
    """
    for _ in range(8):
        if exc is None:
            return
        nxt = exc.__cause__ or exc.__context__
        exc.__traceback__ = exc.__cause__ = exc.__context__ = None
        if isinstance(exc, UnicodeDecodeError):
            exc.object = b""
        exc.args = ()
        exc = nxt


def check_unique_keys(data: bytes, *, what: str) -> None:
    """Raise MalformedError (code ``duplicate_key``) when a map in ``data`` repeats a key."""
    key = duplicate_key(data)
    if key is not None:
        raise MalformedError(
            f"{what} is invalid CBOR: a map repeats the key {key!r} (RFC 8949 §5.6; decoders "
            "disagree on which value counts)", code="duplicate_key")


def duplicate_key(data: bytes) -> object | None:
    """The first key that a map in ``data`` (one well-formed CBOR item) holds twice, or None.

    Keys are compared as data items, not as bytes: ``1`` written in one byte and in two is
    the same key twice. cbor2 keeps the last of the two values silently, so this walks the
    encoded item itself, head by head.
    """
    try:
        return _duplicate_key(data)
    except IndexError:  # not one well-formed item: the decoder has said so already
        return None


def _duplicate_key(data: bytes) -> object | None:
    stack: list[_Open] = []
    pos, end = 0, len(data)
    while pos < end:
        start, head = pos, data[pos]
        pos += 1
        if head == 0xFF:  # break: closes the innermost indefinite container or string
            stack.pop()
        else:
            major, info = head >> 5, head & 0x1F
            if info < 24:
                arg = info
            elif info <= 27:
                size = 1 << (info - 24)
                arg = int.from_bytes(data[pos:pos + size], "big")
                pos += size
            else:  # 31: indefinite (28-30 are not well-formed; the decoder refused them)
                arg = -1
            if stack and stack[-1].is_map and stack[-1].key_start is None:
                stack[-1].key_start = start
            if major in (2, 3) and arg >= 0:
                pos += arg
            elif major in (2, 3, 4, 5, 6):
                left = 1 if major == 6 else arg if arg < 0 or major != 5 else 2 * arg
                if left != 0:
                    stack.append(_Open(left, major == 5))
                    continue
        # One item is complete: count it in its container, and close what it completes.
        while stack:
            top = stack[-1]
            if top.is_map:
                if top.in_value:
                    top.key_start = None
                else:
                    key = data[top.key_start or 0:pos]
                    identity = _key_identity(key)
                    if identity in top.keys:
                        return decode_key(key)
                    top.keys.add(identity)
                top.in_value = not top.in_value
            if top.left < 0:  # indefinite: open until its break
                break
            top.left -= 1
            if top.left:
                break
            stack.pop()
    return None


class _Open:
    """A container being walked by :func:`duplicate_key`."""

    __slots__ = ("in_value", "is_map", "key_start", "keys", "left")

    def __init__(self, left: int, is_map: bool) -> None:
        self.left = left  # items still to come; -1 until a break
        self.is_map = is_map
        self.keys: set[bytes] = set()
        self.key_start: int | None = None
        self.in_value = False


def decode_key(encoded: bytes) -> object:
    try:
        return cbor2.loads(encoded)
    except DECODE_ERRORS:
        return encoded


def _key_identity(encoded: bytes) -> bytes:
    """Equal for two encodings of one data item (``01`` and ``18 01``)."""
    if len(encoded) == 1:
        return encoded  # a one-byte item is already in its shortest form
    try:
        return encode(cbor2.loads(encoded))
    except (cbor2.CBOREncodeError, *DECODE_ERRORS):
        return encoded


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
    # cbor2.loads ignores trailing data; the decoder tells us how far it read. Text is read
    # with surrogateescape and checked here: cbor2's own UTF-8 error leaks (see _forget).
    buf = io.BytesIO(data)
    value = cbor2.CBORDecoder(buf, str_errors="surrogateescape").decode()
    if _bad_text(value):
        raise cbor2.CBORDecodeValueError("error decoding unicode string: not valid UTF-8")
    return value, len(data) - buf.tell()


def _bad_text(value: Any) -> bool:
    """True if a decoded text string holds a lone surrogate, i.e. its bytes were not UTF-8.
    (A loop with a stack: a third cheaper than recursion, and no depth limit.)"""
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return True
        elif kind is dict:
            extend(item.keys())
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif kind is int or kind is bytes or kind is bool or kind is float:
            continue
        elif kind is cbor2.CBORTag:
            push(item.value)
        elif isinstance(item, Mapping):  # cbor2's FrozenDict: a map used as a map key
            extend(item.keys())
            extend(item.values())
        elif isinstance(item, (set, frozenset)):
            extend(item)
    return False
