"""A verifier's trust policy for one log: which keys may sign its checkpoints (and blocks).

The policy names note verifier keys (``name+hash+base64``, Ed25519 type 0x01 or ECDSA type
0x02) and P-256 public keys in PEM. A PEM key checks format 1 block headers and, as signed-note
type 0x02 under the checkpoint's origin, checkpoints. The text form, one item a line (``#``
starts a comment)::

    log sensorledger.example/water-busan        (optional: refuse checkpoints of other logs)
    vkey sensorledger.example/water-busan+20c48bcf+ARi6...
    sensorledger.example/water-busan+f0a87887+AjBZ...   (a bare key: the KEY.vkey file of init)

    -----BEGIN PUBLIC KEY-----
    ...
    -----END PUBLIC KEY-----

Every trusted key named for a checkpoint's log must have signed it: an auditor who holds both
keys of a log holds it to both signatures.

Witnesses, in the C2SP tlog-policy form (c2sp.org/tlog-policy, the format Sigsum uses)::

    log sensorledger.example/water-busan+20c48bcf+ARi6...  (a log vkey; its name is the origin)
    witness w1 witness.example/w1+5d2f...+BG...  [URL]     (a cosigner vkey, type 0x04)
    witness w2 ...
    group two-of-three 2 w1 w2 w3                          (k, any or all of earlier names)
    quorum two-of-three                                    (a witness, a group, or none)

A policy with a ``quorum`` line accepts a checkpoint only when the witnesses whose
cosignatures verify satisfy it; :meth:`TrustPolicy.witnessed` says which signed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .cosignature import CosignatureVerifier, parse_any_verifier_key
from .errors import MalformedError, ProvenanceError
from .keys import PublicKey
from .note import EcdsaNoteVerifier, NoteSignature, NoteVerifier, parse_verifier_key

__all__ = ["Group", "TrustPolicy", "WitnessResult", "parse_policy"]


@dataclass(frozen=True, slots=True)
class Group:
    """``group NAME K MEMBER...``: satisfied when at least ``k`` members are."""

    name: str
    k: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WitnessResult:
    """Which of a policy's witnesses cosigned a checkpoint, and whether the quorum holds."""

    signed: tuple[str, ...]
    known: tuple[str, ...]
    quorum: str
    met: bool

    def describe(self) -> str:
        who = ", ".join(self.signed) or "none"
        return (f"cosigned by {len(self.signed)} of {len(self.known)} policy witnesses "
                f"({who}); quorum {self.quorum} {'met' if self.met else 'NOT met'}")

_BEGIN, _END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    verifiers: tuple[NoteVerifier, ...] = ()
    collector_keys: tuple[PublicKey, ...] = ()
    origin: str | None = None
    witnesses: tuple[tuple[str, CosignatureVerifier], ...] = ()
    groups: tuple[Group, ...] = field(default=())
    quorum: str | None = None
    """The quorum name (a witness, a group or ``none``); None: the policy asks no witnesses."""

    def note_verifiers(self, origin: str) -> list[NoteVerifier]:
        """Every key that may sign a checkpoint of log ``origin`` (cosigners included)."""
        out = list(self.verifiers) + [v for _, v in self.witnesses]
        known = {(v.name, v.key_id) for v in out}
        for key in self.collector_keys:
            v = EcdsaNoteVerifier(origin, key)
            if (v.name, v.key_id) not in known:
                out.append(v)
        return out

    def required(self, origin: str) -> list[NoteVerifier]:
        """The keys that must all sign a checkpoint of ``origin``."""
        return [v for v in self.note_verifiers(origin)
                if v.name == origin and not isinstance(v, CosignatureVerifier)]

    def witnessed(self, verified: Iterable[NoteSignature]) -> WitnessResult:
        """Evaluate the quorum over the verified signatures of a checkpoint note."""
        have = {(s.name, s.key_id) for s in verified}
        signed = {name for name, v in self.witnesses if (v.name, v.key_id) in have}
        groups = {g.name: g for g in self.groups}

        def holds(name: str) -> bool:
            if name == "none":
                return True
            group = groups.get(name)
            if group is None:
                return name in signed
            return sum(holds(m) for m in group.members) >= group.k

        quorum = self.quorum or "none"
        return WitnessResult(tuple(n for n, _ in self.witnesses if n in signed),
                             tuple(n for n, _ in self.witnesses), quorum, holds(quorum))

    def block_keys(self) -> list[PublicKey]:
        """Every P-256 key that may sign a block header (PEMs and ECDSA note keys)."""
        keys = list(self.collector_keys)
        keys += [v.key for v in self.verifiers if isinstance(v, EcdsaNoteVerifier)]
        return keys

    def merge(self, other: TrustPolicy) -> TrustPolicy:
        return TrustPolicy(self.verifiers + other.verifiers,
                           self.collector_keys + other.collector_keys,
                           self.origin or other.origin,
                           self.witnesses + other.witnesses, self.groups + other.groups,
                           self.quorum or other.quorum)

    def describe(self) -> str:
        parts = [f"{v.name}+{v.key_id:08x} ({'Ed25519' if v.sig_type == 1 else 'ECDSA'})"
                 for v in self.verifiers]
        parts += [f"P-256 key {k.kid_hex[:16]}…" for k in self.collector_keys]
        if self.quorum is not None:
            parts.append(f"{len(self.witnesses)} witness(es), quorum {self.quorum}")
        return ", ".join(parts) or "no key"


