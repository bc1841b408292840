"""Stateless checks (collector.admission.verify) and the registry, without a broker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.admission.registry import DeviceKey, Registry, RegistrySnapshot, parse_enrolment_text
from collector.admission.verify import (
    Rejected,
    Verified,
    registry_for,
    topic_device,
    verify_batch,
    verify_message,
)
from collector.errors import RegistryError
from provenance.envelope import Envelope
from provenance.merkle import RFC9162_SHA256
from provenance.reading import GAP_KIND, Gap
from tests.support.collector import Device, now_ms


@pytest.mark.parametrize("topic, device", [
    ("sensorledger/v1/water-01/reading", "water-01"),
    ("sensorledger/v1/a.b_c-d/reading", "a.b_c-d"),
    ("sensorledger/v1/bad id/reading", None),
    ("sensorledger/v1//reading", None),
    ("sensorledger/v2/water-01/reading", None),
    ("sensorledger/v1/water-01/status", None),
])
def test_topic_device(topic: str, device: str | None) -> None:
    assert topic_device(topic) == device


def registry(*entries: tuple[Device, str, int | None]) -> Registry:
    return Registry(1, [DeviceKey(d.key.kid, owner, d.key.public.der, 0, revoked)
                        for d, owner, revoked in entries])


def test_a_good_reading_verifies_with_everything_the_writer_needs() -> None:
    d = Device("v-01")
    env = d.next()
    d.seq = 10  # seqs 1..9 dropped
    gap = d.next(kind=GAP_KIND, gap=Gap(5, 9), measurements=())
    reg = registry((d, "v-01", None))
    out = verify_message(reg, d.topic, env, now_ms(), 60_000)
    assert isinstance(out, Verified)
    assert (out.device_id, out.seq, out.boot, out.kind, out.gap) == ("v-01", 0, 1, "water", None)
    assert out.envelope_hash == Envelope.decode(env).hash
    assert out.leaf_hash == RFC9162_SHA256.hash_leaf(env)
    assert out.kid == d.key.kid
    out2 = verify_message(reg, d.topic, gap, now_ms(), 60_000)
    assert isinstance(out2, Verified) and out2.gap == (5, 9) and out2.prev == out.envelope_hash


def test_revocation_applies_from_its_effective_device_time() -> None:
    d = Device("v-02")
    t = now_ms()
    before = d.next(time_ms=t - 10)
    at = d.next(time_ms=t)
    reg = registry((d, "v-02", t))
    assert isinstance(verify_message(reg, d.topic, before, t, 60_000), Verified)
    out = verify_message(reg, d.topic, at, t, 60_000)
    assert isinstance(out, Rejected) and out.reason == "revoked_key"
    assert (out.device_id, out.seq) == ("v-02", 1)  # signed, so attributable


def test_unsigned_failures_are_not_attributed_to_a_device() -> None:
    d = Device("v-03")
    env = bytearray(d.next())
    env[-1] ^= 1
    out = verify_message(registry((d, "v-03", None)), d.topic, bytes(env), now_ms(), 60_000)
    assert isinstance(out, Rejected) and out.reason == "bad_signature"
    assert (out.device_id, out.seq) == (None, None)


def test_the_clock_bound_is_exclusive_of_the_limit() -> None:
    d = Device("v-04")
    t = now_ms()
    reg = registry((d, "v-04", None))
    assert isinstance(verify_message(reg, d.topic, d.next(time_ms=t + 60_000), t, 60_000),
                      Verified)
    out = verify_message(reg, d.topic, d.next(time_ms=t + 60_001), t, 60_000)
    assert isinstance(out, Rejected) and out.reason == "clock_skew"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    d = Device("v-05")
    out = verify_message(registry((d, "v-05", None)), d.topic, data, now_ms(), 60_000)
    assert isinstance(out, Rejected)


def test_verify_batch_rebuilds_the_registry_only_when_its_version_changes() -> None:
    d = Device("v-06")
    env = d.next()
    keys = [DeviceKey(d.key.kid, "v-06", d.key.public.der, 0)]
    empty = RegistrySnapshot.of(10, [])
    full = RegistrySnapshot.of(11, keys)
    assert verify_batch(empty, [(d.topic, env, now_ms())], 60_000)[0].reason == "unknown_key"
    assert isinstance(verify_batch(full, [(d.topic, env, now_ms())], 60_000)[0], Verified)


def test_the_registry_keys_by_the_key_itself_not_a_stored_id() -> None:
    d = Device("v-07")
    reg = Registry(1, [DeviceKey(b"\x00" * 32, "v-07", d.key.public.der, 0)])
    assert reg.lookup(d.key.kid) is not None and reg.lookup(b"\x00" * 32) is None


# enrolment text -----------------------------------------------------------------------------

def test_enrolment_accepts_what_the_agent_prints() -> None:
    key = Device("e-01").key.public
    plain = key.to_pem()
    with_kid = f"{key.to_pem()}key id: {key.kid_hex}\n"
    as_json = json.dumps({"device_id": "e-01", "kid": key.kid_hex, "pem": key.to_pem()})
    for text in (plain, with_kid, as_json):
        assert parse_enrolment_text(text).key.kid == key.kid
    assert parse_enrolment_text(as_json).device_id == "e-01"


def test_enrolment_refuses_a_key_id_that_does_not_match() -> None:
    key = Device("e-02").key.public
    other = Device("e-03").key.public
    with pytest.raises(RegistryError, match="does not match"):
        parse_enrolment_text(f"{key.to_pem()}key id: {other.kid_hex}\n")
    with pytest.raises(RegistryError, match="does not match"):
        parse_enrolment_text(key.to_pem(), expected_kid=other.kid_hex)
    with pytest.raises(RegistryError, match="no PEM public key"):
        parse_enrolment_text("hello")
    with pytest.raises(RegistryError, match="more than one"):
        parse_enrolment_text(key.to_pem() + other.to_pem())


@pytest.mark.parametrize("step", ["_open", "_check_signature", "_check_reading"])
def test_a_verifier_failure_quarantines_one_message_not_the_batch(
        monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    import collector.admission.verify as verify_module

    d = Device("v-08")
    good, poison, after = d.next(), d.next(), d.next()
    real = getattr(verify_module, step)

    def flaky(*args: Any) -> object:
        if poison in (arg if isinstance(arg, bytes) else getattr(arg, "payload", None)
                      for arg in args):
            raise RecursionError("deeply nested")
        return real(*args)

    monkeypatch.setattr(verify_module, step, flaky)
    # Workers cache the registry by version: a fresh key needs a version of its own.
    version = {"_open": 20, "_check_signature": 22, "_check_reading": 23}[step]
    snapshot = RegistrySnapshot.of(version, [DeviceKey(d.key.kid, "v-08", d.key.public.der, 0)])
    out = verify_batch(snapshot, [(d.topic, m, now_ms()) for m in (good, poison, after)],
                       60_000)
    assert isinstance(out[0], Verified) and isinstance(out[2], Verified)
    assert isinstance(out[1], Rejected) and out[1].reason == "unverifiable"
    assert "RecursionError" in out[1].detail


def test_a_batch_gives_what_one_message_at_a_time_gives() -> None:
    """Every stateless outcome, mixed in one batch, in order."""
    from provenance.envelope import sign

    good, other, revoked, stranger = Device("v-10"), Device("v-11"), Device("v-12"), Device("x")
    t = now_ms()
    forged = bytearray(good.next())
    forged[-2] ^= 0x10
    items = [
        (good.topic, good.next(), t),
        ("sensorledger/v1/bad topic/reading", good.next(), t),
        (good.topic, b"\xff\x00", t),
        (good.topic, bytes(forged), t),
        (stranger.topic, stranger.next(), t),
        (good.topic, sign(b"\xa1\x01\x02", good.key), t),           # signed, not a reading
        (other.topic, good.next(), t),                                # topic names another device
        (good.topic, other.next(device_id="v-10"), t),                # key enrolled for v-11
        (revoked.topic, revoked.next(time_ms=t), t),
        (good.topic, good.next(time_ms=t + 120_000), t),              # from the future
        (good.topic, good.next(), t),
    ]
    snapshot = RegistrySnapshot.of(21, [
        DeviceKey(good.key.kid, "v-10", good.key.public.der, 0),
        DeviceKey(other.key.kid, "v-11", other.key.public.der, 0),
        DeviceKey(revoked.key.kid, "v-12", revoked.key.public.der, 0, revoked_ms=t - 1),
    ])
    one_by_one = [verify_message(registry_for(snapshot), topic, payload, received, 60_000)
                  for topic, payload, received in items]
    assert verify_batch(snapshot, items, 60_000) == one_by_one
    assert [o.reason if isinstance(o, Rejected) else "ok" for o in one_by_one] == [
        "ok", "bad_topic", "not_cbor", "bad_signature", "unknown_key", "bad_payload",
        "topic_mismatch", "device_key_mismatch", "revoked_key", "clock_skew", "ok"]
