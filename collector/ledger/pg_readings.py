"""The PostgreSQL store's readings: the queries by id, device, seq and time, the collector
statements and their index, device states, gaps and quarantine, and the batch writes that add
them (a single writer's, or a cluster admission's inside its transaction)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from collector import faults
from collector.admission.gaps import SeqGap
from collector.ledger.pg_log import PgLogTables
from collector.ledger.pg_writes import UNSEALED_ROWS, write_private, write_readings
from collector.ledger.records import (
    SEQ_SUMMARIES,
    BatchWrite,
    DeviceState,
    PendingLeaf,
    QuarantineRecord,
    ReadingRecord,
    SeqSummary,
)
from collector.ledger.statement_index import (
    IndexRow,
    index_row,
    index_rows_query,
    statements_query,
)
from collector.ledger.table_reads import (
    QUARANTINE_COLUMNS,
    QuarantineReads,
    quarantine_row,
    reading_filter,
)
from provenance.merkle import RFC9162_SHA256

__all__ = ["READING_COLUMNS", "STATE_COLUMNS", "PgReadingTables"]

READING_COLUMNS = "id, device_id, seq, boot, time_ms, received_ms, kind, envelope"
STATE_COLUMNS = (
    "device_id, first_seq, last_seq, last_hash, last_boot, last_time_ms, last_received_ms, "
    "accepted, duplicates, equivocations, chain_breaks, chain_restarts, reboots, boot_resets, "
    "out_of_order, delayed, last_skew_ms, max_ahead_ms"
)
_STATE_UPSERT = (
    f"INSERT INTO device_state({STATE_COLUMNS}) VALUES ({','.join(['%s'] * 18)}) "
    "ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in STATE_COLUMNS.split(",")[1:])
)
_QUARANTINE_UPSERT = (
    f"INSERT INTO quarantine({QUARANTINE_COLUMNS}) VALUES ({','.join(['%s'] * 11)}) "
    "ON CONFLICT (raw_sha256, reason) DO UPDATE "
    "SET times_seen = quarantine.times_seen + 1, last_ms = excluded.last_ms"
)


_SEALED = " AND id IS NOT NULL"  # a row the sealer has given its leaf index


def _reading(row: Sequence[Any]) -> ReadingRecord:
    return ReadingRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]))


def state_row(s: DeviceState) -> tuple[Any, ...]:
    return (s.device_id, s.first_seq, s.last_seq, s.last_hash, s.last_boot, s.last_time_ms,
            s.last_received_ms, s.accepted, s.duplicates, s.equivocations, s.chain_breaks,
            s.chain_restarts, s.reboots, s.boot_resets, s.out_of_order, s.delayed,
            s.last_skew_ms, s.max_ahead_ms)


class PgReadingTables(QuarantineReads, PgLogTables):
    """Readings, statements, device states, gaps and quarantine."""

    async def device_states(self) -> dict[str, DeviceState]:
        async with self.snapshot():
            states = {row[0]: DeviceState(*row) for row in
                      await self._all(f"SELECT {STATE_COLUMNS} FROM device_state")}
            for device_id, first, last, detected, explained in await self._all(
                "SELECT device_id, first_seq, last_seq, detected_ms, explained_by FROM gaps "
                "ORDER BY device_id, first_seq"
            ):
                if device_id in states:
                    states[device_id].gaps.append(SeqGap(first, last, detected, explained))
        for state in states.values():
            state.last_hash = bytes(state.last_hash)
        return states

    async def pending_leaves(self) -> list[PendingLeaf]:
        last = await self.last_block()
        start = last.end_reading_id if last else 1
        rows = await self._all("SELECT id, envelope, time_ms, received_ms FROM readings "
                               "WHERE id >= %s ORDER BY id", (start,))
        return [PendingLeaf(rid, RFC9162_SHA256.hash_leaf(env), t, r) for rid, env, t, r in rows]

    async def find_reading(self, device_id: str, seq: int) -> ReadingRecord | None:
        row = await self._one(f"SELECT {READING_COLUMNS} FROM readings "
                              "WHERE device_id = %s AND seq = %s", (device_id, seq))
        return _reading(row) if row else None

    async def statements_of(self, type_: str, kid: bytes | None = None) -> list[ReadingRecord]:
        rows = await self._all(*statements_query(READING_COLUMNS, "%s", _SEALED, type_, kid))
        return [_reading(row) for row in rows]

    async def statement_index(self) -> list[IndexRow]:
        return [index_row(row) for row in await self._all(*index_rows_query("%s", _SEALED))]

    async def write_batch(self, conn: psycopg.AsyncConnection[Any], batch: BatchWrite) -> None:
        """Inside a transaction: the batch's readings, quarantine rows, device states and
        changed gaps, and the private readings' sealed values. A reading with an id (one
        writer: ``copy``, a command logging a statement) gets its leaf row with it; one with
        id 0 (a reading, statement or private reading a cluster admits) waits for the
        cluster's sealer."""
        async with conn.cursor() as cur:
            if batch.readings:
                row_ids = await write_readings(cur, batch.readings,
                                               row_ids=bool(batch.private))
                if batch.private:
                    await write_private(cur, batch.readings, row_ids, batch.private)
            if batch.quarantine:
                await cur.executemany(_QUARANTINE_UPSERT,
                                      [quarantine_row(q) for q in batch.quarantine])
            if batch.devices:
                await cur.executemany(_STATE_UPSERT, [state_row(s) for s in batch.devices])
                changed = [s for s in batch.devices if s.gaps_changed]
                if changed:
                    await cur.execute("DELETE FROM gaps WHERE device_id = ANY(%s)",
                                      ([s.device_id for s in changed],))
                    rows = [(s.device_id, g.first, g.last, g.detected_ms, g.explained_by)
                            for s in changed for g in s.gaps]
                    if rows:
                        await cur.executemany(
                            "INSERT INTO gaps(device_id, first_seq, last_seq, detected_ms, "
                            "explained_by) VALUES (%s, %s, %s, %s, %s)", rows)

    async def commit_batch(self, batch: BatchWrite) -> None:
        async with self._write("writing a batch to") as conn:
            await self.write_batch(conn, batch)
            faults.point("batch.before_commit")

    async def iter_readings(self, start_id: int, end_id: int | None = None, *,
                            chunk: int = 4096) -> AsyncIterator[Sequence[ReadingRecord]]:
        after = start_id - 1
        while True:
            sql = f"SELECT {READING_COLUMNS} FROM readings WHERE id > %s"
            params: tuple[int, ...] = (after,)
            if end_id is not None:
                sql += " AND id < %s"
                params += (end_id,)
            rows = await self._all(f"{sql} ORDER BY id LIMIT {int(chunk)}", params)
            if not rows:
                return
            yield [_reading(row) for row in rows]
            after = rows[-1][0]

    async def query_readings(self, *, device_id: str | None = None,
                             since_ms: int | None = None,
                             until_ms: int | None = None) -> AsyncIterator[ReadingRecord]:
        where, params = reading_filter("%s", device_id, since_ms, until_ms)
        where.insert(0, "id IS NOT NULL")
        key = "seq" if device_id is not None else "id"
        after: int | None = None
        while True:
            page = list(where)
            page_params = list(params)
            if after is not None:
                page.append(f"{key} > %s")
                page_params.append(after)
            rows = await self._all(f"SELECT {READING_COLUMNS} FROM readings WHERE "
                                   f"{' AND '.join(page)} ORDER BY {key} LIMIT 4096",
                                   page_params)
            if not rows:
                return
            for row in rows:
                yield _reading(row)
            after = rows[-1][2] if device_id is not None else rows[-1][0]

    async def device_sequences(self) -> AsyncIterator[tuple[str, list[int]]]:
        for summary in await self.device_seq_summaries():
            pairs = await self.device_seq_ids(summary.device_id)
            yield summary.device_id, [seq for seq, _ in pairs]

    async def device_seq_summaries(self) -> list[SeqSummary]:
        return [SeqSummary(*row) for row in await self._all(SEQ_SUMMARIES)]

    async def device_seq_ids(self, device_id: str) -> list[tuple[int, int]]:
        rows = await self._all("SELECT seq, id FROM readings WHERE device_id = %s "
                               "ORDER BY seq", (device_id,))
        return [(seq, rid if rid is not None else 0) for seq, rid in rows]

    async def reading_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            row = await self._one("SELECT COUNT(*) FROM readings")
        else:  # counted in the (device_id, seq) index
            row = await self._one("SELECT COUNT(*) FROM readings WHERE device_id = %s",
                                  (device_id,))
        return int(row[0])

    async def reading_seqs(self, first_id: int, end_id: int) -> dict[str, list[int]]:
        """Each device's seqs among readings ``first_id .. end_id - 1`` (a block's), ascending."""
        out: dict[str, list[int]] = {}
        for device_id, seq in await self._all(
                "SELECT device_id, seq FROM readings WHERE id >= %s AND id < %s "
                "ORDER BY device_id, seq", (first_id, end_id)):
            out.setdefault(device_id, []).append(seq)
        return out

    async def sealed_marks(self, device_ids: Sequence[str]) -> dict[str, int | None]:
        """As :meth:`SQLiteStore.sealed_marks`: per device, the highest seq S such that every
        seq 0..S is sealed or stated dropped by a held gap record (None: seq 0 is not). The
        unsealed readings are found by index: ids past the last block, or none yet (a
        cluster gives ids when it seals: the rows without a leaf above the sealer's horizon)."""
        last = await self.last_block()
        end_id = last.end_reading_id if last else 1
        horizon = await self.unsealed_horizon()
        rows = await self._all(
            f"""
            SELECT s.device_id, s.last_seq,
                   (SELECT MIN(g.first_seq) FROM gaps g
                    WHERE g.device_id = s.device_id AND g.explained_by IS NULL),
                   u.seq
            FROM device_state s
            LEFT JOIN (SELECT device_id, MIN(seq) AS seq FROM (
                           SELECT device_id, seq FROM readings WHERE id >= %s
                           UNION ALL
                           SELECT r.device_id, r.seq {UNSEALED_ROWS}) n
                       GROUP BY device_id) u
                   ON u.device_id = s.device_id
            WHERE s.device_id = ANY(%s)
            """, (end_id, horizon, list(dict.fromkeys(device_ids))), prepare=False)
        marks: dict[str, int | None] = {}
        for device_id, last_seq, gap_first, unsealed_first in rows:
            holes = [int(h) for h in (gap_first, unsealed_first) if h is not None]
            through = min(holes) - 1 if holes else int(last_seq)
            marks[str(device_id)] = through if through >= 0 else None
        return marks

    async def gaps(self, device_id: str) -> list[SeqGap]:
        rows = await self._all("SELECT first_seq, last_seq, detected_ms, explained_by FROM gaps "
                               "WHERE device_id = %s ORDER BY first_seq", (device_id,))
        return [SeqGap(*row) for row in rows]

    async def commit_replay(self, batch: BatchWrite,
                            quarantine: Sequence[tuple[int, QuarantineRecord | None]]) -> None:
        async with self._write("writing replayed readings to") as conn:
            await self.write_replay(conn, batch, quarantine)

    async def write_replay(self, conn: psycopg.AsyncConnection[Any], batch: BatchWrite,
                           quarantine: Sequence[tuple[int, QuarantineRecord | None]]) -> None:
        for row_id, record in quarantine:
            if record is not None:
                await conn.execute(
                    f"INSERT INTO quarantine({QUARANTINE_COLUMNS}, times_seen) "
                    "SELECT %s,%s,%s,%s,%s,%s,%s,%s,%s, first_ms, last_ms, times_seen "
                    "FROM quarantine WHERE id = %s ON CONFLICT (raw_sha256, reason) "
                    "DO UPDATE SET times_seen = quarantine.times_seen + excluded.times_seen",
                    (*quarantine_row(record)[:9], row_id))
            await conn.execute("DELETE FROM quarantine WHERE id = %s", (row_id,))
        await self.write_batch(conn, batch)