def _vkey(text: str, number: int) -> NoteVerifier:
    try:
        return parse_verifier_key(text)
    except ProvenanceError as exc:
        raise MalformedError(f"trust policy line {number}: {exc.diagnostics()}") from None


class _Witnesses:
    """The tlog-policy part of a policy being read: witnesses, groups, the quorum."""

    def __init__(self) -> None:
        self.witnesses: list[tuple[str, CosignatureVerifier]] = []
        self.groups: list[Group] = []
        self.quorum: str | None = None
        self.names: set[str] = set()

    def line(self, word: str, args: list[str], number: int) -> None:
        where = f"trust policy line {number}"
        if word == "witness":
            if len(args) not in (2, 3):
                raise MalformedError(f"{where}: expected 'witness NAME VKEY [URL]'")
            self._new_name(args[0], where)
            try:
                key = parse_any_verifier_key(args[1])
            except ProvenanceError as exc:
                raise MalformedError(f"{where}: {exc.diagnostics()}") from None
            if not isinstance(key, CosignatureVerifier):
                raise MalformedError(f"{where}: a witness key is a cosignature/v1 vkey "
                                     "(type 0x04)")
            if any(v.key_material == key.key_material for _, v in self.witnesses):
                raise MalformedError(f"{where}: witness key listed twice")
            self.witnesses.append((args[0], key))
        elif word == "group":
            if len(args) < 3:
                raise MalformedError(f"{where}: expected 'group NAME K|any|all MEMBER...'")
            name, k_text, members = args[0], args[1], args[2:]
            self._new_name(name, where)
            for m in members:
                if m not in self.names or m == name:
                    raise MalformedError(f"{where}: group member {m!r} is not defined above")
            if len(set(members)) != len(members):
                raise MalformedError(f"{where}: a group lists a member twice")
            k = {"any": 1, "all": len(members)}.get(k_text)
            if k is None:
                if not k_text.isdigit() or not 1 <= int(k_text) <= len(members):
                    raise MalformedError(f"{where}: threshold {k_text!r} is not any, all or "
                                         f"1..{len(members)}")
                k = int(k_text)
            self.groups.append(Group(name, k, tuple(members)))
        else:  # quorum
            if len(args) != 1:
                raise MalformedError(f"{where}: expected 'quorum NAME'")
            if self.quorum is not None:
                raise MalformedError(f"{where}: a policy has exactly one quorum line")
            if args[0] != "none" and args[0] not in self.names:
                raise MalformedError(f"{where}: quorum {args[0]!r} is not defined above")
            self.quorum = args[0]

    def _new_name(self, name: str, where: str) -> None:
        if name == "none" or name in self.names:
            raise MalformedError(f"{where}: name {name!r} is reserved or already defined")
        self.names.add(name)


def parse_policy(text: str) -> TrustPolicy:
    """A policy from its text form; MalformedError names the line that is wrong."""
    verifiers: list[NoteVerifier] = []
    keys: list[PublicKey] = []
    origin: str | None = None
    pem: list[str] | None = None
    witnesses = _Witnesses()
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
        elif word == "log" and "+" in rest:  # tlog-policy: log VKEY [URL]
            key = _vkey(rest.split()[0], number)
            verifiers.append(key)
            origin = origin or key.name
        elif word == "log" and rest:
            origin = rest.strip()
        elif word in ("witness", "group", "quorum"):
            witnesses.line(word, rest.split(), number)
        elif not rest and line.count("+") >= 2:
            verifiers.append(_vkey(line, number))
        else:
            raise MalformedError(f"trust policy line {number}: expected 'log ORIGIN', 'log VKEY', "
                                 "'vkey KEY', 'witness', 'group', 'quorum' or a PEM public "
                                 f"key, got {line[:60]!r}")
    if pem is not None:
        raise MalformedError("trust policy: a PEM public key has no END line")
    if not verifiers and not keys:
        raise MalformedError("trust policy names no key")
    if witnesses.witnesses and witnesses.quorum is None:
        raise MalformedError("trust policy lists witnesses but no 'quorum' line")
    return TrustPolicy(tuple(verifiers), tuple(keys), origin, tuple(witnesses.witnesses),
                       tuple(witnesses.groups), witnesses.quorum)
