"""Must-show 2: table-driven bad input. Each message lands in quarantine with the right reason
(or in the duplicate counter), and good readings keep being accepted in between. The audit
holds a stored reading to the same verdict as ingest, on the same table."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import cbor2
import pytest

from collector.admission.registry import DeviceKey, RegistrySnapshot
from collector.admission.verify import Rejected, Verified, verify_batch
from collector.tools.audit import AUDIT_CHECKS, audit_envelopes
from provenance import cbor
from provenance.envelope import Envelope, sign, sign_reading, to_be_signed
from provenance.keys import P256_ORDER
from provenance.wire import reading_topic
from tests.support.broker import Broker
from tests.support.collector import (
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    now_ms,
    run_cli,
)
from tests.support.polling import wait_until


@dataclass
class Fleet:
    good: Device  # the control device: one good reading after every bad message
    victim: Device  # its own history is attacked (replay, equivocation, broken chain)
    stranger: Device  # never enrolled
    retired: Device  # enrolled, then revoked while the collector runs
    other: Device  # enrolled; its key signs readings that claim to be someone else's


def wrong_algorithm(f: Fleet) -> tuple[str, bytes]:
    reading = f.victim.reading(seq=10_000)
    protected = cbor.encode({1: -35, 4: f.victim.key.kid})  # ES384 label, P-256 key
    payload = reading.to_payload()
    sig = f.victim.key.sign(to_be_signed(protected, payload))
    return f.victim.topic, cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig]))


def bad_signature(f: Fleet) -> tuple[str, bytes]:
    env = bytearray(sign_reading(f.victim.reading(), f.victim.key))
    env[-5] ^= 0x40  # inside the 64-byte r||s signature at the end
    return f.victim.topic, bytes(env)


def equivocation(f: Fleet) -> tuple[str, bytes]:
    # Same device and seq as the last accepted reading, different content.
    old = Envelope.decode(f.victim.sent[-1]).reading()
    forged = replace(old, time_ms=old.time_ms + 1)
    return f.victim.topic, sign_reading(forged, f.victim.key)


def broken_prev(f: Fleet) -> tuple[str, bytes]:
    return f.victim.topic, sign_reading(f.victim.reading(prev=os.urandom(32)), f.victim.key)


def non_deterministic(f: Fleet) -> tuple[str, bytes]:
    body = cbor2.loads(f.victim.reading().to_payload())
    shuffled = dict(reversed(list(body.items())))  # same map, keys out of order
    return f.victim.topic, sign(cbor2.dumps(shuffled), f.victim.key)


def not_a_reading(f: Fleet) -> tuple[str, bytes]:
    return f.victim.topic, sign(cbor.encode({1: 1, 2: f.victim.device_id}), f.victim.key)


def high_s_twin(envelope: bytes) -> bytes:
    """The envelope with its signature (r, s) replaced by (r, n - s): no key needed, and it
    verifies just as well (issue 13, defect 4)."""
    s = int.from_bytes(envelope[-32:], "big")
    return envelope[:-32] + (P256_ORDER - s).to_bytes(32, "big")


def high_s(f: Fleet) -> tuple[str, bytes]:
    # The twin of the victim's next genuine reading, sent before it (the genuine one follows
    # at the end of the table and must still be accepted).
    return f.victim.topic, high_s_twin(sign_reading(f.victim.reading(), f.victim.key))


def signed_with_protected(f: Fleet, protected: bytes) -> tuple[str, bytes]:
    """A reading the victim's own key signs, under the protected header bytes given."""
    payload = f.victim.reading(seq=20_000).to_payload()
    sig = f.victim.key.sign(to_be_signed(protected, payload))
    return f.victim.topic, cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig]))


def protected_repeats_kid(f: Fleet) -> tuple[str, bytes]:
    # Issue 13, defect 3: a3 01 26 04 5820 <32 bytes> 04 5820 <kid>
    kid = f.victim.key.kid
    return signed_with_protected(
        f, bytes.fromhex("a30126045820") + bytes(32) + bytes.fromhex("045820") + kid)


def protected_repeats_alg(f: Fleet) -> tuple[str, bytes]:
    # Issue 13, defect 3: a3 01 3822 01 26 04 5820 <kid> (ES384, then ES256)
    return signed_with_protected(f, bytes.fromhex("a30138220126045820") + f.victim.key.kid)


