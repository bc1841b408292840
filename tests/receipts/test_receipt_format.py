"""The receipt's byte form, signature and range arithmetic (provenance/receipt.py)."""

from __future__ import annotations

import re
from pathlib import Path

import cbor2
import pytest

from provenance import cbor
from provenance.envelope import Envelope, sign
from provenance.errors import MalformedError, ProvenanceError, SignatureError
from provenance.keys import PrivateKey
from provenance.receipt import Receipt, Refusal, SeqRange, SignedReceipt, seq_ranges
from provenance.wire import RECEIPT_FILTER, receipt_topic, receipt_topic_device


def sample() -> Receipt:
    return Receipt(device_id="wq-1", time_ms=1_767_225_600_000, tree_size=4321,
                   sealed_through=99, sealed=(SeqRange(101, 120),),
                   refused=(Refusal(100, 100, "bad_signature", bytes(range(32))),
                            Refusal(121, 130, "unknown_key")))


def test_ranges_merge_and_sort() -> None:
    assert seq_ranges([5, 3, 4, 9, 10, 0, 4]) == (SeqRange(0, 0), SeqRange(3, 5),
                                                   SeqRange(9, 10))
    assert seq_ranges([]) == ()


def test_payload_round_trip_is_deterministic_and_labelled() -> None:
    r = sample()
    payload = r.to_payload()
    assert Receipt.from_payload(payload) == r
    body = cbor2.loads(payload)
    assert body == {1: 1, 2: "wq-1", 3: 1_767_225_600_000, 4: 4321, 5: 99, 6: [[101, 120]],
                    7: [[100, 100, "bad_signature", bytes(range(32))],
                        [121, 130, "unknown_key"]]}
    assert r.covers(99) and r.covers(0) and r.covers(110)
    assert not r.covers(100) and not r.covers(121)
    # Nothing sealed yet: label 5 is absent, not -1.
    empty = Receipt(device_id="wq-1", time_ms=1, tree_size=0)
    assert cbor2.loads(empty.to_payload()) == {1: 1, 2: "wq-1", 3: 1, 4: 0}
    assert not empty.covers(0)


@pytest.mark.parametrize("body", [
    {1: 2, 2: "d", 3: 1, 4: 0},                     # unknown version
    {1: 1, 2: "d", 3: 1, 4: 0, 9: 1},               # unknown label
    {1: 1, 2: "d", 3: 1, 4: 0, 6: []},              # empty list instead of absent
    {1: 1, 2: "d", 3: 1, 4: 0, 6: [[5, 4]]},        # first > last
    {1: 1, 2: "d", 3: 1, 4: 0, 7: [[1, 2, "x", bytes(32)]]},  # digest on a range
    {1: 1, 2: "no/slash", 3: 1, 4: 0},              # not a device id
    {1: 1, 2: "d", 3: -1, 4: 0},                    # negative time
])
def test_malformed_payloads_are_refused(body: dict[int, object]) -> None:
    with pytest.raises(MalformedError):
        Receipt.from_payload(cbor.encode(body))


def test_non_deterministic_payload_is_refused() -> None:
    payload = cbor2.dumps({2: "d", 1: 1, 3: 1, 4: 0})  # keys out of order
    with pytest.raises(MalformedError):
        Receipt.from_payload(payload)


def test_signed_receipt_verifies_only_under_the_collector_key() -> None:
    key, other = PrivateKey.generate(), PrivateKey.generate()
    signed = SignedReceipt.sign(sample(), key)
    again = SignedReceipt.decode(signed.raw)
    assert again.receipt == sample() and again.kid == key.kid
    again.verify(key.public)
    with pytest.raises(SignatureError):
        again.verify(other.public)
    tampered = bytearray(signed.raw)
    tampered[-1] ^= 1
    with pytest.raises(SignatureError):
        SignedReceipt.decode(bytes(tampered)).verify(key.public)


def test_receipts_readings_and_blocks_never_pass_for_each_other() -> None:
    key = PrivateKey.generate()
    signed = SignedReceipt.sign(sample(), key)
    with pytest.raises(ProvenanceError):
        Envelope.decode(signed.raw)  # a reading or block header parser refuses a receipt
    plain = sign(sample().to_payload(), key)  # same payload, reading-style header
    with pytest.raises(MalformedError):
        SignedReceipt.decode(plain)


def test_documented_receipt_payload_is_ours() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text()
    match = re.search(r"```hex receipt-payload\n(.*?)```", doc, re.S)
    assert match, "no receipt example in docs/wire-format.md"
    documented = bytes.fromhex("".join(match.group(1).split()))
    ours = Receipt(device_id="wq-1", time_ms=1_795_240_000_000, tree_size=912_345,
                   sealed_through=48209, sealed=(SeqRange(48211, 48230),),
                   refused=(Refusal(48210, 48210, "bad_signature", bytes([0x5D]) * 32),
                            Refusal(48231, 48240, "unknown_key"))).to_payload()
    assert documented == ours
    assert f"Receipt payload, {len(ours)} bytes" in doc
    assert Receipt.from_payload(documented).covers(48220)


def test_receipt_topic() -> None:
    assert receipt_topic("wq-1") == "sensorledger/v1/wq-1/receipt"
    assert receipt_topic_device("sensorledger/v1/wq-1/receipt") == "wq-1"
    assert receipt_topic_device("sensorledger/v1/wq-1/reading") is None
    assert RECEIPT_FILTER == "sensorledger/v1/+/receipt"
