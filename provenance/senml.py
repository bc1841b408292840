"""SenML records (RFC 8428) with CBOR integer labels (RFC 8428 §6, Table 4).

Readings carry their measurements as SenML records so that any SenML tool can read them. We
write a small, closed subset per record: name, unit, one value, an optional relative time.
``decode_pack`` reads any RFC 8428 CBOR pack (base fields included) into JSON-labelled records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MalformedError

__all__ = [
    "CBOR_LABELS",
    "JSON_LABELS",
    "Measurement",
    "Value",
    "decode_pack",
]

Value = float | int | str | bool

#: RFC 8428 Table 4: JSON label -> CBOR label.
CBOR_LABELS: Mapping[str, int] = {
    "bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6,
    "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8,
}  # fmt: skip
JSON_LABELS: Mapping[int, str] = {v: k for k, v in CBOR_LABELS.items()}

_N, _U, _V, _VS, _VB, _T = 0, 1, 2, 3, 4, 6
_MAX_TEXT = 64


@dataclass(frozen=True, slots=True)
class Measurement:
    """One SenML record: a named value with an optional unit and a time offset in seconds."""

    name: str
    value: Value
    unit: str | None = None
    time_offset: float | int | None = None

    def __post_init__(self) -> None:
        _check_text(self.name, "measurement name", allow_empty=False)
        if self.unit is not None:
            _check_text(self.unit, f"unit of {self.name!r}", allow_empty=False)
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise MalformedError(f"measurement {self.name!r} is not finite: {self.value}")
        if not isinstance(self.value, bool | int | float | str):
            raise MalformedError(
                f"measurement {self.name!r} has unsupported value type {type(self.value).__name__}"
            )
        if self.time_offset is not None and (
            isinstance(self.time_offset, bool)
            or not isinstance(self.time_offset, int | float)
            or not math.isfinite(self.time_offset)
        ):
            raise MalformedError(f"time offset of {self.name!r} must be a finite number")

    def to_cbor_record(self) -> dict[int, Any]:
        rec: dict[int, Any] = {_N: self.name}
        if self.unit is not None:
            rec[_U] = self.unit
        if isinstance(self.value, bool):
            rec[_VB] = self.value
        elif isinstance(self.value, str):
            rec[_VS] = self.value
        else:
            rec[_V] = self.value
        if self.time_offset is not None:
            rec[_T] = self.time_offset
        return rec

    @classmethod
    def from_cbor_record(cls, rec: object) -> Measurement:
        if not isinstance(rec, dict):
            raise MalformedError("a SenML record must be a CBOR map")
        extra = set(rec) - {_N, _U, _V, _VS, _VB, _T}
        if extra:
            raise MalformedError(f"SenML record has labels outside the reading subset: {extra}")
        values = [label for label in (_V, _VS, _VB) if label in rec]
        if len(values) != 1:
            raise MalformedError("a SenML record must carry exactly one of v, vs, vb")
        label = values[0]
        value = rec[label]
        if not (
            (label == _V and isinstance(value, int | float) and not isinstance(value, bool))
            or (label == _VS and isinstance(value, str))
            or (label == _VB and isinstance(value, bool))
        ):
            raise MalformedError(f"SenML {JSON_LABELS[label]} has the wrong type")
        name = rec.get(_N)
        if not isinstance(name, str):
            raise MalformedError("a SenML record must have a text name (label 0)")
        unit = rec.get(_U)
        if unit is not None and not isinstance(unit, str):
            raise MalformedError("SenML unit (label 1) must be text")
        return cls(name=name, value=value, unit=unit, time_offset=rec.get(_T))


def decode_pack(pack: object) -> list[dict[str, Any]]:
    """Map a decoded RFC 8428 CBOR pack (array of maps with integer labels) to JSON labels."""
    if not isinstance(pack, list):
        raise MalformedError("a SenML pack must be a CBOR array")
    out: list[dict[str, Any]] = []
    for rec in pack:
        if not isinstance(rec, dict):
            raise MalformedError("a SenML record must be a CBOR map")
        row: dict[str, Any] = {}
        for label, value in rec.items():
            if isinstance(label, str):
                row[label] = value  # extension labels are text (RFC 8428 §6)
            elif label in JSON_LABELS:
                row[JSON_LABELS[label]] = value
            else:
                raise MalformedError(f"unknown SenML CBOR label {label!r}")
        out.append(row)
    return out


def _check_text(text: object, what: str, *, allow_empty: bool) -> None:
    if not isinstance(text, str):
        raise MalformedError(f"{what} must be text")
    if not allow_empty and not text:
        raise MalformedError(f"{what} must not be empty")
    if len(text) > _MAX_TEXT:
        raise MalformedError(f"{what} is longer than {_MAX_TEXT} characters")
