"""Private readings in the core: commitments, openings, COSE encryption and its interop."""

from __future__ import annotations

import hashlib

import pytest
from pycose.algorithms import A256GCM, EcdhEsA256KW
from pycose.headers import IV, KID, Algorithm, StaticKey
from pycose.keys import EC2Key, SymmetricKey
from pycose.keys.curves import P256
from pycose.messages import CoseMessage, Enc0Message, EncMessage
from pycose.messages.recipient import KeyAgreementWithKeyWrap

from provenance import cose_encrypt
from provenance.envelope import Envelope, sign_reading
from provenance.errors import MalformedError
from provenance.keys import PrivateKey
from provenance.private_message import PrivateMessage
from provenance.reading import GENESIS_PREV, Reading
from provenance.reading_head import read_head
from provenance.sealed_values import CommitmentError, Opening, commit, seal
from provenance.senml import Measurement


def _values(spo2: int = 97, pulse: int = 72) -> tuple[Measurement, ...]:
    return (Measurement(name="spo2", value=spo2, unit="%"),
            Measurement(name="pulse", value=pulse, unit="1/min"))


def _private_reading(opening: Opening) -> Reading:
    return Reading(device_id="ward3-bed12", seq=5, boot=1, time_ms=1_780_000_000_000,
                   clock_synced=True, prev=GENESIS_PREV, kind="pulse-oximeter",
                   commitment=opening.commitment)


def test_commitment_is_sha256_of_salt_and_values_and_opening_round_trips() -> None:
    opening = seal(_values(), {"finger_out": False})
    assert opening.commitment == hashlib.sha256(opening.salt + opening.values).digest()
    again = Opening.decode(opening.encode())
    assert again == opening
    again.check(opening.commitment)
    measurements, event = again.reveal()
    assert measurements == _values() and event == {"finger_out": False}
    # Two readings of the same values never share a commitment: the salt is fresh.
    assert seal(_values(), None).commitment != seal(_values(), None).commitment


def test_wrong_opening_is_refused() -> None:
    opening = seal(_values(), None)
    other = Opening(opening.salt, seal(_values(96), None, salt=opening.salt).values)
    with pytest.raises(CommitmentError, match="do not hash"):
        other.check(opening.commitment)
    with pytest.raises(CommitmentError, match="no commitment"):
        opening.check(None)


def test_private_reading_payload_carries_no_values_and_verifies() -> None:
    key = PrivateKey.generate()
    opening = seal(_values(), None)
    reading = _private_reading(opening)
    envelope = sign_reading(reading, key)
    parsed = Envelope.decode(envelope)
    parsed.verify(key.public)
    back = parsed.reading()
    assert back.commitment == opening.commitment and back.measurements == ()
    assert read_head(parsed.payload).commitment == opening.commitment
    assert b"spo2" not in envelope and opening.salt not in envelope
    with pytest.raises(MalformedError, match="commitment only"):
        Reading(device_id="d", seq=1, boot=0, time_ms=0, clock_synced=True, prev=GENESIS_PREV,
                kind="k", measurements=_values(), commitment=bytes(32))
    with pytest.raises(MalformedError, match="32-byte"):
        Reading(device_id="d", seq=1, boot=0, time_ms=0, clock_synced=True, prev=GENESIS_PREV,
                kind="k", commitment=b"short")


def test_public_payloads_are_unchanged() -> None:
    """A reading without a commitment encodes as before: no key 12, the fast path reads it."""
    reading = Reading(device_id="d", seq=1, boot=0, time_ms=0, clock_synced=True,
                      prev=GENESIS_PREV, kind="k", measurements=_values())
    payload = reading.to_payload()
    assert payload[0] == 0xA9  # nine keys, as wire format v1 always had
    assert read_head(payload).commitment is None


def test_guessing_spo2_from_a_proof_without_the_salt_confirms_nothing() -> None:
    """The attacker knows everything public (the signed payload, the device key) and that SpO2
    is an integer 70..100 with a pulse 30..250; without the salt no candidate matches, while
    the same search against an unsalted hash finds the value at once."""
    key = PrivateKey.generate()
    opening = seal(_values(93, 64), None)
    envelope = sign_reading(_private_reading(opening), key)
    signed = Envelope.decode(envelope).reading()
    assert signed.commitment is not None
    candidates = [seal(_values(s, p), None, salt=bytes(32)).values
                  for s in range(70, 101) for p in range(30, 251)]
    # Every guess with any salt the attacker can name (none, zeros) fails.
    for guess in candidates:
        assert hashlib.sha256(guess).digest() != signed.commitment
        assert commit(bytes(32), guess) != signed.commitment
    # The value is confirmable only with the salt, which proofs without disclosure never hold.
    hits = [g for g in candidates if commit(opening.salt, g) == signed.commitment]
    assert hits == [opening.values]
    # Contrast: an unsalted commitment is broken by the same 6,851 guesses.
    unsalted = hashlib.sha256(opening.values).digest()
    assert [g for g in candidates if hashlib.sha256(g).digest() == unsalted] == [opening.values]


