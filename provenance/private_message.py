"""The private message: what a device publishes on its private topic for one private reading.

```
private-message = {
  1: bstr,        ; the COSE_Sign1 envelope, exactly as signed (its payload holds the commitment)
  2: tstr,        ; subject: whose data it is (a patient's pseudonym, or the device id)
  3: bstr,        ; sealed values: COSE_Encrypt0 (A256GCM) of the opening under the data key
  4: [* bstr],    ; grants: one COSE_Encrypt per authorised reader carrying that data key
}
```

One message, so the envelope and its sealed values are spooled, published and acknowledged
together: the collector commits both in one transaction or neither. Every message carries the
grants for its data key (each computed once per key and reader, then reused), so any one of
them is enough to read it, whatever was dropped or delivered out of order before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import cbor
from .cose_encrypt import Grant, Sealed
from .errors import MalformedError
from .wire import PrivateLabel as P

__all__ = ["MAX_GRANTS", "PrivateMessage", "check_subject", "is_private_message"]

MAX_GRANTS = 64
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def is_private_message(message: bytes) -> bool:
    """True for a private message (a CBOR map), False for an envelope (tag 18): how a spooled
    message tells the publisher its topic."""
    return message[:1] == b"\xa4"


def check_subject(subject: object) -> str:
    """Return ``subject`` if it is a valid subject id, else raise MalformedError."""
    if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
        raise MalformedError(
            f"subject {subject!r} must be 1-128 characters of A-Z a-z 0-9 . _ : @ - starting "
            "with a letter or digit", code="bad_subject")
    return subject


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    envelope: bytes
    subject: str
    sealed: bytes
    grants: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        check_subject(self.subject)
        if not isinstance(self.envelope, bytes) or not isinstance(self.sealed, bytes):
            raise MalformedError("a private message's envelope and sealed values are bytes",
                                 code="bad_private")
        if len(self.grants) > MAX_GRANTS or not all(isinstance(g, bytes) for g in self.grants):
            raise MalformedError(f"a private message carries at most {MAX_GRANTS} grants",
                                 code="bad_private")

    def encode(self) -> bytes:
        return cbor.encode({P.ENVELOPE: self.envelope, P.SUBJECT: self.subject,
                            P.SEALED: self.sealed, P.GRANTS: list(self.grants)})

    @classmethod
    def decode(cls, data: bytes) -> PrivateMessage:
        body = cbor.decode(data, what="private message")
        if not isinstance(body, dict) or set(body) != {P.ENVELOPE, P.SUBJECT, P.SEALED,
                                                       P.GRANTS}:
            raise MalformedError("a private message is the CBOR map {1: envelope, "
                                 "2: subject, 3: sealed, 4: grants}", code="bad_private")
        grants = body[P.GRANTS]
        if not isinstance(grants, list):
            raise MalformedError("grants must be an array", code="bad_private")
        return cls(body[P.ENVELOPE], body[P.SUBJECT], body[P.SEALED], tuple(grants))

    def check_parts(self) -> tuple[Sealed, list[Grant]]:
        """Decode the sealed values and every grant (structure only; nothing is decrypted)."""
        return Sealed.decode(self.sealed), [Grant.decode(g) for g in self.grants]
