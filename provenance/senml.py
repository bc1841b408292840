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
_RECORD_LABELS = frozenset({_N, _U, _V, _VS, _VB, _T})
# Tuples, not ``int | float``: isinstance is several times faster with a tuple.
_NUMBER_TYPES = (int, float)
_VALUE_TYPES = (bool, int, float, str)


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One SenML record: a named value with an optional unit and a time offset in seconds.

    Keyword arguments only: ``unit`` and a text ``value`` are both strings, and a swap would
    pass every check."""

    name: str
    value: Value
    unit: str | None = None
    time_offset: float | int | None = None

    def __post_init__(self) -> None:
        _check_text(self.name, "measurement name")
        if self.unit is not None:
            _check_text(self.unit, f"unit of {self.name!r}")
        value = self.value
        if not isinstance(value, _VALUE_TYPES):
            raise MalformedError(
                f"measurement {self.name!r} has unsupported value type {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise MalformedError(f"measurement {self.name!r} is not finite: {value}")
        offset = self.time_offset
        if offset is not None and (
            isinstance(offset, bool)
            or not isinstance(offset, _NUMBER_TYPES)
            or not math.isfinite(offset)
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
        if not _RECORD_LABELS.issuperset(rec):
            extra = set(rec) - _RECORD_LABELS
            raise MalformedError(f"SenML record has labels outside the reading subset: {extra}")
        if (_V in rec) + (_VS in rec) + (_VB in rec) != 1:
            raise MalformedError("a SenML record must carry exactly one of v, vs, vb")
        if _V in rec:
            value = rec[_V]
            if not isinstance(value, _NUMBER_TYPES) or isinstance(value, bool):
                raise MalformedError("SenML v has the wrong type")
        elif _VS in rec:
            value = rec[_VS]
            if not isinstance(value, str):
                raise MalformedError("SenML vs has the wrong type")
        else:
            value = rec[_VB]
            if not isinstance(value, bool):
                raise MalformedError("SenML vb has the wrong type")
        name = rec.get(_N)
        if not isinstance(name, str):
            raise MalformedError("a SenML record must have a text name (label 0)")
        # A label that is present carries a value: null is not "absent" (it would not survive
        # re-encoding from the Measurement, which omits what is None).
        unit = rec.get(_U)
        if _U in rec and not isinstance(unit, str):
            raise MalformedError("SenML unit (label 1) must be text")
        offset = rec.get(_T)
        if _T in rec and offset is None:
            raise MalformedError("SenML time (label 6) must be a number")
        return cls(name=name, value=value, unit=unit, time_offset=offset)


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


def _check_text(text: object, what: str) -> None:
    if not isinstance(text, str):
        raise MalformedError(f"{what} must be text")
    if not 0 < len(text) <= _MAX_TEXT:
        raise MalformedError(f"{what} must be 1-{_MAX_TEXT} characters, not {len(text)}")
