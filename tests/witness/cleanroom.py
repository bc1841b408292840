"""A cosignature verifier written from the C2SP texts alone (signed-note, tlog-cosignature),
sharing no code with provenance/: it reads the vkey, finds the witness's signature line by name
and key id, and checks the timestamped Ed25519 signature over the cosignature/v1 message."""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH = "\u2014"


def cosignature_time(note: bytes, vkey: str) -> int | None:
    """The timestamp of the valid cosignature of ``vkey`` on the checkpoint ``note``, or None
    when the note has no such line. Raises ValueError for a line that is the witness's (name
    and key id) but does not verify."""
    name, key_hash, blob = vkey.split("+", 2)
    raw = base64.b64decode(blob)
    if raw[0] != 4 or len(raw) != 33:
        raise ValueError("not a cosignature/v1 Ed25519 vkey (type 0x04, 32-byte key)")
    public = raw[1:]
    # signed-note: key id = SHA-256(name || "\n" || type || key)[:4]
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + public).digest()[:4]
    if key_id.hex() != key_hash:
        raise ValueError("vkey hash does not match its key")
    text = note.decode("utf-8")
    body, _, signatures = text.rpartition("\n\n")
    body += "\n"  # the note text ends with its own newline, before the blank line
    for line in signatures.splitlines():
        if not line.startswith(EM_DASH + " "):
            continue
        who, _, sig_b64 = line[2:].partition(" ")
        sig = base64.b64decode(sig_b64)
        if who != name or sig[:4] != key_id:
            continue
        if len(sig) != 4 + 8 + 64:
            raise ValueError("a cosignature is key id, 8-byte timestamp, 64-byte signature")
        (timestamp,) = struct.unpack(">Q", sig[4:12])
        # tlog-cosignature: "cosignature/v1\n" "time <decimal>\n" then the note body
        message = f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(sig[12:], message)
        except InvalidSignature:
            raise ValueError(f"cosignature of {name} does not verify") from None
        return int(timestamp)
    return None
