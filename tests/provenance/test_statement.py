"""Collector statements: built, signed, decoded and verified; never mistaken for a reading."""

from __future__ import annotations

import cbor2
import pytest

from provenance import cbor
from provenance.envelope import Envelope, to_be_signed
from provenance.errors import MalformedError, SignatureError
from provenance.keys import PrivateKey
from provenance.statement import (
    ENROL,
    REVOKE,
    STATEMENT_CONTENT_TYPE,
    Enrolment,
    Revocation,
    SignedStatement,
    Statement,
    StatementError,
    enrolment_statement,
    is_statement,
    revocation_statement,
    sign_statement,
)

COLLECTOR = PrivateKey.from_scalar(bytes(31) + b"\x07")
DEVICE = PrivateKey.from_scalar(bytes(31) + b"\x09")


def test_enrolment_round_trip_and_signature() -> None:
    raw = sign_statement(enrolment_statement(1, 1_700_000_000_000,
                                             Enrolment("pump-7", DEVICE.public, 1_699_999)),
                         COLLECTOR)
    assert is_statement(raw)
    signed = SignedStatement.decode(raw)
    assert signed.kid == COLLECTOR.kid
    statement = signed.verify(COLLECTOR.public)
    assert (statement.type, statement.seq, statement.time_ms) == (ENROL, 1, 1_700_000_000_000)
    enrolment = statement.enrolment()
    assert enrolment.device_id == "pump-7" and enrolment.kid == DEVICE.kid
    assert enrolment.enrolled_ms == 1_699_999
    # The protected header names the statement content type: no reading carries one.
    assert signed.message.protected_header[3] == STATEMENT_CONTENT_TYPE
    with pytest.raises(MalformedError):
        Envelope.decode(raw)
    with pytest.raises(StatementError):
        statement.revocation()


def test_revocation_round_trip() -> None:
    revocation = Revocation("pump-7", DEVICE.kid, 1_700_000_500_000, "lost in the field")
    raw = sign_statement(revocation_statement(2, 1_700_000_000_001, revocation), COLLECTOR)
    statement = SignedStatement.decode(raw).verify(COLLECTOR.public)
    assert statement.type == REVOKE and statement.revocation() == revocation


def test_a_reading_is_not_a_statement() -> None:
    reading = cbor.encode(cbor2.CBORTag(18, [cbor.encode({1: -7, 4: DEVICE.kid}), {}, b"x",
                                             bytes(64)]))
    assert not is_statement(reading)
    with pytest.raises(StatementError):
        SignedStatement.decode(reading)


def test_another_key_or_a_changed_payload_fails() -> None:
    raw = sign_statement(enrolment_statement(1, 5, Enrolment("a", DEVICE.public, 4)), COLLECTOR)
    with pytest.raises(SignatureError):
        SignedStatement.decode(raw).verify(DEVICE.public)
    # Same length, one field changed: the signature no longer holds.
    forged = raw.replace(b"\x61a", b"\x61b", 1)
    assert forged != raw
    with pytest.raises(SignatureError):
        SignedStatement.decode(forged).verify(COLLECTOR.public)


def test_open_type_set_and_field_rules() -> None:
    erase = Statement("erase", 3, 10, {"device": "a", "seqs": [1, 2]})
    raw = sign_statement(erase, COLLECTOR)
    back = SignedStatement.decode(raw).verify(COLLECTOR.public)
    assert back == erase
    for bad in (lambda: Statement("Enrol", 1, 1), lambda: Statement("enrol", 0, 1),
                lambda: Statement("enrol", 1, -1), lambda: Statement("x", 1, 1, {"seq": 1})):
        with pytest.raises(StatementError):
            bad()
    with pytest.raises(StatementError):
        Statement(ENROL, 1, 1, {"device": "a"}).enrolment()
    with pytest.raises(StatementError):  # not a valid device id
        Statement(ENROL, 1, 1, {"device": "@x", "key": DEVICE.public.der,
                                "enrolled": 1}).enrolment()


def test_payload_must_be_deterministic() -> None:
    good = Statement(ENROL, 1, 1, Enrolment("a", DEVICE.public, 1).to_fields()).to_payload()
    # The same map with its keys in another order.
    value = cbor2.loads(good)
    shuffled = cbor2.dumps(dict(reversed(list(value.items()))))
    assert shuffled != good
    with pytest.raises(StatementError):
        Statement.from_payload(shuffled)
    protected = cbor.encode({1: -7, 3: STATEMENT_CONTENT_TYPE, 4: COLLECTOR.kid})
    signature = COLLECTOR.sign(to_be_signed(protected, shuffled))
    raw = cbor.encode(cbor2.CBORTag(18, [protected, {}, shuffled, signature]))
    with pytest.raises(StatementError):
        SignedStatement.decode(raw)
