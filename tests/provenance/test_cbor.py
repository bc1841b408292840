"""provenance.cbor: deterministic encoding checks with a reused per-thread encoder."""

from __future__ import annotations

import sys
import threading

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from provenance import cbor

FLAT = st.dictionaries(
    st.integers(0, 23),
    st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=8),
              st.binary(max_size=8), st.booleans()),
    max_size=6,
)


@given(FLAT)
def test_canonical_bytes_are_deterministic_and_others_are_not(value: dict[int, object]) -> None:
    canonical = cbor.encode(value)
    assert cbor.is_deterministic(canonical, value)
    assert not cbor.is_deterministic(canonical + b"\x00", value)
    plain = cbor2.dumps(value)  # keys in insertion order, floats at full width
    assert cbor.is_deterministic(plain, value) == (plain == canonical)


def test_a_failed_encode_does_not_spoil_the_next_check() -> None:
    value = {1: 2.5, 2: "x"}
    good = cbor.encode(value)
    unencodable = {1: [1, 2, object()]}  # fails inside a container
    assert not cbor.is_deterministic(b"", unencodable)
    cyclic: list[object] = [1]
    cyclic.append(cyclic)
    assert not cbor.is_deterministic(b"", {1: cyclic})
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecursionError):
        cbor.is_deterministic(b"", {1: deep})
    assert cbor.is_deterministic(good, value)
    assert cbor.is_deterministic(cbor.encode([value, value]), [value, value])


def test_threads_checking_at_once_each_get_their_own_answer() -> None:
    values = [{i: "v" * (i % 7), 100 + i: float(i) / 3} for i in range(64)]
    encoded = [cbor.encode(v) for v in values]
    wrong: list[int] = []

    def check(offset: int) -> None:
        for _ in range(200):
            for i, (raw, value) in enumerate(zip(encoded, values, strict=True)):
                if not cbor.is_deterministic(raw, value):
                    wrong.append(i)
                j = (i + offset) % len(values)
                if j != i and cbor.is_deterministic(encoded[j], value):
                    wrong.append(-i)

    threads = [threading.Thread(target=check, args=(k,)) for k in range(1, 5)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []
