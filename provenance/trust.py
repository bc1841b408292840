"""A verifier's trust policy for one log: which keys may sign its checkpoints (and blocks).

The policy names note verifier keys (``name+hash+base64``, Ed25519 type 0x01 or ECDSA type
0x02) and P-256 public keys in PEM. A PEM key checks format 1 block headers and, as signed-note
type 0x02 under the checkpoint's origin, checkpoints. The text form, one item a line (``#``
starts a comment)::

    log sensorledger.example/water-busan        (optional: refuse checkpoints of other logs)
    vkey sensorledger.example/water-busan+20c48bcf+ARi6...
    sensorledger.example/water-busan+f0a87887+AjBZ...   (a bare key: the KEY.vkey file of init)

Every trusted key named for a checkpoint's log must have signed it: an auditor who holds both
keys of a log holds it to both signatures.
    -----BEGIN PUBLIC KEY-----
    ...
    -----END PUBLIC KEY-----
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MalformedError, ProvenanceError
from .keys import PublicKey
from .note import EcdsaNoteVerifier, NoteVerifier, parse_verifier_key

__all__ = ["TrustPolicy", "parse_policy"]

_BEGIN, _END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    verifiers: tuple[NoteVerifier, ...] = ()
    collector_keys: tuple[PublicKey, ...] = ()
    origin: str | None = None

    def note_verifiers(self, origin: str) -> list[NoteVerifier]:
        """Every key that may sign a checkpoint of log ``origin``."""
        out = list(self.verifiers)
        known = {(v.name, v.key_id) for v in out}
        for key in self.collector_keys:
            v = EcdsaNoteVerifier(origin, key)
            if (v.name, v.key_id) not in known:
                out.append(v)
        return out

    def required(self, origin: str) -> list[NoteVerifier]:
        """The keys that must all sign a checkpoint of ``origin``."""
        return [v for v in self.note_verifiers(origin) if v.name == origin]

    def block_keys(self) -> list[PublicKey]:
        """Every P-256 key that may sign a block header (PEMs and ECDSA note keys)."""
        keys = list(self.collector_keys)
        keys += [v.key for v in self.verifiers if isinstance(v, EcdsaNoteVerifier)]
        return keys

    def merge(self, other: TrustPolicy) -> TrustPolicy:
        return TrustPolicy(self.verifiers + other.verifiers,
                           self.collector_keys + other.collector_keys,
                           self.origin or other.origin)

    def describe(self) -> str:
        parts = [f"{v.name}+{v.key_id:08x} ({'Ed25519' if v.sig_type == 1 else 'ECDSA'})"
                 for v in self.verifiers]
        parts += [f"P-256 key {k.kid_hex[:16]}…" for k in self.collector_keys]
        return ", ".join(parts) or "no key"


def _vkey(text: str, number: int) -> NoteVerifier:
    try:
        return parse_verifier_key(text)
    except ProvenanceError as exc:
        raise MalformedError(f"trust policy line {number}: {exc.diagnostics()}") from None


def parse_policy(text: str) -> TrustPolicy:
    """A policy from its text form; MalformedError names the line that is wrong."""
    verifiers: list[NoteVerifier] = []
    keys: list[PublicKey] = []
    origin: str | None = None
    pem: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if pem is not None:
            pem.append(line)
            if line == _END:
                try:
                    keys.append(PublicKey.from_pem("\n".join(pem).encode() + b"\n"))
                except (ProvenanceError, ValueError) as exc:
                    raise MalformedError(f"trust policy line {number}: not a P-256 public key: "
                                         f"{exc}") from None
                pem = None
            continue
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if line == _BEGIN:
            pem = [line]
        elif word == "vkey" and rest:
            verifiers.append(_vkey(rest.strip(), number))
        elif word == "log" and rest:
            origin = rest.strip()
        elif not rest and line.count("+") >= 2:
            verifiers.append(_vkey(line, number))
        else:
            raise MalformedError(f"trust policy line {number}: expected 'log ORIGIN', "
                                 f"'vkey KEY' or a PEM public key, got {line[:60]!r}")
    if pem is not None:
        raise MalformedError("trust policy: a PEM public key has no END line")
    if not verifiers and not keys:
        raise MalformedError("trust policy names no key")
    return TrustPolicy(tuple(verifiers), tuple(keys), origin)
