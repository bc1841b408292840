"""How long the browser's proof check takes, beside the Python check of the same file.

    python -m bench.verify_page PROOF --policy FILE [--runs 60]

Loads collector/web/static/verify.html from file:// in Debian's headless Chromium (Playwright,
as the tests drive it), checks PROOF there ``--runs`` times (trust policy parsing, WebCrypto
imports and every check included; the first tenth is warm-up), and checks it as many times
with :func:`provenance.logproof.verify_any_proof` in this process. Prints median and p90 of each.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance.logproof import verify_any_proof
from provenance.trust import parse_policy

PAGE = Path(__file__).resolve().parents[1] / "collector" / "web" / "static" / "verify.html"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

_TIMED = """async ([bytes, policy, runs]) => {
  const data = Uint8Array.from(bytes), out = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = await SensorLedgerVerify.checkBytes(data, policy);
    if (!r.ok) throw new Error("the proof does not verify: " + JSON.stringify(r.checks));
    out.push(performance.now() - t);
  }
  return out;
}"""


def _summary(times_ms: list[float]) -> str:
    kept = sorted(times_ms[len(times_ms) // 10:])
    p90 = kept[min(len(kept) - 1, round(0.9 * (len(kept) - 1)))]
    return f"median {statistics.median(kept):.2f} ms, p90 {p90:.2f} ms over {len(kept)} runs"


def page_times(data: bytes, policy: str, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        saved = Path(tmp) / "verify.html"
        shutil.copy(PAGE, saved)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(saved.as_uri())
            times: Any = page.evaluate(_TIMED, [list(data), policy, runs])
        finally:
            browser.close()
    return [float(t) for t in times]


def python_times(data: bytes, policy: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        report = verify_any_proof(data, parse_policy(policy))
        out.append((time.perf_counter() - start) * 1000)
        if not report.ok:
            raise SystemExit(f"the proof does not verify:\n{report.render()}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.verify_page", description=__doc__)
    parser.add_argument("proof")
    parser.add_argument("--policy", required=True, help="trust policy file (e.g. KEY.vkey)")
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    data, policy = Path(args.proof).read_bytes(), Path(args.policy).read_text()
    print(f"{args.proof}: {len(data)} bytes")
    print(f"  browser (Chromium, WebCrypto): {_summary(page_times(data, policy, args.runs))}")
    print(f"  python (verify_any_proof):     {_summary(python_times(data, policy, args.runs))}")


if __name__ == "__main__":
    main()