def protected_unsorted(f: Fleet) -> tuple[str, bytes]:
    # {4: kid, 1: -7}: the right labels, not in deterministic order
    return signed_with_protected(f, bytes.fromhex("a2045820") + f.victim.key.kid
                                 + bytes.fromhex("0126"))


CASES: list[tuple[str, Callable[[Fleet], tuple[str, bytes]], str]] = [
    ("random bytes",
     lambda f: (f.victim.topic, random.Random(7).randbytes(300)), "not_cbor"),
    ("truncated CBOR",
     lambda f: (f.victim.topic, sign_reading(f.victim.reading(), f.victim.key)[:-20]),
     "not_cbor"),
    ("valid CBOR, not COSE",
     lambda f: (f.victim.topic, cbor2.dumps({"hello": "world", "n": [1, 2, 3]})), "not_cose"),
    ("wrong algorithm", wrong_algorithm, "wrong_algorithm"),
    ("unknown key",
     lambda f: (f.stranger.topic, f.stranger.next()), "unknown_key"),
    ("revoked key",
     lambda f: (f.retired.topic, f.retired.next()), "revoked_key"),
    ("bad signature", bad_signature, "bad_signature"),
    ("topic/device mismatch",
     lambda f: (f.good.topic, sign_reading(f.victim.reading(), f.victim.key)), "topic_mismatch"),
    ("key enrolled for another device",
     lambda f: (f.victim.topic, sign_reading(f.victim.reading(), f.other.key)),
     "device_key_mismatch"),
    ("replayed duplicate", lambda f: (f.victim.topic, f.victim.sent[-1]), "duplicate"),
    ("equivocation", equivocation, "equivocation"),
    ("broken prev", broken_prev, "chain_break"),
    ("far-future timestamp",
     lambda f: (f.victim.topic, sign_reading(
         f.victim.reading(time_ms=now_ms() + 24 * 3600 * 1000), f.victim.key)), "clock_skew"),
    ("1 MB payload",
     lambda f: (f.victim.topic, random.Random(8).randbytes(1 << 20)), "oversized"),
    ("non-deterministic payload", non_deterministic, "not_deterministic"),
    ("signed CBOR that is not a reading", not_a_reading, "bad_payload"),
    ("device id not allowed in a topic",
     lambda f: (reading_topic("bad id!"), f.victim.sent[-1]), "bad_topic"),
    ("protected header repeats the kid", protected_repeats_kid, "not_cose"),
    ("protected header repeats the alg", protected_repeats_alg, "not_cose"),
    ("protected header not in deterministic order", protected_unsorted, "not_cose"),
    ("high-S twin of a genuine reading", high_s, "high_s"),
]


