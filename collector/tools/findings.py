"""The audit's ledger-wide pass: what no single block or reading shows.

Run over one snapshot, after the blocks and readings were re-verified:

* **missing seq**: seqs from 0 to a device's last that are neither stored nor inside one of the
  device's recorded gaps (a reading row was removed).
* **seq jump**: a stored seq more than :data:`~collector.admission.checks.MAX_SEQ_JUMP` past
  the device's previous stored one (ingest quarantines these as ``seq_jump``; a ledger written
  before that rule may hold one).
* **device state**: every disagreement between the stored readings and the device state the
  collector keeps beside them: rows above ``last_seq`` or below ``first_seq``, rows inside a
  recorded gap, an ``accepted`` count other than the rows stored, a ``last_hash`` that is not
  the hash of the stored last reading, a state whose rows are all gone. (Rows with no state
  at all are a warning: there is nothing to disagree with.)
  The collector writes rows and state in one transaction, so any of these means the database
  was written behind its back.
* **statement index**: a row whose statement columns (``statement_type``,
  ``statement_kid``: how proofs find a key's enrolment and the key rotations) are not what its
  envelope says.
* **unsealed**: a reading no block holds although it arrived longer ago than the block age
  (plus a grace for a busy collector): the sealer never saw it.

Warnings (the audit still passes): devices with missing readings that no signed gap record
explains. Every loop here runs over stored rows and recorded gaps, never over seq *values*, so
the pass costs what the ledger holds, whatever seqs a device signed.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Iterator, Sequence

from collector.admission.checks import MAX_SEQ_JUMP, DeviceState
from collector.ledger.statement_index import statement_terms
from collector.ledger.store import LedgerStore, ReadingRecord, SeqSummary
from collector.tools.audit import AuditReport, Finding
from provenance.statement import STATEMENT_DEVICE

__all__ = ["UNSEALED_GRACE_MS", "gap_warnings", "ledger_findings", "misplaced_leaves"]

#: How much longer than the block age a reading may wait unsealed before it is a finding: a
#: live collector seals on its next idle tick or commit, well within this.
UNSEALED_GRACE_MS = 10_000
_LIMIT = 20  # findings of one kind named one by one; the rest are counted


async def ledger_findings(store: LedgerStore, report: AuditReport, *,
                          block_age_ms: int | None, now_ms: int | None = None,
                          limit: int = _LIMIT) -> None:
    """Append the findings and warnings above to ``report``."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    async with store.snapshot():
        states = await store.device_states()
        last = await store.last_block()
        # Readings in the log tree are sealed into it (a mirror's copy has no blocks).
        sealed_end = max(last.end_reading_id if last else 1, await store.tree_size() + 1)
        seen: set[str] = set()
        out = _Capped(report, limit)
        for summary in await store.device_seq_summaries():
            device_id = summary.device_id
            if device_id == STATEMENT_DEVICE:
                continue  # collector statements: checked by the audit's statement pass
            seen.add(device_id)
            state = states.get(device_id)
            if _plain(summary, state):
                if state is not None and state.last_seq >= summary.rows:
                    _hole(out, device_id, summary.rows, state.last_seq)
            else:
                rows = await store.device_seq_ids(device_id)
                _sequence_findings(out, device_id, rows, state)
                if state is not None:
                    _state_findings(out, device_id, rows, state)
            if state is None:  # nothing to disagree with; rebuilt state is still worth a word
                report.warnings.append(f"device {device_id}: {summary.rows:,} stored "
                                       "reading(s) but no device state")
                continue
            stored_last = await store.find_reading(device_id, state.last_seq)
            if (stored_last is not None
                    and hashlib.sha256(stored_last.envelope).digest() != state.last_hash):
                out.add("device state", f"last_hash {state.last_hash.hex()} is not the hash "
                        f"of stored seq {state.last_seq}", reading_id=stored_last.id,
                        device_id=device_id, seq=state.last_seq)
        for device_id in sorted(states.keys() - seen):
            if states[device_id].accepted:
                out.add("device state", f"device state counts {states[device_id].accepted} "
                        f"accepted reading(s) of {device_id}; none is stored",
                        device_id=device_id, seq=states[device_id].last_seq)
        for rid, device_id, envelope, type_, kid in await store.statement_index():
            says = statement_terms(device_id, envelope)
            if (type_, kid) != says:
                out.add("statement index", f"the row is indexed as {_terms(type_, kid)}, its "
                        f"envelope says {_terms(*says)}", reading_id=rid, device_id=device_id)
        if block_age_ms is not None:
            cutoff = now - block_age_ms - UNSEALED_GRACE_MS
            async for chunk in store.iter_readings(sealed_end):
                for r in chunk:
                    if r.received_ms < cutoff:
                        out.add("unsealed", f"arrived {(now - r.received_ms) / 1000:,.0f} s "
                                f"ago, no block holds it (blocks are sealed after "
                                f"{block_age_ms / 1000:g} s)", reading_id=r.id,
                                device_id=r.device_id, seq=r.seq)
        out.flush()
    report.warnings.extend(gap_warnings(states))


