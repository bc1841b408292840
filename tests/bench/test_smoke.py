"""Every benchmark at tiny sizes, so the harness does not rot. Nothing here is timed or judged:
the assertions are structural (everything drained, figures positive, files written)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.context import Sizes
from bench.results import RunResults
from bench.runner import run
from bench.suite import BENCHMARKS, select

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResults, Path]:
    workdir = tmp_path_factory.mktemp("bench")
    results = run(None, Sizes.tiny(), workdir)
    out = workdir / "results.json"
    results.write(out)
    return results, out


def test_every_benchmark_runs_without_error(tiny_run: tuple[RunResults, Path]) -> None:
    results, _ = tiny_run
    assert [r.name for r in results.results] == [b.name for b in BENCHMARKS]
    failures = {r.name: r.error for r in results.results if r.error}
    assert not failures


def test_every_figure_is_a_finite_number_and_rates_positive(
    tiny_run: tuple[RunResults, Path],
) -> None:
    results, _ = tiny_run
    for r in results.results:
        assert r.metrics, f"{r.name} reported no figures"
        for m in r.metrics:
            assert math.isfinite(m.value), (r.name, m.key, m.value)
            # A growth may be zero or negative; a rate, time, size or ratio may not.
            if "growth" not in m.key:
                assert m.value > 0, (r.name, m.key, m.value)


def test_drains_stored_the_whole_backlog(tiny_run: tuple[RunResults, Path]) -> None:
    results, _ = tiny_run
    sizes = Sizes.tiny()
    by_name = {r.name: r for r in results.results}
    assert by_name["mosquitto-sub"].params["readings"] == sizes.readings
    for mode in ("ack-on-receipt", "ack-after-commit"):
        assert all(c >= 1 for c in by_name["baseline"].params[mode]["commits"])
    assert by_name["ingest"].params["readings"] == sizes.readings
    assert by_name["storage"].params["readings"] == sizes.readings
    assert by_name["live"].value("all_sealed") == sizes.live_rate * sizes.live_seconds
    assert by_name["audit"].params["readings"] == sizes.audit_readings
    assert by_name["proofs"].params["samples"] == sizes.proof_samples


def test_the_agent_floor_is_built_from_what_the_running_agent_imported(
    tiny_run: tuple[RunResults, Path],
) -> None:
    results, _ = tiny_run
    steady = next(r for r in results.results if r.name == "agent").params["steady"]
    # The four drivers' transports and the agent's own stack, found in the agent's import log.
    assert {"aiomqtt", "aiosqlite", "cbor2", "cryptography", "paho", "pymodbus",
            "serial"} <= set(steady["third_party_packages"])
    assert 0 < steady["library_modules"] < steady["modules_imported"]


def test_results_json_round_trips_and_names_the_machine(
    tiny_run: tuple[RunResults, Path],
) -> None:
    results, out = tiny_run
    data = json.loads(out.read_text())
    assert {"cores", "memory_bytes", "cpu_model", "python"} <= set(data["machine"])
    assert data["date"]
    again = RunResults.read(out)
    assert again.table() == results.table()


def test_plot_writes_pngs(tiny_run: tuple[RunResults, Path], tmp_path: Path) -> None:
    _, out = tiny_run
    main(["plot", str(out), "--outdir", str(tmp_path)])
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert {"throughput.png", "targets.png", "live-latency.png"} <= set(pngs)
    assert all((tmp_path / p).read_bytes().startswith(b"\x89PNG") for p in pngs)


def test_report_prints_every_figure_beside_its_target(
    tiny_run: tuple[RunResults, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    results, out = tiny_run
    main(["report", str(out)])
    text = capsys.readouterr().out
    for r in results.results:
        for m in r.metrics:
            assert f"| {r.name} | {m.label} |" in text


def test_only_pulls_in_what_a_benchmark_needs() -> None:
    for bench in BENCHMARKS:
        chosen = [b.name for b in select([bench.name])]
        assert bench.name in chosen
        assert set(bench.requires) <= set(chosen)
    with pytest.raises(KeyError):
        select(["no-such-benchmark"])
