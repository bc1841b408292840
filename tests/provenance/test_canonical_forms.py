"""One message, one reading: no repeated map keys, one protected header, low-S signatures.

Issue 13, defects 3 and 4: bytes that two honest decoders read differently, or that anyone can
re-sign into a second valid form, must not verify.
"""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from collector.admission.registry import DeviceKey, Registry
from collector.admission.verify import Rejected, Verified, verify_message
from provenance import cbor
from provenance.block import BlockHeader
from provenance.envelope import CoseSign1, Envelope, sign, sign_reading, to_be_signed
from provenance.errors import MalformedError
from provenance.keys import P256_ORDER, PrivateKey, PublicKey, is_low_s, low_s
from provenance.wire import reading_topic

from .samples import example_reading

KEY = PrivateKey.generate()
KID = KEY.kid
PAYLOAD = example_reading().to_payload()

# The protected headers of issue 13, defect 3, and an unsorted one.
REPEATED_KID = bytes.fromhex("a30126045820") + bytes(32) + bytes.fromhex("045820") + KID
REPEATED_ALG = bytes.fromhex("a30138220126045820") + KID
UNSORTED = bytes.fromhex("a2045820") + KID + bytes.fromhex("0126")
LONG_ALG = bytes.fromhex("a201380604") + bytes.fromhex("5820") + KID  # -7 in two bytes