def test_bad_input_is_quarantined_and_good_readings_keep_flowing(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]
) -> None:
    fleet = Fleet(Device("good-01"), Device("victim-01"), Device("stranger-01"),
                  Device("retired-01"), Device("other-01"))
    ledger.enrol([fleet.good, fleet.victim, fleet.retired, fleet.other])
    col = collector("--block-age", "0.2").start()
    pub = Publisher(broker)

    def stored(device: Device) -> int:
        return int(ledger.sql("SELECT COUNT(*) FROM readings WHERE device_id = ?",
                              (device.device_id,))[0][0])

    def good_reading_accepted() -> None:
        before = stored(fleet.good)
        pub.publish([(fleet.good.topic, fleet.good.next())])
        wait_until(lambda: stored(fleet.good) == before + 1, 20, 0.02, "good reading stored")

    # Some history for the victim and the retired device, then retire the latter.
    pub.publish([(fleet.victim.topic, fleet.victim.next()) for _ in range(3)])
    pub.publish([(fleet.retired.topic, fleet.retired.next())])
    wait_until(lambda: stored(fleet.victim) == 3 and stored(fleet.retired) == 1, 20, 0.02)
    result = run_cli("devices", "revoke", "--db", ledger.db, fleet.retired.device_id,
                     "--reason", "test")
    assert result.exit_code == 0, result.output
    col.wait_event("registry_reloaded", 10)
    good_reading_accepted()

    for name, build, expected in CASES:
        readings_before = ledger.count("readings")
        quarantined_before = ledger.count("quarantine")
        duplicates_before = ledger.stats()["duplicates"]
        pub.publish([build(fleet)])
        if expected == "duplicate":
            wait_until(lambda b=duplicates_before: ledger.stats()["duplicates"] == b + 1,
                       20, 0.05, f"{name}: duplicate counted")
            assert ledger.count("quarantine") == quarantined_before, name
        else:
            wait_until(lambda q=quarantined_before: ledger.count("quarantine") == q + 1,
                       20, 0.02, f"{name}: quarantined")
            reason = ledger.sql("SELECT reason FROM quarantine ORDER BY id DESC LIMIT 1")[0][0]
            assert reason == expected, f"{name}: quarantined as {reason}, expected {expected}"
        assert ledger.count("readings") == readings_before, f"{name} must not be stored"
        good_reading_accepted()

    # The attacked device's own next good reading is still accepted.
    pub.publish([(fleet.victim.topic, fleet.victim.next())])
    wait_until(lambda: stored(fleet.victim) == 4, 20, 0.02, "victim's next reading stored")

    # What quarantine kept: raw bytes (truncated only for the oversized one), reasons, devices.
    rows = {r[0]: r[1:] for r in ledger.sql(
        "SELECT reason, size, length(raw), device_id, topic_device, seq FROM quarantine")}
    assert rows["oversized"][:2] == (1 << 20, 4096)
    assert rows["bad_signature"][0] == rows["bad_signature"][1]  # kept whole
    assert rows["equivocation"][2:] == (fleet.victim.device_id, fleet.victim.device_id, 2)
    assert rows["unknown_key"][2:4] == (None, fleet.stranger.device_id)  # unsigned: topic only
    assert rows["topic_mismatch"][2:4] == (fleet.victim.device_id, fleet.good.device_id)
    evidence = ledger.sql("SELECT raw FROM quarantine WHERE reason = 'equivocation'")[0][0]
    assert evidence != fleet.victim.sent[2]  # the conflicting bytes, beside the stored ones
    assert any(e.get("event") == "equivocation" and e.get("level") == "error"
               for e in col.events), "equivocation must raise an alarm in the log"

    stats = ledger.stats()
    assert stats["quarantined_by_reason"] == Counter(r for _, _, r in CASES if r != "duplicate")
    victim = stats["devices"][fleet.victim.device_id]
    assert (victim["accepted"], victim["duplicates"], victim["equivocations"],
            victim["chain_breaks"], victim["missing"]) == (4, 1, 1, 1, 0)
    assert stats["devices"][fleet.good.device_id]["accepted"] == len(CASES) + 1

    pub.close()
    assert col.stop() == 0  # bad input never stopped it
    audit = run_cli("audit", "--db", ledger.db)
    assert audit.exit_code == 0, audit.output


def test_a_device_enrolled_while_running_is_accepted_at_once(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]
) -> None:
    late = Device("late-01")
    col = collector().start()
    with Publisher(broker) as pub:
        pub.publish([(late.topic, late.next())])
        wait_until(lambda: ledger.count("quarantine") == 1, 20, 0.02)
        assert ledger.quarantine()[0][0] == "unknown_key"
        ledger.enrol([late])
        pub.publish([(late.topic, late.next())])  # seq 1: verified against the new registry
        wait_until(lambda: ledger.count("readings") == 1, 20, 0.02)
    assert col.stop() == 0
    row = ledger.stats()["devices"]["late-01"]
    # seq 0 never made it into the ledger (it is in quarantine): an unexplained gap.
    assert (row["accepted"], row["missing"], row["unexplained"]) == (1, 1, 1)
    assert row["gap_ranges"] == [[0, 0, None]]


@pytest.mark.parametrize("kind", ["reading", "gap record"])
def test_gaps_are_reported_and_gap_records_explain_them(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], kind: str
) -> None:
    dev = Device("gappy-01")
    ledger.enrol([dev])
    col = collector().start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(3)])  # seqs 0..2
        dropped = [dev.next() for _ in range(4)]  # seqs 3..6: signed, never published
        if kind == "gap record":
            pub.publish([(dev.topic, dev.gap_record(3, 6))])  # seq 7, names 3..6 as dropped
        pub.publish([(dev.topic, dev.next())])
        wait_until(lambda: ledger.count("readings") == (5 if kind == "gap record" else 4), 20)
        row = ledger.stats()["devices"][dev.device_id]
        assert row["missing"] == 4
        assert row["unexplained"] == (0 if kind == "gap record" else 4)
        if kind == "reading":
            # The missing readings arrive late: accepted, the gap closes.
            pub.publish([(dev.topic, env) for env in dropped])
            wait_until(lambda: ledger.count("readings") == 8, 20)
            row = ledger.stats()["devices"][dev.device_id]
            assert (row["missing"], row["out_of_order"], row["chain_breaks"]) == (0, 4, 0)
    assert any(e.get("event") == "sequence_gap" for e in col.events)
    assert col.stop() == 0
    assert run_cli("audit", "--db", ledger.db).exit_code == 0



