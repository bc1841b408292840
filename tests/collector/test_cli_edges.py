"""The command line at its edges: a reader that leaves early, a database file with no ledger."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from collector.ledger.records import BatchWrite, ReadingRecord
from collector.ledger.sqlite_store import SQLiteStore
from provenance.envelope import Envelope
from tests.support.collector import Ledger, make_devices, run_cli


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "collector", *args]


def _store_readings(ledger: Ledger, n: int) -> None:
    (device,) = make_devices(1, "pipe")
    ledger.enrol([device])
    rows = []
    for i in range(n):
        data = device.next()
        r = Envelope.decode(data).reading()
        rows.append(ReadingRecord(i + 1, r.device_id, r.seq, r.boot, r.time_ms, r.time_ms,
                                  r.kind, data))

    async def go() -> None:
        store = await SQLiteStore.open(ledger.db)
        try:
            await store.commit_batch(BatchWrite(rows))
        finally:
            await store.close()

    asyncio.run(go())


def test_a_reader_that_leaves_early_is_not_an_error(ledger: Ledger) -> None:
    _store_readings(ledger, 300)
    for command in (["readings"], ["readings", "--format", "jsonl"], ["devices", "list"],
                    ["stats"], ["quarantine"]):
        proc = subprocess.Popen(_cli(*command, "--db", ledger.db), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head -0` does: every write now fails with EPIPE
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) in (0, 1), err  # 1: click's exit for a closed pipe
        assert "Traceback" not in err and "Error" not in err, (command, err)


def test_audit_of_a_file_that_holds_no_ledger_fails_and_leaves_it_alone(tmp_path: Path) -> None:
    empty = tmp_path / "backup.db"
    empty.write_bytes(b"")
    result = run_cli("audit", "--db", str(empty))
    assert result.exit_code == 2, result.output
    assert "holds no ledger" in result.output
    assert empty.stat().st_size == 0, "the audited file was written to"