def test_encrypt0_round_trip_and_tamper() -> None:
    kid, key = cose_encrypt.new_data_key()
    sealed = cose_encrypt.encrypt0(key, kid, b"opening bytes")
    assert cose_encrypt.Sealed.decode(sealed).kid == kid
    assert cose_encrypt.decrypt0(key, sealed) == b"opening bytes"
    with pytest.raises(cose_encrypt.DecryptionError):
        cose_encrypt.decrypt0(cose_encrypt.new_data_key()[1], sealed)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(cose_encrypt.DecryptionError):
        cose_encrypt.decrypt0(key, flipped)


def test_grant_opens_only_for_its_reader() -> None:
    reader, other = PrivateKey.generate(), PrivateKey.generate()
    kid, key = cose_encrypt.new_data_key()
    grant = cose_encrypt.grant_key(kid, key, reader.public)
    assert cose_encrypt.Grant.decode(grant).reader_kid == reader.public.kid
    assert cose_encrypt.open_grant(grant, reader) == (kid, key)
    with pytest.raises(cose_encrypt.DecryptionError, match="not for"):
        cose_encrypt.open_grant(grant, other)


def test_private_message_round_trip() -> None:
    kid, key = cose_encrypt.new_data_key()
    opening = seal(_values(), None)
    message = PrivateMessage(b"\xd2envelope", "patient-17",
                             cose_encrypt.encrypt0(key, kid, opening.encode()), ())
    assert PrivateMessage.decode(message.encode()) == message
    with pytest.raises(MalformedError):
        PrivateMessage.decode(b"\xa0")
    with pytest.raises(MalformedError, match="subject"):
        PrivateMessage(b"", "../etc", b"", ())


# --- interop with pycose (an independent COSE implementation) ----------------------------


def _pycose_key(reader: PrivateKey) -> EC2Key:
    numbers = reader.key.private_numbers()
    return EC2Key(crv=P256, x=numbers.public_numbers.x.to_bytes(32, "big"),
                  y=numbers.public_numbers.y.to_bytes(32, "big"),
                  d=numbers.private_value.to_bytes(32, "big"))


def test_pycose_opens_our_grant_and_sealed_values_with_the_reader_key() -> None:
    reader = PrivateKey.generate()
    kid, key = cose_encrypt.new_data_key()
    opening = seal(_values(), {"finger_out": True})
    sealed = cose_encrypt.encrypt0(key, kid, opening.encode())
    grant = cose_encrypt.grant_key(kid, key, reader.public)

    grant_msg = CoseMessage.decode(grant)
    assert isinstance(grant_msg, EncMessage)
    grant_msg.recipients[0].key = _pycose_key(reader)
    data_key = grant_msg.decrypt(grant_msg.recipients[0])
    assert data_key == key

    enc0 = CoseMessage.decode(sealed)
    assert isinstance(enc0, Enc0Message)
    enc0.key = SymmetricKey(k=data_key)
    plain = enc0.decrypt()
    Opening.decode(plain).check(opening.commitment)


def test_we_open_a_grant_and_sealed_values_made_by_pycose() -> None:
    reader = PrivateKey.generate()
    public = reader.public.key.public_numbers()
    reader_cose = EC2Key(crv=P256, x=public.x.to_bytes(32, "big"), y=public.y.to_bytes(32, "big"))
    kid, key = cose_encrypt.new_data_key()

    recipient = KeyAgreementWithKeyWrap(
        phdr={Algorithm: EcdhEsA256KW}, uhdr={KID: reader.public.kid},
        payload=key)  # pycose wraps the payload it is given as the content key
    recipient.local_attrs = {StaticKey: reader_cose}
    inner_key = SymmetricKey.generate_key(32)
    recipient.payload = inner_key.k
    grant_msg = EncMessage(phdr={Algorithm: A256GCM}, uhdr={IV: bytes(range(12)), KID: kid},
                           payload=key, recipients=[recipient])
    grant = grant_msg.encode()
    assert cose_encrypt.open_grant(grant, reader) == (kid, key)

    opening = seal(_values(88, 110), None)
    enc0 = Enc0Message(phdr={Algorithm: A256GCM}, uhdr={IV: bytes(12), KID: kid},
                       payload=opening.encode(), key=SymmetricKey(k=key))
    plain = cose_encrypt.decrypt0(key, enc0.encode())
    Opening.decode(plain).check(opening.commitment)
    assert Opening.decode(plain).reveal()[0] == _values(88, 110)