def _terms(type_: str | None, kid: bytes | None) -> str:
    if type_ is None:
        return "no statement"
    return type_ + (f" of key {kid.hex()[:16]}…" if kid is not None else "")


def gap_warnings(states: dict[str, DeviceState], ranges: int = 5) -> list[str]:
    """One line per device whose missing readings no signed gap record explains."""
    lines: list[str] = []
    for device_id in sorted(states):
        unexplained = [g for g in states[device_id].gaps if g.explained_by is None]
        if not unexplained:
            continue
        count = sum(g.count for g in unexplained)
        shown = ", ".join(f"{g.first}" if g.first == g.last else f"{g.first}..{g.last}"
                          for g in unexplained[:ranges])
        more = (f" and {len(unexplained) - ranges} more range(s)"
                if len(unexplained) > ranges else "")
        lines.append(f"device {device_id}: {count:,} missing reading(s) that no gap record "
                     f"explains (seq {shown}{more})")
    return lines


class _Capped:
    """Findings of each kind up to a limit; a last one counts the rest."""

    def __init__(self, report: AuditReport, limit: int) -> None:
        self.report = report
        self.limit = limit
        self.counts: dict[str, int] = {}
        self.last: dict[str, Finding] = {}

    def add(self, check: str, detail: str, *, reading_id: int | None = None,
            device_id: str | None = None, seq: int | None = None) -> None:
        n = self.counts.get(check, 0) + 1
        self.counts[check] = n
        finding = Finding(check, detail, reading_id=reading_id, device_id=device_id, seq=seq)
        if n <= self.limit:
            self.report.findings.append(finding)
        else:
            self.last[check] = finding

    def flush(self) -> None:
        for check, n in self.counts.items():
            if n > self.limit:
                last = self.last[check]
                self.report.findings.append(Finding(
                    check, f"… and {n - self.limit:,} more like this (the last: {last.detail})",
                    reading_id=last.reading_id, device_id=last.device_id, seq=last.seq))


def _covering(rows: Sequence[tuple[int, int]],
              state: DeviceState | None) -> Iterator[tuple[int, int, int | None]]:
    """Stored seqs (first=last=seq, with the reading id) and recorded gaps (id None), by
    first seq."""
    stored = ((seq, seq, rid) for seq, rid in rows)
    gaps = sorted((g.first, g.last, None) for g in state.gaps) if state else []
    return heapq.merge(stored, gaps, key=lambda t: (t[0], t[2] is None))


def _plain(summary: SeqSummary, state: DeviceState | None) -> bool:
    """True when the counts alone show what the walk over the device's rows would: nearly
    every device. Its stored seqs are exactly 0 .. n - 1 (n rows, n distinct seqs, from 0 to
    n - 1), it has no recorded gap, and they lie in its state's range, as many as the state
    counts. Then the only possible finding is a hole after the last stored seq, up to the
    state's (what :func:`_sequence_findings` and :func:`_state_findings` find on such rows)."""
    n = summary.rows
    if summary.distinct_seqs != n or summary.first_seq != 0 or summary.last_seq != n - 1:
        return False
    return state is None or (not state.gaps and state.first_seq <= 0
                             and n - 1 <= state.last_seq and n == state.accepted)


def _sequence_findings(out: _Capped, device_id: str, rows: Sequence[tuple[int, int]],
                       state: DeviceState | None) -> None:
    # Nearly every device: no recorded gap and its stored seqs exactly 0, 1, ... n - 1 (rows
    # come seq ascending; distinct, as the set shows). Then the only possible finding is a
    # hole after the last stored seq, up to the state's; the walk below finds nothing else.
    n = len(rows)
    if (not (state and state.gaps) and rows[0][0] == 0 and rows[-1][0] == n - 1
            and len({seq for seq, _ in rows}) == n):
        if state is not None and state.last_seq >= n:
            _hole(out, device_id, n, state.last_seq)
        return
    _sequence_walk(out, device_id, rows, state)


