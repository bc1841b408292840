"""The audit's worker function: every outcome, in order, from one mixed batch."""

from __future__ import annotations

import gc

import cbor2
import pytest

from collector.admission.registry import DeviceKey, RegistrySnapshot
from collector.tools.audit import audit_envelopes
from provenance.envelope import Envelope, sign
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV
from tests.support.collector import Device, now_ms


def test_one_batch_gives_each_envelope_its_own_outcome_in_order() -> None:
    good, other, stranger, revoked = Device("a-01"), Device("a-02"), Device("a-03"), Device("a-04")
    t = now_ms()
    first = good.next(time_ms=t - 5)
    second = good.next(time_ms=t - 4)
    forged = bytearray(good.next(time_ms=t - 3))
    forged[-1] ^= 0x01  # last byte of the signature
    unenrolled = stranger.next()
    not_a_reading = sign(cbor2.dumps({"hello": "world"}), good.key)
    # a-02's key, enrolled for a-02, signing a reading that claims to be a-01's (the payload
    # as it is: re-encoded by cbor2.dumps it would not be deterministic, a payload finding)
    impostor = sign(Envelope.decode(first).payload, other.key)
    late = revoked.next(time_ms=t)
    snapshot = RegistrySnapshot.of(7, [
        DeviceKey(good.key.kid, "a-01", good.key.public.der, 0),
        DeviceKey(other.key.kid, "a-02", other.key.public.der, 0),
        DeviceKey(revoked.key.kid, "a-04", revoked.key.public.der, 0, revoked_ms=t - 1),
    ])
    short_list = sign(cbor2.dumps([1, 2]), good.key)  # indexable, but not a reading
    batch = [first, b"\x00not cbor", second, bytes(forged), unenrolled, not_a_reading,
             impostor, late, short_list]

    out = audit_envelopes(snapshot, batch)

    assert len(out) == len(batch)
    assert out[0] == ("a-01", 0, 1, t - 5, "water", GENESIS_PREV, False)
    assert out[2] == ("a-01", 1, 1, t - 4, "water", Envelope.decode(first).hash, False)
    assert [o[0] for o in out if len(o) == 2] == [
        "envelope", "device signature", "device key", "payload", "device key binding",
        "payload"]
    assert out[4][1] == f"key id {stranger.key.kid.hex()} is not enrolled"
    assert "enrolled for 'a-02', envelope signs 'a-01'" in out[6][1]
    assert out[7][0] == "a-04" and out[7][6] is True  # signed after its key's revocation


def test_an_empty_batch() -> None:
    assert audit_envelopes(RegistrySnapshot.of(1, []), []) == []


def test_a_key_of_the_right_shape_but_never_enrolled_is_not_trusted() -> None:
    key = PrivateKey.generate()
    out = audit_envelopes(RegistrySnapshot.of(1, []), [Device("z-01", key=key).next()])
    assert out == [("device key", f"key id {key.kid.hex()} is not enrolled")]


@pytest.mark.parametrize("decoder", ["fast reader", "strict decoder"])
def test_a_decoder_crash_is_an_envelope_finding_not_a_failed_batch(
    monkeypatch: pytest.MonkeyPatch, decoder: str,
) -> None:
    """An exception the decoder was never meant to raise is a finding about that envelope,
    as it is a quarantine on ingest, and the rest of the batch is audited. Either decoder:
    the reader of the shape every device signs, and the strict one for any other bytes."""
    import collector.admission.verify as verify_module

    d = Device("a-05" if decoder == "fast reader" else "a-06")
    good, poison = d.next(), d.next()
    real_parts, real_decode = verify_module.signed_parts, Envelope.decode

    def parts(raw: bytes) -> object:
        if raw == poison:
            if decoder == "fast reader":
                raise RecursionError("deeply nested")
            return None  # the strict decoder's to read
        return real_parts(raw)

    def decode(raw: bytes) -> Envelope:
        if raw == poison:
            raise RecursionError("deeply nested")
        return real_decode(raw)

    monkeypatch.setattr(verify_module, "signed_parts", parts)
    monkeypatch.setattr(Envelope, "decode", staticmethod(decode))
    version = 8 if decoder == "fast reader" else 9
    snapshot = RegistrySnapshot.of(version, [DeviceKey(d.key.kid, d.device_id,
                                                       d.key.public.der, 0)])
    out = audit_envelopes(snapshot, [poison, good])
    assert out[0][0] == "envelope" and "RecursionError" in out[0][1]
    assert out[1][:2] == (d.device_id, 0)


def test_the_cycle_collector_is_paused_only_while_a_batch_is_checked() -> None:
    from collector.tools.audit_worker import cycle_collection_paused

    seen: list[bool] = []
    device = Device("a-05")
    snapshot = RegistrySnapshot.of(8, [DeviceKey(device.key.kid, "a-05",
                                                  device.key.public.der, 0)])
    assert gc.isenabled()
    with cycle_collection_paused():
        seen.append(gc.isenabled())
    seen.append(gc.isenabled())
    assert len(audit_envelopes(snapshot, [device.next()])[0]) == 7
    seen.append(gc.isenabled())
    gc.disable()
    try:  # a caller that turned it off keeps it off
        with cycle_collection_paused():
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
    finally:
        gc.enable()
    assert seen == [False, True, True, False, False]
