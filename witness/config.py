"""The witness's configuration: its key, its state file, where it listens, and the logs it
witnesses (each an origin and the log's verifier keys). A TOML file::

    key_file = "witness.key"            # written by `ledger-witness init`, mode 0600
    database = "witness.db"             # the durable state
    listen = "127.0.0.1:7380"

    [[log]]
    origin = "sensorledger.example/water-busan"
    vkeys = ["sensorledger.example/water-busan+20c48bcf+AR…"]

Relative paths are taken relative to the file. Read by the project's one config reader, so
every problem is reported at once with its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provenance.configfile import ConfigFileError, Table, describe, parse_toml
from provenance.errors import ProvenanceError
from provenance.note import NoteVerifier, parse_verifier_key
from witness.errors import WitnessConfigError

__all__ = ["WitnessConfig", "load_config"]


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    key_file: Path
    database: Path
    host: str
    port: int
    logs: dict[str, list[NoteVerifier]]


def load_config(path: str | Path) -> WitnessConfig:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessConfigError(f"cannot read witness config {file}: {exc}") from None
    try:
        doc, lines = parse_toml(text, file)
    except ConfigFileError as exc:
        raise WitnessConfigError(describe(str(file), exc.problems)) from None
    from provenance.configfile import Source

    r = Table(doc, Source(lines))
    base = file.parent
    key_file = r.path("key_file", base, required=True) or base / "witness.key"
    database = r.path("database", base, required=True) or base / "witness.db"
    listen = r.text("listen", "127.0.0.1:7380") or "127.0.0.1:7380"
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        r.problem("listen", f"must be HOST:PORT, got {listen!r}")
        port_text = "7380"
    logs: dict[str, list[NoteVerifier]] = {}
    entries = r.get("log", [])
    if not isinstance(entries, list) or not entries:
        r.problem("log", "list at least one [[log]] with origin and vkeys")
        entries = []
    for n, entry in enumerate(entries):
        t = r.child(entry if isinstance(entry, dict) else {}, "log", n)
        origin = t.text("origin", required=True) or ""
        vkeys = t.get("vkeys", [])
        keys: list[NoteVerifier] = []
        if not isinstance(vkeys, list) or not vkeys:
            t.problem("vkeys", "list the log's verifier key(s)")
            vkeys = []
        for vkey in vkeys:
            try:
                key = parse_verifier_key(str(vkey))
            except ProvenanceError as exc:
                t.problem("vkeys", exc.diagnostics())
                continue
            if key.name != origin:
                t.problem("vkeys", f"key {key.name}+{key.key_id:08x} is not named for the "
                                   f"log's origin {origin!r}")
            keys.append(key)
        if origin in logs:
            t.problem("origin", f"log {origin!r} is listed twice")
        logs[origin] = keys
        t.finish()
    r.finish()
    if r.problems:
        raise WitnessConfigError(describe(str(file), r.problems))
    return WitnessConfig(key_file, database, host, int(port_text), logs)