def _sequence_walk(out: _Capped, device_id: str, rows: Sequence[tuple[int, int]],
                   state: DeviceState | None) -> None:
    last = max(rows[-1][0], state.last_seq if state else -1)
    expect = 0  # the lowest seq not yet covered by a stored row or a recorded gap
    prev_stored = -1
    gap_end = -1  # last seq of the recorded gap seen furthest
    gap_first = -1
    for first, end, rid in _covering(rows, state):
        if first > expect:
            _hole(out, device_id, expect, first - 1)
        if rid is None:
            if end > gap_end:
                gap_first, gap_end = first, end
        else:
            if first <= gap_end:
                out.add("device state", f"stored seq {first} lies inside the recorded gap "
                        f"{gap_first}..{gap_end}", reading_id=rid, device_id=device_id,
                        seq=first)
            if first - prev_stored > MAX_SEQ_JUMP:
                out.add("seq jump", f"seq {first} is {first - prev_stored:,} past the previous "
                        f"stored seq {prev_stored} (at most {MAX_SEQ_JUMP:,} allowed)",
                        reading_id=rid, device_id=device_id, seq=first)
            prev_stored = first
        expect = max(expect, end + 1)
    if expect <= last:
        _hole(out, device_id, expect, last)


def _hole(out: _Capped, device_id: str, first: int, last: int) -> None:
    if first == last:
        detail = (f"{device_id} seq {first} is neither stored nor in the device's recorded "
                  "gaps (a reading row was removed)")
    else:
        detail = (f"{device_id} seqs {first}..{last} ({last - first + 1:,}) are neither "
                  "stored nor in the device's recorded gaps (reading rows were removed)")
    out.add("missing seq", detail, device_id=device_id, seq=first)


def _state_findings(out: _Capped, device_id: str, rows: Sequence[tuple[int, int]],
                    state: DeviceState) -> None:
    # (rows come seq ascending: when the first and last lie within the state's range, all do)
    inside = rows[0][0] >= state.first_seq and rows[-1][0] <= state.last_seq
    for seq, rid in () if inside else rows:
        if seq > state.last_seq:
            out.add("device state", f"stored seq {seq} is above the device's last_seq "
                    f"{state.last_seq}: no admitted reading put it there", reading_id=rid,
                    device_id=device_id, seq=seq)
        elif seq < state.first_seq:
            out.add("device state", f"stored seq {seq} is below the device's first_seq "
                    f"{state.first_seq}", reading_id=rid, device_id=device_id, seq=seq)
    if len(rows) != state.accepted:
        out.add("device state", f"device state counts {state.accepted:,} accepted reading(s), "
                f"{len(rows):,} are stored", device_id=device_id, seq=state.last_seq)


def misplaced_leaves(readings: Sequence[ReadingRecord], signed_root: bytes,
                     max_candidates: int = 12, brute_force_below: int = 17,
                     ) -> tuple[list[tuple[ReadingRecord, str]], bool]:
    """Which readings of a block whose root does not match are out of place.

    Reading ids follow arrival, so a reading that arrived before the one ahead of it, or a
    device's seqs running backwards, are the candidates; exchanging two of them that
    reproduces the signed root proves the swap (a block of up to 16 readings tries every pair,
    as its order gives too little to go on). Returns (reading, detail) pairs and whether a
    swap was proven.
    """
    from provenance.merkle import RFC9162_SHA256, root

    leaves = [RFC9162_SHA256.hash_leaf(r.envelope) for r in readings]
    suspects: list[int] = []

    def suspect(*indexes: int) -> None:
        suspects.extend(i for i in indexes if i not in suspects)

    last_of: dict[str, tuple[int, int]] = {}  # device -> (seq, index) of its previous reading
    for i, r in enumerate(readings):
        if i and r.received_ms < readings[i - 1].received_ms:
            suspect(i - 1, i)  # a descent in arrival time: one of the two moved
        seen = last_of.get(r.device_id)
        if seen is not None and r.seq < seen[0]:
            suspect(seen[1], i)
        last_of[r.device_id] = (r.seq, i)
    pool = suspects[:max_candidates]
    if len(readings) < brute_force_below:
        pool = list(range(len(readings)))
    for a in range(len(pool)):
        for b in range(a + 1, len(pool)):
            i, j = pool[a], pool[b]
            trial = list(leaves)
            trial[i], trial[j] = trial[j], trial[i]
            if root(trial) == signed_root:
                ri, rj = readings[i], readings[j]
                return [(ri, f"stored in the place of reading {rj.id}: the signed root "
                             f"matches with readings {ri.id} and {rj.id} exchanged"),
                        (rj, f"stored in the place of reading {ri.id}: the signed root "
                             f"matches with readings {ri.id} and {rj.id} exchanged")], True
    return [(readings[i], "out of arrival order (received before the reading stored ahead of "
             "it, or its device's seqs run backwards here)") for i in sorted(suspects)], False
