"""``python -m bench.audit_profile`` at tiny sizes, so the profile others repeat does not rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.audit_profile import main


def test_the_worker_profile_sets_both_workers_against_a_bare_verify(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["worker", "--readings", "40", "--backlog", "40", "--devices", "2", "--rounds", "1",
          "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    for case in ("bare cryptography verify", "audit worker (audit_envelopes)",
                 "ingest worker (verify_batch)"):
        assert case in out


def test_the_main_profile_audits_a_small_ledger(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["main", "--readings", "300", "--devices", "3", "--workers", "2",
          "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "audit of 300 readings, 2 worker(s)" in out
    assert "main process" in out and "workers" in out
