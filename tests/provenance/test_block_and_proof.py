"""Signed block headers and offline proof files."""

from __future__ import annotations

import dataclasses

import pytest

from provenance import merkle
from provenance.block import GENESIS_BLOCK_HASH, BlockHeader, SignedBlock
from provenance.envelope import Envelope, sign_reading
from provenance.errors import MalformedError, ProvenanceError, SignatureError
from provenance.keys import PrivateKey
from provenance.prooffile import ProofFile, verify_proof

from .samples import EXAMPLE_COLLECTOR_KEY, reading

DEVICE = PrivateKey.generate()
COLLECTOR = EXAMPLE_COLLECTOR_KEY


def _chain(n: int) -> list[bytes]:
    envelopes, prev = [], bytes(32)
    for seq in range(n):
        data = sign_reading(reading(seq, prev=prev, time_ms=1_790_000_000_000 + seq), DEVICE)
        envelopes.append(data)
        prev = Envelope.decode(data).hash
    return envelopes


def _block(envelopes: list[bytes], *, height: int = 0,
           prev: bytes = GENESIS_BLOCK_HASH) -> SignedBlock:
    leaves = [merkle.RFC9162_SHA256.hash_leaf(e) for e in envelopes]
    times = [Envelope.decode(e).reading().time_ms for e in envelopes]
    header = BlockHeader(height=height, prev_hash=prev, merkle_root=merkle.root(leaves),
                         leaf_count=len(leaves), first_time_ms=min(times), last_time_ms=max(times),
                         sealed_at_ms=max(times) + 500, collector_kid=COLLECTOR.kid)
    return SignedBlock.seal(header, COLLECTOR)


def _proof(envelopes: list[bytes], block: SignedBlock, index: int) -> ProofFile:
    leaves = [merkle.RFC9162_SHA256.hash_leaf(e) for e in envelopes]
    return ProofFile(envelope=envelopes[index], device_public_key=DEVICE.public.der,
                     leaf_index=index, audit_path=tuple(merkle.inclusion_proof(leaves, index)),
                     block=block.raw, collector_kid=COLLECTOR.kid)


def test_block_round_trip_and_chain() -> None:
    envelopes = _chain(5)
    b0 = _block(envelopes[:3])
    b1 = _block(envelopes[3:], height=1, prev=b0.hash)
    for b in (b0, b1):
        again = SignedBlock.decode(b.raw)
        again.verify(COLLECTOR.public)
        assert again.header == b.header and again.hash == b.hash
    assert b1.header.prev_hash == b0.hash


def test_block_signed_by_another_collector_fails() -> None:
    block = _block(_chain(2))
    with pytest.raises(SignatureError):
        block.verify(PrivateKey.generate().public)


@pytest.mark.parametrize(
    "change",
    [{"leaf_count": 0}, {"height": -1}, {"merkle_root": b"x"}, {"first_time_ms": 10**16},
     {"prev_hash": bytes(32), "height": 3}, {"prev_hash": b"\x01" * 32, "height": 0}],
)
def test_bad_headers_cannot_be_built(change: dict[str, object]) -> None:
    with pytest.raises(MalformedError):
        dataclasses.replace(_block(_chain(1)).header, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13])
def test_every_reading_of_a_block_has_a_verifying_proof(size: int) -> None:
    envelopes = _chain(size)
    block = _block(envelopes)
    for index in range(size):
        proof = ProofFile.decode(_proof(envelopes, block, index).encode())
        report = verify_proof(proof.encode(), COLLECTOR.public)
        assert report.ok, report.render()
        assert [c.name for c in report.checks] == [
            "proof file format", "collector key", "block signature", "device key binding",
            "device signature", "inclusion in block", "time within block"]
        assert report.reading is not None and report.reading.seq == index


def _failed(report_checks: list[tuple[str, bool]]) -> set[str]:
    return {name for name, ok in report_checks if not ok}


def _tampered_reports() -> dict[str, set[str]]:
    envelopes = _chain(6)
    block = _block(envelopes)
    good = _proof(envelopes, block, 4)
    other_block = _block(_chain(6), height=0)
    cases = {
        "envelope byte": dataclasses.replace(
            good, envelope=good.envelope[:-1] + bytes([good.envelope[-1] ^ 1])),
        "audit path": dataclasses.replace(
            good, audit_path=(bytes(32), *good.audit_path[1:])),
        "leaf index": dataclasses.replace(good, leaf_index=3),
        "other block": dataclasses.replace(good, block=other_block.raw),
        "device key": dataclasses.replace(good, device_public_key=PrivateKey.generate().public.der),
        "collector": dataclasses.replace(good, collector_kid=bytes(32)),
    }
    out = {}
    for name, proof in cases.items():
        report = verify_proof(proof.encode(), COLLECTOR.public)
        assert not report.ok, name
        out[name] = _failed([(c.name, c.ok) for c in report.checks])
    return out


def test_tampering_fails_the_right_check() -> None:
    failed = _tampered_reports()
    assert failed["envelope byte"] == {"device signature", "inclusion in block"}
    assert failed["audit path"] == {"inclusion in block"}
    assert failed["leaf index"] == {"inclusion in block"}
    assert failed["other block"] == {"inclusion in block"}
    assert failed["device key"] == {"device key binding"}
    assert failed["collector"] == {"collector key"}


def test_untrusted_collector_key_fails_the_block_signature() -> None:
    envelopes = _chain(3)
    block = _block(envelopes)
    report = verify_proof(_proof(envelopes, block, 1).encode(), PrivateKey.generate().public)
    assert not report.ok
    assert _failed([(c.name, c.ok) for c in report.checks]) == {"collector key", "block signature"}


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xa1\x01\x01", b"garbage" * 10])
def test_garbage_proof_files_report_instead_of_raising(data: bytes) -> None:
    report = verify_proof(data, COLLECTOR.public)
    assert not report.ok
    assert report.checks[0].name == "proof file format" and not report.checks[0].ok
    assert "FAILED" in report.render()


def test_readable_rendering_names_the_reading_and_block() -> None:
    envelopes = _chain(3)
    block = _block(envelopes)
    rendered = _proof(envelopes, block, 2).to_json()
    assert rendered["reading"]["seq"] == 2
    assert rendered["reading"]["device_id"] == "dev-1"
    assert rendered["block"]["merkle_root"] == block.header.merkle_root.hex()
    assert rendered["block"]["leaf_count"] == 3


def test_proof_file_rejects_bad_fields() -> None:
    with pytest.raises(ProvenanceError):
        ProofFile(envelope=b"x", device_public_key=b"y", leaf_index=-1, audit_path=(),
                  block=b"z", collector_kid=bytes(32))
    with pytest.raises(ProvenanceError):
        ProofFile(envelope=b"x", device_public_key=b"y", leaf_index=0, audit_path=(b"short",),
                  block=b"z", collector_kid=bytes(32))
