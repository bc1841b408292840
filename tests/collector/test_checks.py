"""Per-device checks (collector.admission.checks) and gap arithmetic (.gaps), without I/O."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.admission import gaps as gapmath
from collector.admission.checks import (
    MAX_SEQ_JUMP,
    Accept,
    DeviceChecks,
    Duplicate,
    KnownReading,
    Quarantine,
)
from collector.admission.gaps import SeqGap
from collector.admission.verify import Verified
from provenance.envelope import Envelope, sign_reading
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV, Reading
from provenance.senml import Measurement

DEV = "unit-01"
NOW = 1_767_225_600_000


class Chain:
    """Verified readings of one device, chained the way a device chains its envelopes."""

    def __init__(self) -> None:
        self.prev = GENESIS_PREV
        self.by_seq: dict[int, Verified] = {}

    def make(self, seq: int, *, boot: int = 1, prev: bytes | None = None, salt: bytes = b"",
             gap: tuple[int, int] | None = None, time_ms: int = NOW - 1000) -> Verified:
        envelope_hash = hashlib.sha256(f"{seq}".encode() + salt).digest()
        v = Verified(DEV, seq, boot, time_ms, self.prev if prev is None else prev, "water", gap,
                     envelope_hash, b"\0" * 32, b"k" * 32)
        self.prev = envelope_hash
        self.by_seq.setdefault(seq, v)
        return v


class Harness:
    def __init__(self) -> None:
        self.stored: dict[tuple[str, int], KnownReading] = {}
        self.checks = DeviceChecks({}, self.lookup, max_skew_ms=60_000)
        self.next_id = 1

    async def lookup(self, device_id: str, seq: int) -> KnownReading | None:
        return self.stored.get((device_id, seq))

    def admit(self, v: Verified, received_ms: int = NOW,
              envelope: bytes | None = None) -> Accept | Duplicate | Quarantine:
        decision = asyncio.run(self.checks.admit(v, received_ms, self.next_id) if envelope is None
                               else self.checks.admit(v, received_ms, self.next_id, envelope))
        if isinstance(decision, Accept):
            known = KnownReading(self.next_id, v.envelope_hash, v.prev)
            if envelope is not None:
                known = known._replace(envelope=envelope)
            self.stored[(v.device_id, v.seq)] = known
            self.next_id += 1
        self.checks.committed()
        return decision

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.checks.states[DEV]


def test_in_order_readings_are_accepted_and_counted() -> None:
    h, c = Harness(), Chain()
    for seq in range(5):
        assert isinstance(h.admit(c.make(seq)), Accept)
    assert (h.state.accepted, h.state.last_seq, h.state.missing) == (5, 4, 0)


def test_same_bytes_again_is_a_duplicate_other_bytes_are_equivocation() -> None:
    h, c = Harness(), Chain()
    first = c.make(0)
    h.admit(first)
    h.admit(c.make(1))
    assert h.admit(first) == Duplicate(1)
    forged = Chain().make(0, salt=b"other bytes")
    decision = h.admit(forged)
    assert isinstance(decision, Quarantine) and decision.reason == "equivocation"
    assert "already reading 1" in decision.detail
    assert (h.state.duplicates, h.state.equivocations, h.state.accepted) == (1, 1, 2)


def test_duplicates_inside_one_uncommitted_batch_are_seen() -> None:
    h, c = Harness(), Chain()
    v = c.make(0)
    first = asyncio.run(h.checks.admit(v, NOW, 1))
    again = asyncio.run(h.checks.admit(v, NOW, 2))
    assert isinstance(first, Accept) and again == Duplicate(1)


def test_a_broken_prev_is_quarantined_and_the_chain_continues_from_the_stored_head() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0))
    head = c.prev
    bad = c.make(1, prev=os.urandom(32))
    decision = h.admit(bad)
    assert isinstance(decision, Quarantine) and decision.reason == "chain_break"
    c.prev = head
    assert isinstance(h.admit(c.make(1)), Accept)
    assert (h.state.chain_breaks, h.state.last_seq) == (1, 1)


def test_a_rebooted_device_may_restart_its_chain_from_zero_but_not_silently() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0))
    decision = h.admit(c.make(1, boot=2, prev=GENESIS_PREV))
    assert decision == Accept(2, ("chain_restart", "reboot"))
    # Without a reboot the same thing is a chain break.
    decision = h.admit(c.make(2, boot=2, prev=GENESIS_PREV))
    assert isinstance(decision, Quarantine) and decision.reason == "chain_break"


def test_boot_counter_up_is_a_reboot_down_is_a_reset() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0, boot=3))
    assert h.admit(c.make(1, boot=4)).flags == ("reboot",)  # type: ignore[union-attr]
    assert h.admit(c.make(2, boot=1)).flags == ("boot_reset",)  # type: ignore[union-attr]
    assert (h.state.reboots, h.state.boot_resets) == (1, 1)


def test_a_jump_opens_a_gap_that_a_gap_record_explains() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0))
    for seq in range(1, 5):
        c.make(seq)  # signed by the device, dropped from its spool
    assert h.admit(c.make(5)).flags == ("gap",)  # type: ignore[union-attr]
    assert [(g.first, g.last, g.explained_by) for g in h.state.gaps] == [(1, 4, None)]
    assert h.admit(c.make(6, gap=(1, 4))).flags == ()  # type: ignore[union-attr]
    assert [(g.first, g.last, g.explained_by) for g in h.state.gaps] == [(1, 4, 6)]
    assert (h.state.missing, h.state.unexplained) == (4, 0)


def test_a_gap_record_can_explain_its_own_jump() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0))
    for seq in range(1, 3):
        c.make(seq)
    h.admit(c.make(3, gap=(1, 2)))
    assert (h.state.missing, h.state.unexplained) == (2, 0)


def test_late_readings_fill_the_gap_when_they_fit_the_chain() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0))
    late = [c.make(seq) for seq in (1, 2)]
    h.admit(c.make(3))
    assert h.state.missing == 2
    assert h.admit(late[1]).flags == ("late",)  # type: ignore[union-attr]
    assert h.admit(late[0]).flags == ("late",)  # type: ignore[union-attr]
    assert (h.state.missing, h.state.out_of_order, h.state.last_seq) == (0, 2, 3)


def test_a_late_reading_that_does_not_fit_its_neighbours_is_a_chain_break() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0))
    c.make(1)
    h.admit(c.make(2))
    impostor = Chain().make(1, prev=c.by_seq[0].envelope_hash, salt=b"x")  # fits seq 0 only
    decision = h.admit(impostor)
    assert isinstance(decision, Quarantine) and decision.reason == "chain_break"
    assert "stored seq 2 chains to" in decision.detail


def test_a_first_reading_past_zero_records_the_history_never_seen() -> None:
    h, c = Harness(), Chain()
    c.prev = os.urandom(32)
    assert h.admit(c.make(7)).flags == ("gap",)  # type: ignore[union-attr]
    assert [(g.first, g.last) for g in h.state.gaps] == [(0, 6)]


def test_clock_skew_is_measured_and_old_readings_count_as_delayed() -> None:
    h, c = Harness(), Chain()
    h.admit(c.make(0, time_ms=NOW - 5 * 60_000), received_ms=NOW)
    assert (h.state.delayed, h.state.last_skew_ms) == (1, 5 * 60_000)
    h.admit(c.make(1, time_ms=NOW + 2_000), received_ms=NOW)
    assert (h.state.delayed, h.state.last_skew_ms, h.state.max_ahead_ms) == (1, -2_000, 2_000)


# gap arithmetic ----------------------------------------------------------------------------------

def naive_missing(present: set[int], last: int) -> set[int]:
    return set(range(last + 1)) - present


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=40),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 10)), max_size=5))
def test_gap_bookkeeping_matches_a_naive_model(arrivals: list[int],
                                               records: list[tuple[int, int]]) -> None:
    """Open on jumps, fill on late arrivals, explain ranges: the gaps are exactly the seqs
    never seen, and 'explained' is exactly those inside some stated range."""
    gaps: list[SeqGap] = []
    seen: set[int] = set()
    stated: set[int] = set()
    last = -1
    for seq in arrivals:
        if seq in seen:
            continue
        if seq > last:
            if seq > last + 1:
                gaps.append(SeqGap(last + 1, seq - 1, 0))
            last = seq
        else:
            gapmath.fill(gaps, seq)
        seen.add(seq)
        for first, span in records:
            gapmath.explain(gaps, first, first + span, by_seq=seq)
            stated |= set(range(first, first + span + 1))
    missing = naive_missing(seen, last)
    assert {s for g in gaps for s in range(g.first, g.last + 1)} == missing
    assert gapmath.missing(gaps) == len(missing)
    assert gapmath.unexplained(gaps) == len(missing - stated)
    assert all(g.first <= g.last for g in gaps)


# issue 13 ----------------------------------------------------------------------------------------

def test_a_seq_far_past_the_last_is_quarantined_and_the_device_carries_on() -> None:
    """Defect 1: one signed reading at seq 2^63-1 was accepted, claiming the device's whole seq
    space and opening a gap of 2^63 seqs; it is a seq_jump now, and the device's next
    genuine reading is accepted as if it never came."""
    h, c = Harness(), Chain()
    h.admit(c.make(0))
    head = c.prev
    decision = h.admit(c.make(2**63 - 1))
    assert isinstance(decision, Quarantine) and decision.reason == "seq_jump"
    assert "9,223,372,036,854,775,807" in decision.detail
    assert (h.state.last_seq, h.state.missing) == (0, 0)
    c.prev = head
    assert h.admit(c.make(1)) == Accept(2, ())
    # The bound itself is allowed (a long outage with a full spool); one past it is not.
    assert h.admit(c.make(1 + MAX_SEQ_JUMP)).flags == ("gap",)  # type: ignore[union-attr]
    decision = h.admit(c.make(1 + 2 * MAX_SEQ_JUMP + 1))
    assert isinstance(decision, Quarantine) and decision.reason == "seq_jump"


def test_a_first_reading_far_past_zero_is_a_seq_jump_too() -> None:
    h, c = Harness(), Chain()
    decision = h.admit(c.make(MAX_SEQ_JUMP + 5))
    assert isinstance(decision, Quarantine) and decision.reason == "seq_jump"
    assert DEV not in h.checks.states
    assert isinstance(h.admit(Chain().make(0)), Accept)


def verified_from(envelope: bytes) -> Verified:
    r = Envelope.decode(envelope).reading()
    return Verified(r.device_id, r.seq, r.boot, r.time_ms, r.prev, r.kind, None,
                    hashlib.sha256(envelope).digest(), b"\0" * 32, b"k" * 32)


def test_the_same_payload_signed_again_is_a_duplicate_not_equivocation() -> None:
    """Defect 4: ECDSA signs the same payload differently each time (and anyone can turn s into
    n - s), so other bytes under a used seq are equivocation only when the signed payload
    differs."""
    h = Harness()
    key = PrivateKey.generate()
    reading = Reading(device_id=DEV, seq=0, boot=1, time_ms=NOW - 1000, clock_synced=True,
                      prev=GENESIS_PREV, kind="water",
                      measurements=(Measurement(name="ph", value=7.1, unit="pH"),))
    first, again = sign_reading(reading, key), sign_reading(reading, key)
    assert first != again
    assert isinstance(h.admit(verified_from(first), envelope=first), Accept)
    decision = h.admit(verified_from(again), envelope=again)
    assert decision == Duplicate(1)
    assert (h.state.duplicates, h.state.equivocations) == (1, 0)
    # Inside one uncommitted batch as well.
    h2 = Harness()
    v1, v2 = verified_from(first), verified_from(again)
    assert isinstance(asyncio.run(h2.checks.admit(v1, NOW, 1, first)), Accept)
    assert asyncio.run(h2.checks.admit(v2, NOW, 2, again)) == Duplicate(1)
    # Another payload under the same seq is still equivocation.
    other = sign_reading(replace(reading, time_ms=NOW - 999), key)
    decision = h.admit(verified_from(other), envelope=other)
    assert isinstance(decision, Quarantine) and decision.reason == "equivocation"
    assert h.state.equivocations == 1
