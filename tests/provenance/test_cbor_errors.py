"""Issue 13: what a decode failure says, and that it leaves nothing behind."""

from __future__ import annotations

import gc

import cbor2
import pytest

from provenance import cbor
from provenance.errors import MalformedError


def test_a_leading_break_code_is_named_not_counted_as_trailing_bytes() -> None:
    """`ff fe fd ...` was reported as "13 bytes after the CBOR item": cbor2 reads a lone 0xff
    as its break marker and stops."""
    with pytest.raises(MalformedError) as caught:
        cbor.decode(bytes.fromhex("fffefd") + bytes(11), what="envelope")
    assert caught.value.code == "not_cbor"
    assert "break stop code (0xff)" in str(caught.value)
    assert "after the CBOR item" not in str(caught.value)


@pytest.mark.parametrize("hexdata", ["63 61 ff fe", "a1 01 62 c3 28", "d2 84 40 a0 62 80 80 40"])
def test_invalid_utf8_text_is_not_cbor(hexdata: str) -> None:
    with pytest.raises(MalformedError) as caught:
        cbor.decode(bytes.fromhex(hexdata.replace(" ", "")), what="envelope")
    assert caught.value.code == "not_cbor"
    assert "unicode" in str(caught.value)


def test_valid_text_still_decodes() -> None:
    value = {1: "pH", 2: ["Cel", "µS/cm", "\U0001f600"], 3: cbor2.CBORTag(18, "ß")}
    assert cbor.decode(cbor.encode(value), what="x") == value


def test_decode_errors_leave_no_objects_behind() -> None:
    """cbor2's C decoder leaks the error it raises for invalid UTF-8 (agronholm/cbor2#257);
    each leaked error held its traceback and so the message. 2,000 such messages must not
    leave 2,000 errors alive."""
    junk = bytes.fromhex("82 01 78 20".replace(" ", "")) + b"\xff" * 32 + bytes(4000)

    def alive() -> int:
        gc.collect()
        return sum(isinstance(o, BaseException) for o in gc.get_objects())

    for _ in range(50):  # warm up whatever is cached on first use
        with pytest.raises(MalformedError):
            cbor.decode(junk, what="envelope")
    before = alive()
    for _ in range(2000):
        with pytest.raises(MalformedError):
            cbor.decode(junk, what="envelope")
    assert alive() - before < 50


@pytest.mark.parametrize("hexdata", [
    "a1 a1 01 62 c3 28 02",  # inside a map used as a map key (cbor2's FrozenDict)
    "d9 0102 81 62 c3 28",  # inside a set (tag 258)
    "81" * 3000 + "62 c3 28",  # nested deeper than Python's recursion limit
])
def test_invalid_utf8_is_found_wherever_it_hides(hexdata: str) -> None:
    with pytest.raises(MalformedError) as caught:
        cbor.decode(bytes.fromhex(hexdata.replace(" ", "")), what="x")
    assert caught.value.code == "not_cbor"
