"""The erasure record: a collector statement of type ``erase`` (provenance/statement.py).

Fields, beside the statement's own ``v``, ``type``, ``seq`` and ``time``::

    "authority": tstr                    ; on whose authority (a request number, an officer)
    "readings":  [* [device id, seq]]    ; the readings whose sealed values were destroyed
    "keys":      [* bstr]                ; the data key ids whose grants were destroyed

It never names the subject: the statement is a leaf of the log and outlives the data, and a
subject's name in it would be personal data that can no longer be erased. Signed by the
collector key like every statement and logged as a ``@collector`` row, ordered with the
readings it speaks of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .keys import PrivateKey, PublicKey
from .reading import check_device_id
from .statement import SignedStatement, Statement, StatementError, sign_statement

__all__ = ["ERASE", "Erasure", "erasure_of", "sign_erasure", "verify_erasure"]

ERASE: Final = "erase"
_FIELDS = frozenset({"authority", "readings", "keys"})
_MAX_AUTHORITY = 200


@dataclass(frozen=True, slots=True)
class Erasure:
    authority: str
    readings: tuple[tuple[str, int], ...]
    keys: tuple[bytes, ...]

    def to_fields(self) -> dict[str, Any]:
        return {"authority": self.authority, "readings": [list(r) for r in self.readings],
                "keys": list(self.keys)}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Erasure:
        if set(fields) != _FIELDS:
            raise StatementError("an erase statement has exactly the fields authority, "
                                 "readings, keys")
        authority, readings, keys = fields["authority"], fields["readings"], fields["keys"]
        if not isinstance(authority, str) or len(authority) > _MAX_AUTHORITY:
            raise StatementError(f"erase authority must be text of at most {_MAX_AUTHORITY}")
        if not isinstance(readings, list) or not isinstance(keys, list):
            raise StatementError("erase readings and keys must be arrays")
        out: list[tuple[str, int]] = []
        for item in readings:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], int)
                    and not isinstance(item[1], bool) and item[1] >= 0):
                raise StatementError("each erased reading is [device id, seq]")
            out.append((check_device_id(item[0]), item[1]))
        if not all(isinstance(k, bytes) for k in keys):
            raise StatementError("erased data key ids must be byte strings")
        return cls(authority, tuple(out), tuple(keys))


def erasure_of(statement: Statement) -> Erasure:
    if statement.type != ERASE:
        raise StatementError(f"a {statement.type!r} statement is not an erasure")
    return Erasure.from_fields(statement.fields)


def sign_erasure(seq: int, time_ms: int, erasure: Erasure, key: PrivateKey) -> bytes:
    """The erase statement with counter ``seq``, signed by the collector ``key``."""
    if len(erasure.authority) > _MAX_AUTHORITY:
        raise StatementError(f"erase authority must be at most {_MAX_AUTHORITY} characters")
    return sign_statement(Statement(ERASE, seq, time_ms, erasure.to_fields()), key)


def verify_erasure(signed: bytes, collector: PublicKey) -> tuple[Statement, Erasure]:
    """The statement and its erasure, once the collector signature holds."""
    statement = SignedStatement.decode(signed).verify(collector)
    return statement, erasure_of(statement)