# Verdicts that only ingest can give, with why the audit of a stored reading cannot:
_INGEST_ONLY = {
    "oversized": "size is judged before decoding, as the message arrives",
    "bad_topic": "a stored reading has no topic",
    "topic_mismatch": "a stored reading has no topic (its row's device is compared instead)",
    "clock_skew": "judged against the collector clock on arrival",
    "duplicate": "per-device state (the audit checks chains and seqs itself)",
    "equivocation": "per-device state (the audit checks chains and seqs itself)",
    "chain_break": "per-device state (the audit checks chains and seqs itself)",
}


def test_audit_and_ingest_give_the_same_verdict_on_the_bad_input_table() -> None:
    """One reading verifier: every stateless rule ingest quarantines by, the audit reports as
    a finding about a stored reading with the same words; the arrival rules that a stored
    reading may rightly have passed (revocation, high-S) are the audit's warnings."""
    fleet = Fleet(Device("good-01"), Device("victim-01"), Device("stranger-01"),
                  Device("retired-01"), Device("other-01"))
    for _ in range(3):
        fleet.victim.next()
    snapshot = RegistrySnapshot.of(900, [
        DeviceKey(d.key.kid, d.device_id, d.key.public.der, 0,
                  revoked_ms=1 if d is fleet.retired else None)  # revoked from the start
        for d in (fleet.good, fleet.victim, fleet.retired, fleet.other)])
    compared = 0
    for name, build, expected in CASES:
        topic, message = build(fleet)
        audited = audit_envelopes(snapshot, [message])[0]
        if expected in _INGEST_ONLY:
            if expected != "oversized":  # the envelope itself is sound: no finding
                assert len(audited) == 7, (name, audited)
            continue
        ingested = verify_batch(snapshot, [(topic, message, now_ms())], 60_000)[0]
        assert isinstance(ingested, Rejected) and ingested.reason == expected, name
        if expected == "revoked_key":
            assert len(audited) >= 7 and audited[6] is True, name  # the revocation warning
        elif expected == "high_s":
            assert len(audited) == 8 and audited[7] == "high_s", name  # the high-S warning
        else:
            assert audited == (AUDIT_CHECKS[expected], ingested.detail), name
            compared += 1
    assert compared >= 10
    # ... and a good reading passes both.
    message = fleet.good.next()
    assert isinstance(verify_batch(snapshot, [(fleet.good.topic, message, now_ms())], 60_000)[0],
                      Verified)
    assert audit_envelopes(snapshot, [message])[0][:2] == ("good-01", 0)


def test_a_high_s_twin_sent_first_neither_displaces_nor_hides_the_genuine_reading(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]
) -> None:
    """Issue 13, defect 4: E' = (r, n - s) of a genuine seq 0, published before it, used to be
    stored as seq 0, get the genuine one quarantined as equivocation and seq 1 as chain_break."""
    dev = Device("framed-01")
    ledger.enrol([dev])
    genuine = [dev.next() for _ in range(3)]
    forged = high_s_twin(genuine[0])
    assert Envelope.decode(forged).low_s is False and Envelope.decode(genuine[0]).low_s
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, forged)])
        pub.publish([(dev.topic, env) for env in genuine])
        wait_until(lambda: ledger.count("readings") == 3, 20, 0.02, "genuine readings stored")
    assert col.stop() == 0
    stored = ledger.sql("SELECT seq, envelope FROM readings WHERE device_id = ? ORDER BY seq",
                        (dev.device_id,))
    assert [(seq, bytes(env)) for seq, env in stored] == list(enumerate(genuine))
    assert ledger.quarantine() == [("high_s", dev.device_id, 0, 1)]
    assert not any(e.get("event") == "equivocation" for e in col.events)
    row = ledger.stats()["devices"][dev.device_id]
    assert (row["accepted"], row["equivocations"], row["chain_breaks"], row["missing"]) == (
        3, 0, 0, 0)
    audit = run_cli("audit", "--db", ledger.db)
    assert audit.exit_code == 0 and "high-S" not in audit.output, audit.output
