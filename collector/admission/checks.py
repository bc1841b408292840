"""Per-device checks, run in arrival order by the single writer after the stateless ones.

For a verified reading of device D with seq S, given what the ledger already holds for D:

* (D, S) stored with the same bytes → **duplicate**: dropped, counted, acknowledged.
* (D, S) stored with other bytes → **equivocation**: quarantined as evidence, alarmed.
* S = last + 1 and ``prev`` ≠ hash of the stored S−1 → **chain_break**: quarantined. The one
  excused case is a device that rebooted (boot counter went up) and restarted its chain from
  the all-zero ``prev``: accepted and counted as a chain restart.
* S > last + 1 → accepted; the missing range opens a **gap** (explained later by a signed gap
  record, or filled by late readings). A device's first reading with S > 0 opens 0..S−1.
* S more than :data:`MAX_SEQ_JUMP` past last (or past 0 for a device's first reading) →
  **seq_jump**: quarantined. One such reading would otherwise claim the device's whole seq
  space (a reading at 2^63−1 leaves no seq for the next one) and open a gap of absurd size.
* (D, S) stored with other bytes but the same signed payload → a **duplicate** too: ECDSA
  signatures differ each time the same payload is signed, so only a different *payload*
  under a used seq is equivocation.
* S < last and not stored → a **late** reading: accepted when it fits the hash chain of the
  stored neighbours S−1 and S+1 (either may be missing), else quarantined as chain_break.
* Boot counter up → reboot (counted); down → boot counter reset (counted and flagged).
* Device time more than ``max_skew`` behind the collector → accepted, counted as delayed
  (backlog or a slow clock); too far *ahead* was already quarantined as clock_skew.

Nothing here does I/O except through ``lookup``, which finds a stored reading by (device, seq).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from collector.admission import gaps as gapmath
from collector.admission.gaps import SeqGap
from collector.admission.reasons import Reason
from collector.admission.verify import Verified
from collector.ledger.records import DeviceState
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.reading import GENESIS_PREV

__all__ = [
    "MAX_SEQ_JUMP",
    "Accept",
    "DeviceChecks",
    "DeviceState",
    "Duplicate",
    "KnownReading",
    "Quarantine",
]

#: The furthest a reading's seq may run ahead of the device's last one (2^32: 136 years of
#: one reading a second dropped from a spool). Agents count up by one; a gap record states
#: what a full spool dropped, which is always far less.
MAX_SEQ_JUMP = 2**32


class KnownReading(NamedTuple):
    """A stored (or about to be stored) reading, as much as the checks need of it."""

    reading_id: int
    envelope_hash: bytes
    prev: bytes
    envelope: bytes | None = None  # its bytes, when the lookup has them (compared on a clash)


class Accept(NamedTuple):
    reading_id: int
    flags: tuple[str, ...]  # e.g. ("gap",), ("reboot",), ("late",)


class Duplicate(NamedTuple):
    reading_id: int


class Quarantine(NamedTuple):
    reason: str
    detail: str


Decision = Accept | Duplicate | Quarantine


def signed_payload_hash(envelope: bytes) -> bytes | None:
    """SHA-256 of the payload an envelope signs; None if the bytes are not an envelope."""
    try:
        payload = Envelope.decode(envelope).message.payload
    except ProvenanceError:
        return None
    return hashlib.sha256(payload).digest()
Lookup = Callable[[str, int], Awaitable[KnownReading | None]]


class DeviceChecks:
    """Applies the rules above to each reading and keeps every device's state current.

    State changes as readings are admitted, before the batch commits; a failed commit is fatal
    to the collector (the next start reloads the state from the store), so memory never runs
    ahead of a ledger that keeps going.
    """

    def __init__(self, states: dict[str, DeviceState], lookup: Lookup, *,
                 max_skew_ms: int) -> None:
        self.states = states
        self._lookup = lookup
        self._max_skew_ms = max_skew_ms
        # Readings admitted since the last commit: the store cannot see them yet.
        self._uncommitted: dict[tuple[str, int], KnownReading] = {}
        self.dirty: set[str] = set()

    def committed(self) -> None:
        """The batch holding every admitted reading is durable."""
        self._uncommitted.clear()
        self.dirty.clear()
        for state in self.states.values():
            state.gaps_changed = False

    async def _find(self, device_id: str, seq: int) -> KnownReading | None:
        if seq < 0:
            return None
        known = self._uncommitted.get((device_id, seq))
        if known is None:
            known = await self._lookup(device_id, seq)
        return known

    async def admit(self, v: Verified, received_ms: int, reading_id: int,
                    envelope: bytes | None = None) -> Decision:
        """Decide on ``v`` (whose bytes are ``envelope``, when given); on Accept it becomes
        reading ``reading_id``."""
        dev, seq = v.device_id, v.seq
        st = self.states.get(dev)
        if st is not None and seq <= st.last_seq:
            known = await self._find(dev, seq)
            if known is not None:
                self.dirty.add(dev)
                if known.envelope_hash == v.envelope_hash or self._same_payload(known, envelope):
                    st.duplicates += 1
                    return Duplicate(known.reading_id)
                st.equivocations += 1
                return Quarantine(
                    Reason.EQUIVOCATION,
                    f"{dev} seq {seq} is already reading {known.reading_id} with envelope "
                    f"sha256 {known.envelope_hash.hex()}; these bytes hash to "
                    f"{v.envelope_hash.hex()}",
                )

        base = -1 if st is None else st.last_seq
        if seq - base > MAX_SEQ_JUMP:
            if st is not None:
                self.dirty.add(dev)
            return Quarantine(
                Reason.SEQ_JUMP,
                f"{dev} seq {seq} is {seq - base:,} past "
                + (f"the last stored seq {base}" if st is not None else "the start of the device")
                + f" (at most {MAX_SEQ_JUMP:,} allowed)",
            )

        flags: list[str] = []
        if st is None:
            st = DeviceState(dev, first_seq=seq, last_seq=seq, last_hash=v.envelope_hash,
                             last_boot=v.boot, last_time_ms=v.time_ms,
                             last_received_ms=received_ms)
            self.states[dev] = st
            if seq > 0:  # agents start at seq 0: earlier readings never reached us
                st.gaps.append(SeqGap(0, seq - 1, received_ms))
                st.gaps_changed = True
                flags.append("gap")
        elif seq > st.last_seq:
            if seq == st.last_seq + 1 and v.prev != st.last_hash:
                if v.prev == GENESIS_PREV and v.boot > st.last_boot:
                    st.chain_restarts += 1
                    flags.append("chain_restart")
                else:
                    st.chain_breaks += 1
                    self.dirty.add(dev)
                    return Quarantine(
                        Reason.CHAIN_BREAK,
                        f"{dev} seq {seq}: prev {v.prev.hex()} is not the hash of stored seq "
                        f"{st.last_seq} ({st.last_hash.hex()})",
                    )
            elif seq > st.last_seq + 1:
                st.gaps.append(SeqGap(st.last_seq + 1, seq - 1, received_ms))
                st.gaps_changed = True
                flags.append("gap")
            if v.boot > st.last_boot:
                st.reboots += 1
                flags.append("reboot")
            elif v.boot < st.last_boot:
                st.boot_resets += 1
                flags.append("boot_reset")
            st.last_seq, st.last_hash = seq, v.envelope_hash
            st.last_boot, st.last_time_ms = v.boot, v.time_ms
        else:
            broken = await self._late_chain_problem(v)
            if broken is not None:
                st.chain_breaks += 1
                self.dirty.add(dev)
                return Quarantine(Reason.CHAIN_BREAK, broken)
            st.out_of_order += 1
            st.first_seq = min(st.first_seq, seq)
            flags.append("late")
            if gapmath.fill(st.gaps, seq):
                st.gaps_changed = True

        if v.gap is not None and gapmath.explain(st.gaps, v.gap[0], v.gap[1], seq):
            st.gaps_changed = True
        skew = received_ms - v.time_ms
        st.last_skew_ms = skew
        if skew > self._max_skew_ms:
            st.delayed += 1
        st.max_ahead_ms = max(st.max_ahead_ms, -skew)
        st.accepted += 1
        st.last_received_ms = received_ms
        self.dirty.add(dev)
        self._uncommitted[(dev, seq)] = KnownReading(reading_id, v.envelope_hash, v.prev,
                                                     envelope)
        return Accept(reading_id, tuple(flags))

    @staticmethod
    def _same_payload(known: KnownReading, envelope: bytes | None) -> bool:
        """True when ``envelope`` signs the very payload of the stored reading ``known``: the
        device signed the same reading twice (each ECDSA signature differs)."""
        if envelope is None or known.envelope is None:
            return False
        ours = signed_payload_hash(envelope)
        return ours is not None and ours == signed_payload_hash(known.envelope)

    async def _late_chain_problem(self, v: Verified) -> str | None:
        before = await self._find(v.device_id, v.seq - 1)
        if before is not None and before.envelope_hash != v.prev:
            return (f"{v.device_id} seq {v.seq} (late): prev {v.prev.hex()} is not the hash of "
                    f"stored seq {v.seq - 1} ({before.envelope_hash.hex()})")
        after = await self._find(v.device_id, v.seq + 1)
        if after is not None and after.prev != v.envelope_hash:
            return (f"{v.device_id} seq {v.seq} (late): stored seq {v.seq + 1} chains to "
                    f"{after.prev.hex()}, not to this envelope ({v.envelope_hash.hex()})")
        return None
