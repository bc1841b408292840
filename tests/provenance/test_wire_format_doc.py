"""docs/wire-format.md's example is what the code produces, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

from provenance.envelope import sign_reading
from provenance.keys import PublicKey
from tests.support.signed import SignedReading

from .samples import EXAMPLE_DEVICE_KEY, example_reading

DOC = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text()


def _hex_block(label: str) -> bytes:
    match = re.search(rf"```hex {label}\n(.*?)```", DOC, re.S)
    assert match, f"no ```hex {label} block in docs/wire-format.md"
    return bytes.fromhex("".join(match.group(1).split()))


def _pem() -> str:
    match = re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\n", DOC, re.S)
    assert match
    return match.group(0)


def test_documented_payload_is_ours() -> None:
    assert _hex_block("payload") == example_reading().to_payload()


def test_documented_envelope_is_ours() -> None:
    ours = sign_reading(example_reading(), EXAMPLE_DEVICE_KEY, deterministic=True)
    assert _hex_block("envelope") == ours


def test_documented_envelope_verifies_with_the_documented_key() -> None:
    key = PublicKey.from_pem(_pem())
    assert key.kid == EXAMPLE_DEVICE_KEY.kid
    assert key.kid_hex in DOC
    opened = SignedReading.open(_hex_block("envelope"), key)
    assert opened.reading == example_reading()
    assert f"Payload, {len(_hex_block('payload'))} bytes" in DOC
    assert f"Envelope, {len(_hex_block('envelope'))} bytes" in DOC
