"""Reading private readings with a reader's key: reveal, a range for `history`, disclosure.

A reader's private key opens the grant of the reading's data key (ECDH-ES + A256KW), the data
key opens the sealed values (A256GCM), and the opening is checked against the commitment in
the envelope the device signed, as stored in the log. Values that do not match the signature
are never shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collector.errors import NotFoundError, UsageError
from collector.ledger.private_vault import PrivateVault, SealedRow, open_vault
from provenance import cose_encrypt
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key
from provenance.keys import PrivateKey
from provenance.reading import Reading
from provenance.sealed_values import Opening
from provenance.senml import Measurement, Value

__all__ = ["ErasedError", "Revealed", "load_reader_key", "open_row", "reveal", "reveal_range"]


class ErasedError(NotFoundError):
    """The values asked for were erased."""

    code = "erased"


@dataclass(frozen=True, slots=True)
class Revealed:
    reading: Reading
    opening: Opening
    measurements: tuple[Measurement, ...]
    event: dict[str, Value] | None
    subject: str

    def render(self) -> str:
        r = self.reading
        when = datetime.fromtimestamp(r.time_ms / 1000, tz=UTC).isoformat(
            timespec="milliseconds")
        lines = [f"{r.device_id} seq {r.seq} ({r.kind}) at {when}, subject {self.subject}: "
                 "values match the signed commitment"]
        for m in self.measurements:
            unit = f" {m.unit}" if m.unit else ""
            lines.append(f"  {m.name} = {m.value}{unit}")
        if self.event is not None:
            lines.append(f"  event: {dict(sorted(self.event.items()))}")
        return "\n".join(lines)


def load_reader_key(path: str) -> PrivateKey:
    try:
        return load_private_key(Path(path))
    except ProvenanceError as exc:
        raise UsageError(f"reader key {path}: {exc.diagnostics()}") from None


def open_row(vault: PrivateVault, row: SealedRow, reader: PrivateKey) -> Opening:
    """The opening of one sealed row, for ``reader``; DecryptionError when it may not."""
    grant = vault.grants(row.data_kid).get(reader.public.kid)
    if grant is None:
        raise cose_encrypt.DecryptionError(
            f"reader key {reader.public.kid_hex[:16]}… holds no grant for data key "
            f"{row.data_kid.hex()} of {row.device_id} seq {row.seq}: it was not an "
            "authorised reader when this key was in use")
    data_kid, data_key = cose_encrypt.open_grant(grant, reader)
    if data_kid != row.data_kid:
        raise cose_encrypt.DecryptionError(f"the grant stored for data key "
                                           f"{row.data_kid.hex()} carries key {data_kid.hex()}")
    return Opening.decode(cose_encrypt.decrypt0(data_key, row.sealed))



def reveal(database: str, device_id: str, seq: int, reader: PrivateKey) -> Revealed:
    with open_vault(database) as vault:
        envelope = vault.envelope(device_id, seq)
        if envelope is None:
            raise NotFoundError(f"no reading {device_id} seq {seq} in the ledger")
        reading = Envelope.decode(envelope).reading()
        if reading.commitment is None:
            raise UsageError(f"{device_id} seq {seq} is a public reading: its values are in "
                             "its proof (`ledger-collector proof`)")
        rows = vault.sealed(device_id, seq)
        if not rows:
            erased = vault.erased(device_id, seq)
            if erased is not None:
                when = datetime.fromtimestamp((erased.erased_ms or erased.requested_ms) / 1000,
                                              tz=UTC).isoformat(timespec="seconds")
                raise ErasedError(
                    f"the values of {device_id} seq {seq} were erased at {when} "
                    f"(erasure #{erased.id}, authority: {erased.authority}); the signed "
                    "reading and its proofs remain, the values are gone for good")
            raise NotFoundError(f"{device_id} seq {seq} is private and its sealed values "
                                "never reached this collector")
        return _revealed(vault, rows[0], reading, reader)


def _revealed(vault: PrivateVault, row: SealedRow, reading: Reading,
              reader: PrivateKey) -> Revealed:
    opening = open_row(vault, row, reader)
    opening.check(reading.commitment)
    measurements, event = opening.reveal()
    return Revealed(reading, opening, measurements, event, row.subject)


def reveal_range(database: str, device_id: str, first: int, last: int,
                 reader: PrivateKey) -> tuple[list[Revealed], list[str]]:
    """The private readings of ``device_id`` in ``first..last`` that ``reader`` can open, and
    one line for each it cannot (no grant, erased)."""
    out: list[Revealed] = []
    problems: list[str] = []
    with open_vault(database) as vault:
        for row in vault.sealed(device_id, first, last):
            envelope = vault.envelope(device_id, row.seq)
            assert envelope is not None
            try:
                out.append(_revealed(vault, row, Envelope.decode(envelope).reading(), reader))
            except ProvenanceError as exc:
                problems.append(f"{device_id} seq {row.seq}: {exc.diagnostics()}")
    return out, problems
