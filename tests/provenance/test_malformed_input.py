"""Every parser in the core raises the package's own error for malformed input, never another.

Each parser is fed random bytes, every truncation of a valid input, single-byte corruptions,
and hand-made cases (wrong tag, wrong types, wrong algorithm, oversized fields, NaN and
infinity); anything but a ProvenanceError fails the test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import cbor
from provenance.block import BlockHeader, SignedBlock
from provenance.envelope import CoseSign1, Envelope, sign, sign_reading
from provenance.errors import ProvenanceError
from provenance.keys import PrivateKey, PublicKey
from provenance.prooffile import ProofFile, verify_proof
from provenance.reading import Reading
from tests.support.signed import SignedReading

from .samples import EXAMPLE_COLLECTOR_KEY, example_reading

KEY = PrivateKey.generate()
ENVELOPE = sign_reading(example_reading(), KEY)
PAYLOAD = example_reading().to_payload()
HEADER = BlockHeader(height=1, prev_hash=b"\x01" * 32, merkle_root=b"\x02" * 32, leaf_count=3,
                     first_time_ms=1, last_time_ms=2, sealed_at_ms=3,
                     collector_kid=EXAMPLE_COLLECTOR_KEY.kid)
BLOCK = SignedBlock.seal(HEADER, EXAMPLE_COLLECTOR_KEY).raw
PROOF = ProofFile(envelope=ENVELOPE, device_public_key=KEY.public.der, leaf_index=0,
                  audit_path=(b"\x03" * 32,), block=BLOCK,
                  collector_kid=EXAMPLE_COLLECTOR_KEY.kid).encode()


def _open(data: bytes) -> object:
    return SignedReading.open(data, KEY.public)


PARSERS: dict[str, tuple[Callable[[bytes], object], bytes]] = {
    "CoseSign1.decode": (CoseSign1.decode, ENVELOPE),
    "Envelope.decode": (Envelope.decode, ENVELOPE),
    "SignedReading.open": (_open, ENVELOPE),
    "Reading.from_payload": (Reading.from_payload, PAYLOAD),
    "BlockHeader.from_payload": (BlockHeader.from_payload, HEADER.to_payload()),
    "SignedBlock.decode": (SignedBlock.decode, BLOCK),
    "ProofFile.decode": (ProofFile.decode, PROOF),
    "PublicKey.from_der": (PublicKey.from_der, KEY.public.der),
    # PEM parses without its final newline, so truncation starts from there.
    "PublicKey.from_pem": (PublicKey.from_pem, KEY.public.to_pem().encode().rstrip(b"\n")),
    "PrivateKey.from_pem": (PrivateKey.from_pem, KEY.to_pem().rstrip(b"\n")),
}


def _only_own_errors(parse: Callable[[bytes], object], data: bytes) -> None:
    try:
        parse(data)
    except ProvenanceError as exc:
        assert exc.diagnostics()
    # Any other exception propagates and fails the test.


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_truncation_is_refused_with_our_error(name: str) -> None:
    parse, valid = PARSERS[name]
    parse(valid)  # the untouched input parses
    for cut in range(len(valid)):
        with pytest.raises(ProvenanceError):
            parse(valid[:cut])


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_single_byte_corruption_gives_only_our_errors(name: str) -> None:
    parse, valid = PARSERS[name]
    for at in range(len(valid)):
        for value in (0x00, 0xFF, valid[at] ^ 0x80):
            corrupted = bytearray(valid)
            corrupted[at] = value
            _only_own_errors(parse, bytes(corrupted))


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=600), name=st.sampled_from(sorted(PARSERS)))
def test_random_bytes_give_only_our_errors(data: bytes, name: str) -> None:
    _only_own_errors(PARSERS[name][0], data)


def _body(**changes: object) -> bytes:
    body = cbor2.loads(PAYLOAD)
    for key, value in changes.items():
        body[int(key[1:])] = value
    return cbor2.dumps(body, canonical=True)


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (Envelope.decode, cbor2.dumps(cbor2.CBORTag(998, cbor2.loads(ENVELOPE).value))),
        (Envelope.decode, cbor2.dumps(cbor2.loads(ENVELOPE).value)),  # untagged
        (Envelope.decode, sign(PAYLOAD, KEY)[:-66] + b"\x58\x41" + bytes(65)),  # 65-byte sig
        (Envelope.decode, cbor2.dumps(cbor2.CBORTag(18, [cbor.encode({1: -35, 4: KEY.kid}), {},
                                                         PAYLOAD, bytes(64)]))),  # ES384
        (Envelope.decode, cbor2.dumps(cbor2.CBORTag(18, [cbor.encode({1: -7, 4: b"short"}), {},
                                                         PAYLOAD, bytes(64)]))),
        (Envelope.decode, cbor2.dumps(cbor2.CBORTag(18, [b"", {1: -7}, PAYLOAD, bytes(64)]))),
        (Envelope.decode, cbor2.dumps(cbor2.CBORTag(18, [cbor.encode({1: -7, 4: KEY.kid}), {},
                                                         None, bytes(64)]))),  # detached
        (Reading.from_payload, _body(k2="x" * 65)),  # oversized device id
        (Reading.from_payload, _body(k7=bytes(33))),  # oversized prev
        (Reading.from_payload, _body(k9=[{0: "m", 2: 1.0}] * 257)),  # too many measurements
        (Reading.from_payload, _body(k9=[{0: "m" * 65, 2: 1.0}])),  # oversized name
        (Reading.from_payload, _body(k9=[{0: "m", 2: math.nan}])),
        (Reading.from_payload, _body(k9=[{0: "m", 2: math.inf}])),
        (Reading.from_payload, _body(k10={"x": -math.inf})),
        (Reading.from_payload, _body(k10={"x": "v" * 257})),  # oversized event text
        (Reading.from_payload, _body(k5=2**64)),  # time out of range
        (Reading.from_payload, _body(k3="7")),  # wrong type
        (Reading.from_payload, _body(k6=1)),  # int for bool
        (Reading.from_payload, cbor2.dumps(cbor2.CBORTag(1, 5))),  # a tagged date, not a map
        (BlockHeader.from_payload, cbor.encode({k: 0 for k in range(1, 10)})),
        (ProofFile.decode, cbor.encode({k: b"" for k in range(1, 8)})),
    ],
)
def test_hand_made_cases_are_refused(parse: Callable[[bytes], object], data: bytes) -> None:
    with pytest.raises(ProvenanceError):
        parse(data)


@settings(max_examples=60, deadline=None)
@given(at=st.integers(min_value=0), bit=st.integers(0, 7))
def test_verify_proof_reports_any_flipped_bit(at: int, bit: int) -> None:
    data = bytearray(PROOF)
    data[at % len(data)] ^= 1 << bit
    report = verify_proof(bytes(data), EXAMPLE_COLLECTOR_KEY.public)
    assert not report.ok
    assert any(not c.ok for c in report.checks)
