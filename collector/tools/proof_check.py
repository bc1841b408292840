"""Check a proof file offline, with nothing but the core: cbor2 and cryptography.

    python -m collector.tools.proof_check READING.proof --collector-key collector-key.pub.pem
    python -m collector.tools.proof_check READING.proof --vkey 'sensorledger.example/x+1a2b…'
    python -m collector.tools.proof_check READING.proof --policy log.policy

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
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.logproof import verify_any_proof
from provenance.note import parse_verifier_key
from provenance.prooffile import ProofReport, reading_to_json
from provenance.trust import TrustPolicy, parse_policy

__all__ = ["PROOF_CHECKS", "KeyFileError", "load_collector_key", "load_policy", "main", "proven",
           "render", "to_json"]

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


def load_policy(collector_keys: Sequence[str] = (), vkeys: Sequence[str] = (),
                policy_file: str | None = None) -> TrustPolicy:
    """The trust policy from PEM files, note verifier keys and a policy file, merged."""
    try:
        policy = TrustPolicy(tuple(parse_verifier_key(v) for v in vkeys),
                             tuple(load_collector_key(p) for p in collector_keys))
    except ProvenanceError as exc:
        raise KeyFileError(f"--vkey: {exc.diagnostics()}") from None
    if policy_file is not None:
        try:
            text = Path(policy_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read trust policy {policy_file}: {exc}") from None
        try:
            policy = policy.merge(parse_policy(text))
        except (ProvenanceError, UnsupportedAlgorithm) as exc:
            detail = exc.diagnostics() if isinstance(exc, ProvenanceError) else str(exc)
            raise KeyFileError(f"{policy_file}: {detail}") from None
    if not policy.verifiers and not policy.collector_keys:
        raise KeyFileError("no trusted key: pass --collector-key PEM, --vkey KEY or "
                           "--policy FILE (from the log's operator)")
    return policy


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _statuses(report: ProofReport) -> list[dict[str, Any]]:
    done = {c.name: c for c in report.checks}
    out: list[dict[str, Any]] = []
    expected = report.expected or PROOF_CHECKS
    for name in (*expected, *(n for n in done if n not in expected)):
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
    if report.disclosed is not None:
        measurements, event = report.disclosed
        shown = reading_to_json(replace(reading, commitment=None, measurements=measurements,
                                        event=event))
        out["disclosed"] = {k: shown[k] for k in ("measurements", "event") if k in shown}
    if report.block is not None:
        out["block"] = {"height": report.block.header.height,
                        "hash": report.block.hash.hex(),
                        "sealed_utc": _utc(report.block.header.sealed_at_ms)}
    if report.checkpoint is not None:
        cp = report.checkpoint.checkpoint
        out["checkpoint"] = {"origin": cp.origin, "size": cp.size, "root": cp.root.hex()}
    return out


def render(report: ProofReport) -> str:
    lines = [f"[{c['status']}] {c['name']}: {c['detail']}" for c in _statuses(report)]
    what = proven(report)
    if what is not None:
        synced = "synced" if what["clock_synced"] else "NOT synced (time as the device had it)"
        lines.append(f"proven: device {what['device_id']} seq {what['seq']} (boot "
                     f"{what['boot']}), {what['kind']}, at {what['time_utc']}; device clock "
                     f"{synced}")
        if "commitment" in what and "disclosed" not in what:
            lines.append(f"  private reading: values not disclosed (the device signed the "
                         f"salted commitment {what['commitment'][:16]}…)")
        if "disclosed" in what:
            lines.append("  private reading, values disclosed and matching the commitment:")
            what = {**what, "measurements": what["disclosed"]["measurements"],
                    **({"event": what["disclosed"]["event"]} if "event" in what["disclosed"]
                       else {})}
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
        if "checkpoint" in what:
            c = what["checkpoint"]
            lines.append(f"  in log {c['origin']} at tree size {c['size']} (root {c['root']})")
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
    parser.add_argument("--collector-key", action="append", default=[], metavar="PEM")
    parser.add_argument("--vkey", action="append", default=[], metavar="KEY")
    parser.add_argument("--policy", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="JSON report")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.collector_key, args.vkey, args.policy)
        data = Path(args.proof_file).read_bytes()
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {args.proof_file}: {exc.strerror}", file=sys.stderr)
        return 2
    report = verify_any_proof(data, policy)
    print(to_json(report) if args.json else render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
