"""Check a proof file offline, with nothing but the core: cbor2 and cryptography.

    python -m collector.tools.proof_check READING.proof --collector-key collector-key.pub.pem

does what ``ledger-collector verify-proof`` does (which uses this module), without the collector's
dependencies (MQTT, SQLite, click): an auditor needs only this checkout's ``provenance`` and
``collector`` packages and those two libraries. It imports nothing else of the collector.

Besides each check's outcome it says what was proven: the device, seq, its UTC time and whether
the device's clock was synced, the values and the event, and the block that holds the reading.
A check that could not run because one it needs failed is shown as SKIP, not left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.prooffile import ProofReport, reading_to_json, verify_proof

__all__ = ["PROOF_CHECKS", "KeyFileError", "load_collector_key", "main", "proven", "render",
           "to_json"]

#: Every check ``verify_proof`` can make, in its order.
PROOF_CHECKS = ("proof file format", "collector key", "block signature", "device key binding",
                "device signature", "inclusion in block", "time within block")


class KeyFileError(ValueError):
    """The file given as the collector key is not a usable public key; the message says why."""


def load_collector_key(path: str) -> PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read collector key {path}: {exc.strerror}") from None
    public = "the collector's public key (KEY.pub.pem, written by `ledger-collector init`)"
    if b"PRIVATE KEY-----" in data:
        raise KeyFileError(f"{path} is a private key; a proof is checked with {public}, and a "
                           "private key is best not handed to anyone who checks proofs")
    if b"-----BEGIN CERTIFICATE-----" in data:
        raise KeyFileError(f"{path} is a certificate (for TLS, presumably); pass {public}")
    try:
        return PublicKey.from_pem(data)
    except (ProvenanceError, UnsupportedAlgorithm) as exc:
        detail = exc.diagnostics() if isinstance(exc, ProvenanceError) else str(exc)
        raise KeyFileError(f"{path}: not a P-256 public key: {detail}") from None


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _statuses(report: ProofReport) -> list[dict[str, Any]]:
    done = {c.name: c for c in report.checks}
    out: list[dict[str, Any]] = []
    for name in (*PROOF_CHECKS, *(n for n in done if n not in PROOF_CHECKS)):
        c = done.get(name)
        if c is None:
            out.append({"name": name, "ok": False, "status": "SKIP",
                        "detail": "not checked: it needs a check above that failed"})
        else:
            out.append({"name": name, "ok": c.ok, "status": "PASS" if c.ok else "FAIL",
                        "detail": c.detail})
    return out


def proven(report: ProofReport) -> dict[str, Any] | None:
    """What the proof shows, once every check passed: the reading and the block holding it."""
    if not report.ok or report.reading is None:
        return None
    reading = report.reading
    out = reading_to_json(reading)
    out["time_utc"] = _utc(reading.time_ms)
    if report.block is not None:
        out["block"] = {"height": report.block.header.height,
                        "hash": report.block.hash.hex(),
                        "sealed_utc": _utc(report.block.header.sealed_at_ms)}
    return out


def render(report: ProofReport) -> str:
    lines = [f"[{c['status']}] {c['name']}: {c['detail']}" for c in _statuses(report)]
    what = proven(report)
    if what is not None:
        synced = "synced" if what["clock_synced"] else "NOT synced (time as the device had it)"
        lines.append(f"proven: device {what['device_id']} seq {what['seq']} (boot "
                     f"{what['boot']}), {what['kind']}, at {what['time_utc']}; device clock "
                     f"{synced}")
        for m in what["measurements"]:
            unit = f" {m['u']}" if "u" in m else ""
            offset = f" (+{m['t']} s)" if "t" in m else ""
            lines.append(f"  {m['n']} = {m.get('v')}{unit}{offset}")
        if "event" in what:
            lines.append(f"  event: {json.dumps(what['event'], sort_keys=True)}")
        if "gap" in what:
            lines.append(f"  gap record: seqs {what['gap']['first']}..{what['gap']['last']} "
                         "dropped by the device")
        if "block" in what:
            b = what["block"]
            lines.append(f"  in block {b['height']} (sealed {b['sealed_utc']}, hash {b['hash']})")
    lines.append("proof VERIFIED" if report.ok else "proof FAILED")
    return "\n".join(lines)


def to_json(report: ProofReport) -> str:
    return json.dumps({"ok": report.ok, "checks": _statuses(report),
                       "proven": proven(report)}, indent=2)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 verified, 1 not verified, 2 the files could not be read."""
    parser = argparse.ArgumentParser(prog="python -m collector.tools.proof_check",
                                     description="Check a SensorLedger proof file offline.")
    parser.add_argument("proof_file")
    parser.add_argument("--collector-key", required=True, metavar="PEM")
    parser.add_argument("--json", action="store_true", help="JSON report")
    args = parser.parse_args(argv)
    try:
        key = load_collector_key(args.collector_key)
        data = Path(args.proof_file).read_bytes()
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {args.proof_file}: {exc.strerror}", file=sys.stderr)
        return 2
    report = verify_proof(data, key)
    print(to_json(report) if args.json else render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
