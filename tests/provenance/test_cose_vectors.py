"""The COSE_Sign1 ES256 examples from cose-wg/Examples behave as labelled with our verifier."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provenance.envelope import CoseSign1
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from tests.conftest import standard_vectors

DATA = json.loads(standard_vectors("cose_sign1_es256.json").read_text())
VECTORS: list[dict[str, Any]] = DATA["vectors"]


def _key(ref: str) -> PublicKey:
    k = DATA["keys"][ref]
    return PublicKey.from_coordinates(bytes.fromhex(k["x_hex"]), bytes.fromhex(k["y_hex"]))


def _verify(vector: dict[str, Any]) -> None:
    message = CoseSign1.decode(bytes.fromhex(vector["cose_sign1_hex"]))
    message.verify(_key(vector["key_ref"]), bytes.fromhex(vector["external_aad_hex"]))


def test_the_file_holds_both_kinds() -> None:
    labels = {v["expected"] for v in VECTORS}
    assert labels == {"pass", "fail"}
    assert len(VECTORS) >= 10


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["expected"] == "pass"],
                         ids=lambda v: v["id"])
def test_pass_vectors_verify(vector: dict[str, Any]) -> None:
    _verify(vector)


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["expected"] == "fail"],
                         ids=lambda v: v["id"])
def test_fail_vectors_are_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(ProvenanceError):
        _verify(vector)


def test_external_aad_is_bound() -> None:
    vector = next(v for v in VECTORS if v["id"] == "sign-pass-02")
    message = CoseSign1.decode(bytes.fromhex(vector["cose_sign1_hex"]))
    with pytest.raises(ProvenanceError):
        message.verify(_key(vector["key_ref"]))  # without the AAD it was signed with


def test_published_rfc8392_cwt_verifies() -> None:
    related = DATA["related"]["rfc8392_a3_as_published"]
    CoseSign1.decode(bytes.fromhex(related["cose_sign1_hex"])).verify(_key(related["key_ref"]))


def test_es512_example_is_rejected_by_an_es256_verifier() -> None:
    related = DATA["related"]["ecdsa_sig_04_not_es256"]
    with pytest.raises(ProvenanceError) as err:
        CoseSign1.decode(bytes.fromhex(related["cose_sign1_hex"])).verify(_key("key_11"))
    assert err.value.code == "wrong_algorithm"


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["expected"] == "pass"],
                         ids=lambda v: v["id"])
def test_to_be_signed_matches_the_generator(vector: dict[str, Any]) -> None:
    message = CoseSign1.decode(bytes.fromhex(vector["cose_sign1_hex"]))
    aad = bytes.fromhex(vector["external_aad_hex"])
    assert message.to_be_signed(aad).hex() == vector["to_be_signed_hex"]
