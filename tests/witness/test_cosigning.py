"""The witness's decision for each add-checkpoint request, the spec's status codes, the
cosignature format (checked by the clean-room verifier), trust policies with witnesses, and
proofs of misbehaviour, without HTTP."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.cosignature import CosignatureSigner, CosignatureVerifier, parse_any_verifier_key
from provenance.errors import MalformedError
from provenance.merkle import RFC9162_SHA256, consistency_proof, old_root_from_consistency, root
from provenance.misbehaviour import verify_misbehaviour
from provenance.note import Ed25519NoteSigner, parse_note
from provenance.trust import parse_policy
from provenance.witnessproto import AddCheckpoint
from tests.witness.cleanroom import cosignature_time
from witness.cosigning import Witness
from witness.state import State

ORIGIN = "unit.example/log"
KEY = Ed25519NoteSigner.generate(ORIGIN)
HONEST = [RFC9162_SHA256.hash_leaf(b"h%d" % i) for i in range(40)]
FORK = [RFC9162_SHA256.hash_leaf(b"f%d" % i) for i in range(40)]


def note(leaves: list[bytes], size: int, key: Ed25519NoteSigner = KEY) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root(leaves[:size])), [key])


def req(old: int, new: int, leaves: list[bytes] = HONEST, proof: tuple[bytes, ...] | None = None,
        key: Ed25519NoteSigner = KEY) -> bytes:
    if proof is None:
        proof = tuple(consistency_proof(leaves[:new], old)) if 0 < old < new else ()
    return AddCheckpoint(old, proof, note(leaves, new, key)).to_bytes()


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    return Witness(CosignatureSigner.generate("w.example/unit"), {ORIGIN: [KEY.verifier]},
                   State(tmp_path / "state.db"), clock=lambda: 1_700_000_000)


def test_status_codes(witness: Witness) -> None:
    assert witness.add_checkpoint(b"old 0\n").status == 400
    assert witness.add_checkpoint(b"old 01\n\n" + note(HONEST, 3)).status == 400
    other = Ed25519NoteSigner.generate("other.example/log")
    foreign = sign_checkpoint(Checkpoint("other.example/log", 1, root(HONEST[:1])), [other])
    assert witness.add_checkpoint(AddCheckpoint(0, (), foreign).to_bytes()).status == 404
    impostor = Ed25519NoteSigner.generate(ORIGIN)  # same name, another key: unknown, ignored
    assert witness.add_checkpoint(req(0, 5, key=impostor)).status == 403
    forged = bytearray(req(0, 5))
    forged[-10] ^= 1  # the trusted key's signature fails
    assert witness.add_checkpoint(bytes(forged)).status in (400, 403)
    assert witness.add_checkpoint(req(6, 5, proof=())).status == 400
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, HONEST[0]), [KEY])
    assert witness.add_checkpoint(AddCheckpoint(0, (), empty).to_bytes()).status == 422
    assert witness.add_checkpoint(req(0, 5, proof=(HONEST[0],))).status == 422

    first = witness.add_checkpoint(req(0, 5))
    assert first.status == 200
    line = first.body.decode()
    assert line.startswith("\u2014 w.example/unit ") and line.endswith("\n")
    assert cosignature_time(note(HONEST, 5) + first.body, witness.signer.verifier.vkey) == (
        1_700_000_000)
    stale = witness.add_checkpoint(req(0, 9))
    assert (stale.status, stale.body, stale.content_type) == (409, b"5\n", "text/x.tlog.size")
    assert witness.add_checkpoint(req(3, 9)).status == 409
    bad = tuple(consistency_proof(HONEST[:9], 5))
    assert witness.add_checkpoint(req(5, 9, proof=(*bad[:-1], HONEST[0]))).status == 422
    assert witness.add_checkpoint(req(5, 9)).status == 200
    assert witness.add_checkpoint(req(9, 9)).status == 200  # the same head again: re-cosigned
    assert witness.state.latest(ORIGIN).size == 9  # type: ignore[union-attr]
    assert witness.state.misbehaviour() == []  # a bad proof alone proves nothing


def test_split_view_and_rewrite_are_kept_as_proofs(witness: Witness) -> None:
    assert witness.add_checkpoint(req(0, 7)).status == 200
    assert witness.add_checkpoint(req(7, 7, FORK)).status == 422
    assert witness.add_checkpoint(req(7, 12, FORK)).status == 422
    assert witness.state.latest(ORIGIN).size == 7  # type: ignore[union-attr]
    proofs = witness.state.misbehaviour()
    assert [p[2] for p in proofs] == ["split-view", "inconsistent"]
    for _, _, kind, data, _ in proofs:
        report = verify_misbehaviour(data, [KEY.verifier])
        assert report.ok, report.render()
        assert kind in report.render()
        # Another log key trusted: not proven against that log.
        assert not verify_misbehaviour(data, [Ed25519NoteSigner.generate(ORIGIN).verifier]).ok
        # Any changed line fails: the reporter's signature, or the log's.
        text = parse_note(data).text
        for n, line in enumerate(text.split("\n")[1:-1], start=1):
            lines = text.split("\n")
            lines[n] = line[:-2] + ("A" if line[-2] != "A" else "B") + line[-1]
            changed = data.replace(text.encode(), "\n".join(lines).encode())
            assert not verify_misbehaviour(changed).ok, line
        assert not verify_misbehaviour(data[:-5] + b"AAAA\n").ok


def test_old_root_from_consistency() -> None:
    proof = consistency_proof(FORK[:20], 7)
    assert old_root_from_consistency(7, 20, root(FORK[:20]), proof) == root(FORK[:7])
    assert old_root_from_consistency(7, 20, root(HONEST[:20]), proof) is None
    assert old_root_from_consistency(8, 20, root(FORK[:20]),
                                     consistency_proof(FORK[:20], 8)) is None


def test_cosigner_keys_round_trip() -> None:
    signer = CosignatureSigner.generate("w.example/keys")
    assert CosignatureSigner.from_skey(signer.skey).verifier.vkey == signer.verifier.vkey
    parsed = parse_any_verifier_key(signer.verifier.vkey)
    assert isinstance(parsed, CosignatureVerifier)
    raw = base64.b64decode(signer.verifier.vkey.split("+", 2)[2])
    assert raw[0] == 0x04 and len(raw) == 33
    text = Checkpoint(ORIGIN, 3, root(HONEST[:3])).text()
    sig = signer.cosign(text, 1234)
    assert sig.signature[:8] == (1234).to_bytes(8, "big")
    assert parsed.verify(text.encode(), sig.signature)
    assert not parsed.verify(text.replace("3", "4", 1).encode(), sig.signature)


def test_policy_groups_and_quorum() -> None:
    ws = [CosignatureSigner.generate(f"w{i}.example/p") for i in range(4)]
    text = "\n".join([f"log {KEY.verifier.vkey}",
                      *(f"witness w{i} {w.verifier.vkey}" for i, w in enumerate(ws)),
                      "group a 2 w0 w1 w2", "group both all a w3", "quorum both", ""])
    policy = parse_policy(text)
    assert policy.origin == ORIGIN and policy.quorum == "both"
    body = Checkpoint(ORIGIN, 3, root(HONEST[:3])).text()

    def sigs(*idx: int) -> list:  # type: ignore[type-arg]
        return [ws[i].cosign(body, 5) for i in idx]

    assert policy.witnessed(sigs(0, 1, 3)).met
    assert not policy.witnessed(sigs(0, 1)).met
    assert not policy.witnessed(sigs(0, 3)).met
    assert policy.witnessed(sigs(0, 1, 2, 3)).signed == ("w0", "w1", "w2", "w3")
    for bad in (f"log {KEY.verifier.vkey}\nwitness w {ws[0].verifier.vkey}\n",  # no quorum
                f"log {KEY.verifier.vkey}\nquorum nobody\n",
                f"log {KEY.verifier.vkey}\nwitness w {ws[0].verifier.vkey}\n"
                "group g 2 w\nquorum g\n",
                f"log {KEY.verifier.vkey}\nwitness w {KEY.verifier.vkey}\nquorum w\n"):
        with pytest.raises(MalformedError):
            parse_policy(bad)


def test_every_witness_command_has_an_example_and_is_documented() -> None:
    from click.testing import CliRunner

    from witness.cli import cli

    docs = (Path(__file__).resolve().parents[2] / "docs" / "witness.md").read_text()
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, name
        assert f"ledger-witness {name}" in docs, name
