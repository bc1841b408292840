"""The audit's ledger-wide pass (collector.tools.findings) on plain values: linear in what is
stored, whatever the seq values."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.admission.checks import DeviceState
from collector.admission.gaps import SeqGap
from collector.ledger.store import ReadingRecord
from collector.tools.audit import AuditReport
from collector.tools.findings import (
    _Capped,
    _sequence_findings,
    _sequence_walk,
    _state_findings,
    gap_warnings,
    misplaced_leaves,
)
from provenance.merkle import RFC9162_SHA256, root


def state(last: int, gaps: list[SeqGap]) -> DeviceState:
    return DeviceState("d-01", 0, last, b"\0" * 32, 1, 0, 0, gaps=gaps)


def run(rows: list[tuple[int, int]], st: DeviceState) -> list[tuple[str, int | None, str]]:
    report = AuditReport(collector_kid="k")
    out = _Capped(report, 20)
    _sequence_findings(out, "d-01", rows, st)
    out.flush()
    return [(f.check, f.seq, f.detail) for f in report.findings]


def test_holes_are_ranges_and_recorded_gaps_cover_theirs() -> None:
    rows = [(0, 1), (1, 2), (5, 3), (9, 4)]
    found = run(rows, state(9, [SeqGap(2, 3, 0), SeqGap(6, 6, 0, explained_by=9)]))
    assert [(c, s) for c, s, _ in found] == [("missing seq", 4), ("missing seq", 7)]
    assert "seqs 7..8 (2)" in found[1][2]


def test_a_stored_seq_inside_a_recorded_gap_is_a_disagreement() -> None:
    found = run([(0, 1), (2, 2), (3, 3)], state(3, [SeqGap(1, 2, 0)]))
    assert [(c, s) for c, s, _ in found] == [("device state", 2)]


def test_the_cost_does_not_follow_the_seq_values() -> None:
    top = 2**63 - 1
    started = time.monotonic()
    found = run([(0, 1), (top, 2)], state(top, [SeqGap(1, top - 1, 0)]))
    assert time.monotonic() - started < 1
    assert [(c, s) for c, s, _ in found] == [("seq jump", top)]
    assert run([(0, 1), (top, 2)], state(top, []))[0][:2] == ("missing seq", 1)
    warning = gap_warnings({"d-01": state(top, [SeqGap(1, top - 1, 0)])})
    assert warning == ["device d-01: 9,223,372,036,854,775,806 missing reading(s) that no gap "
                       f"record explains (seq 1..{top - 1})"]


def test_a_swap_in_a_small_block_is_proven_by_the_root() -> None:
    """Same arrival time, different devices: nothing in the order shows it, every pair is
    tried in a block this small."""
    readings = [ReadingRecord(i + 1, f"d-{i:02d}", 0, 1, 0, 1000, "water", bytes([i]) * 40)
                for i in range(10)]
    signed = root([RFC9162_SHA256.hash_leaf(r.envelope) for r in readings])
    swapped = list(readings)
    swapped[2], swapped[7] = (readings[7]._replace(id=3), readings[2]._replace(id=8))
    named, proven = misplaced_leaves(swapped, signed)
    assert proven and [r.id for r, _ in named] == [3, 8]
    assert "matches with readings 3 and 8 exchanged" in named[0][1]
    assert misplaced_leaves(readings, b"\1" * 32) == ([], False)


@settings(max_examples=400, deadline=None)
@given(seqs=st.lists(st.integers(0, 12), max_size=12).map(sorted).filter(bool)
       | st.integers(1, 12).map(lambda n: list(range(n))),
       last_seq=st.integers(-1, 20), first_seq=st.integers(0, 3),
       gaps=st.lists(st.tuples(st.integers(0, 15), st.integers(0, 4)), max_size=2))
def test_the_quick_look_finds_what_the_walk_finds(seqs: list[int], last_seq: int,
                                                    first_seq: int,
                                                    gaps: list[tuple[int, int]]) -> None:
    """Rows seq ascending (repeats included, as a damaged index might give), any state."""
    rows = [(seq, i + 1) for i, seq in enumerate(seqs)]
    states = [None, DeviceState("d-01", first_seq, last_seq, b"\0" * 32, 1, 0, 0,
                                accepted=len(rows),
                                gaps=[SeqGap(a, a + k, 0) for a, k in gaps])]
    for st_ in states:
        quick, walk = AuditReport(collector_kid="k"), AuditReport(collector_kid="k")
        _sequence_findings(_Capped(quick, 50), "d-01", rows, st_)
        _sequence_walk(_Capped(walk, 50), "d-01", rows, st_)
        assert quick.findings == walk.findings
        if st_ is not None:  # every row outside the state's range is named, in order
            report = AuditReport(collector_kid="k")
            _state_findings(_Capped(report, 50), "d-01", rows, st_)
            outside = [(seq, rid) for seq, rid in rows
                       if seq > st_.last_seq or seq < st_.first_seq]
            assert [(f.seq, f.reading_id) for f in report.findings
                    if f.reading_id is not None] == outside


def test_repeated_seqs_are_not_taken_for_a_full_run() -> None:
    """0, 0, 3, 3: four rows from seq 0 to seq 3, but seqs 1 and 2 are missing."""
    rows = [(0, 1), (0, 2), (3, 3), (3, 4)]
    found = run(rows, state(3, []))
    assert [(c, s) for c, s, _ in found] == [("missing seq", 1)]