def envelope_with(protected: bytes, payload: bytes = PAYLOAD) -> bytes:
    signature = KEY.sign(to_be_signed(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


def verdict(envelope: bytes) -> Verified | Rejected:
    device = example_reading().device_id
    registry = Registry(1, [DeviceKey(KID, device, KEY.public.der, 0)])
    return verify_message(registry, reading_topic(device), envelope,
                          example_reading().time_ms, 60_000)


# --- repeated map keys ------------------------------------------------------------------------


@pytest.mark.parametrize("data, key", [
    (bytes.fromhex("a2 01 00 01 00"), 1),
    (bytes.fromhex("a2 01 00 1801 00"), 1),  # the same key, written in one byte and in two
    (bytes.fromhex("bf 01 00 01 00 ff"), 1),  # indefinite-length map
    (bytes.fromhex("a1 01 a2 05 00 05 01"), 5),  # nested
    (bytes.fromhex("a2 7f 61 61 ff 00 61 61 01"), "a"),  # chunked text key = plain text key
    (bytes.fromhex("a2 82 01 02 00 82 01 02 00"), [1, 2]),  # array keys
    (REPEATED_KID, 4),
    (REPEATED_ALG, 1),
])
def test_a_repeated_key_is_found(data: bytes, key: object) -> None:
    assert cbor.duplicate_key(data) == key
    with pytest.raises(MalformedError) as err:
        cbor.decode(data, what="item")
    assert err.value.code == "duplicate_key" and "repeats the key" in str(err.value)


@pytest.mark.parametrize("data", [
    bytes.fromhex("a2 01 00 02 00"),
    bytes.fromhex("82 a1 01 00 a1 01 00"),  # the same key in two maps
    bytes.fromhex("a2 01 00 f9 3c00 00"),  # 1 and 1.0 are different data items
    bytes.fromhex("a2 c1 01 00 01 00"),  # a tagged key is not the untagged one
    bytes.fromhex("a2 82 01 02 00 82 01 03 00"),
    UNSORTED,
    PAYLOAD,
])
def test_distinct_keys_pass(data: bytes) -> None:
    assert cbor.duplicate_key(data) is None
    cbor.decode(data, what="item")


@pytest.mark.parametrize("protected", [REPEATED_KID, REPEATED_ALG])
def test_a_protected_header_that_repeats_a_label_is_refused(protected: bytes) -> None:
    envelope = envelope_with(protected)
    for decode in (CoseSign1.decode, Envelope.decode):
        with pytest.raises(MalformedError, match="repeats the key"):
            decode(envelope)
    out = verdict(envelope)
    assert isinstance(out, Rejected) and out.reason == "not_cose"
    assert "repeats the key" in out.detail


@pytest.mark.parametrize("protected", [UNSORTED, LONG_ALG])
def test_the_protected_header_must_be_in_deterministic_form(protected: bytes) -> None:
    envelope = envelope_with(protected)
    CoseSign1.decode(envelope)  # a valid COSE_Sign1 ...
    with pytest.raises(MalformedError, match="deterministic encoding of"):
        Envelope.decode(envelope)  # ... but not our profile's one header
    out = verdict(envelope)
    assert isinstance(out, Rejected) and out.reason == "not_cose"


def test_a_payload_that_repeats_a_key_is_named_as_such() -> None:
    # seq twice: cbor2 keeps the last, another decoder the first.
    body = cbor2.loads(PAYLOAD)
    entries = [cbor.encode(k) + cbor.encode(v) for k, v in sorted(body.items())]
    entries.insert(3, cbor.encode(3) + cbor.encode(255))  # right after key 3
    doubled = bytes((0xA0 + len(entries),)) + b"".join(entries)
    assert cbor.duplicate_key(doubled) == 3
    out = verdict(sign(doubled, KEY))
    assert isinstance(out, Rejected) and out.reason == "bad_payload"
    assert "repeats the key 3" in out.detail


def test_a_block_header_that_repeats_a_key_is_refused() -> None:
    header = BlockHeader(height=1, prev_hash=b"\x01" * 32, merkle_root=b"\x02" * 32,
                         leaf_count=3, first_time_ms=1, last_time_ms=2, sealed_at_ms=3,
                         collector_kid=KID).to_payload()
    doubled = bytes((header[0] + 1,)) + header[1:] + bytes.fromhex("0203")
    with pytest.raises(MalformedError, match="repeats the key 2"):
        BlockHeader.from_payload(doubled)


# --- low-S signatures -------------------------------------------------------------------------


def test_every_signature_we_make_is_low_s() -> None:
    message = b"low-S please"
    for deterministic in (False, True):
        for _ in range(64):  # a high-S result is a coin toss away: 64 tosses
            signature = KEY.sign(message + bytes([_]), deterministic=deterministic)
            assert is_low_s(signature)
            KEY.public.verify(signature, message + bytes([_]))
    assert all(Envelope.decode(sign_reading(example_reading(), KEY)).low_s for _ in range(32))


def test_low_s_normalises_and_keeps_the_signature_valid() -> None:
    signature = KEY.sign(b"m")
    high = signature[:32] + (P256_ORDER - int.from_bytes(signature[32:], "big")).to_bytes(32, "big")
    assert not is_low_s(high)
    KEY.public.verify(high, b"m")  # the malleability: the twin verifies too
    assert low_s(high) == signature and low_s(signature) == signature


@pytest.mark.parametrize("random_k", [False, True])
def test_the_firmware_stub_signs_low_s(tmp_path: Path, random_k: bool) -> None:
    from firmware_stubs.self_signing import SelfSigningSensor

    sensor = SelfSigningSensor(key_path=tmp_path / "sensor.pem",
                               state_path=tmp_path / "sensor.state", random_k=random_k)
    public = PublicKey.from_der(sensor.public_der)
    for i in range(48):  # with s as ecdsa leaves it, one in two would be high-S
        _, raw = sensor.make_envelope(1_790_000_000_000 + i)
        envelope = Envelope.decode(raw)
        assert envelope.low_s
        envelope.verify(public)


def test_the_collector_refuses_the_high_s_twin_of_a_genuine_envelope() -> None:
    genuine = sign_reading(example_reading(), KEY)
    s = int.from_bytes(genuine[-32:], "big")
    twin = genuine[:-32] + (P256_ORDER - s).to_bytes(32, "big")
    assert isinstance(verdict(genuine), Verified)
    out = verdict(twin)
    assert isinstance(out, Rejected) and out.reason == "high_s"
    assert (out.device_id, out.seq) == (example_reading().device_id, example_reading().seq)
