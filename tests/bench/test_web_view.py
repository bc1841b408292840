"""The view benchmark runs end to end on a small ledger (the recorded run uses a million)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.web_view import main

pytestmark = pytest.mark.slow


def test_web_view_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "web.json"
    assert main(["--readings", "3000", "--clients", "1,4", "--seconds", "1",
                 "--workdir", str(tmp_path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["readings"] == 3000
    for page in ("device_page_all", "device_page_1h", "device_page_5h"):
        assert result[page]["series_paths"] == 4 and result[page]["median_s"] > 0
    for load in result["api_load"]:
        assert load["errors"] == 0 and load["all"]["requests"] > 0
