"""Our checkpoints and proofs, checked by Go implementations that share no code with ours.

tests/interop/go/main.go verifies, with golang.org/x/mod/sumdb/note, the Ed25519 signature of a
checkpoint note written by provenance.checkpoint; with golang.org/x/mod/sumdb/tlog, a tlog-proof
(CheckRecord) and a consistency proof (CheckTree) from provenance.merkle; and the ECDSA
(signed-note type 0x02) signature with Go's crypto/ecdsa. Tampered inputs must be rejected.

The Go program is built offline from Debian's packages. When they are missing the test fails
and names them: it is part of CI (.ci/run installs them).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from provenance import merkle
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.keys import PrivateKey
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner
from provenance.tlogproof import TlogProof

ORIGIN = "sensorledger.example/interop"
OLD_SIZE, NEW_SIZE, INDEX = 13, 37, 21


def _leaf_data(i: int) -> bytes:
    return b"envelope %d" % i + hashlib.sha256(b"%d" % i).digest()


def write_case(directory: Path) -> None:
    """Files as the ledger will hand them out, produced by our core alone."""
    note_key = Ed25519NoteSigner(ORIGIN, hashlib.sha256(b"interop note key").digest())
    collector = EcdsaNoteSigner(
        ORIGIN, PrivateKey.from_scalar(hashlib.sha256(b"interop collector key").digest())
    )
    leaves = [merkle.RFC9162_SHA256.hash_leaf(_leaf_data(i)) for i in range(NEW_SIZE)]
    old = Checkpoint(ORIGIN, OLD_SIZE, merkle.root(leaves[:OLD_SIZE]))
    new = Checkpoint(ORIGIN, NEW_SIZE, merkle.root(leaves))
    signers = [note_key, collector]
    new_note = sign_checkpoint(new, signers)
    (directory / "log.vkey").write_text(note_key.verifier.vkey + "\n")
    (directory / "collector.vkey").write_text(collector.verifier.vkey + "\n")
    (directory / "old.checkpoint").write_bytes(sign_checkpoint(old, signers))
    (directory / "new.checkpoint").write_bytes(new_note)
    (directory / "entry.bin").write_bytes(_leaf_data(INDEX))
    proof = TlogProof(INDEX, tuple(merkle.inclusion_proof(leaves, INDEX)), new_note)
    (directory / "entry.tlog-proof").write_bytes(proof.to_bytes())
    consistency = merkle.consistency_proof(leaves, OLD_SIZE)
    lines = [f"old {OLD_SIZE}", *(base64.b64encode(h).decode() for h in consistency)]
    (directory / "consistency.txt").write_text("".join(line + "\n" for line in lines))


def run(binary: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), str(directory)], capture_output=True, text=True, timeout=60
    )


def test_go_verifies_our_checkpoint_and_proofs(interop_binary: Path, tmp_path: Path) -> None:
    write_case(tmp_path)
    result = run(interop_binary, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"ok note.Open Ed25519 {ORIGIN} size {NEW_SIZE} (1 other signature(s) ignored)",
        "ok crypto/ecdsa type 0x02 signature",
        f"ok tlog.CheckRecord leaf {INDEX} of {NEW_SIZE}",
        f"ok tlog.CheckTree {OLD_SIZE} -> {NEW_SIZE}",
    ]


def _flip_root(path: Path) -> None:
    lines = path.read_text().split("\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 1
    lines[2] = base64.b64encode(bytes(root)).decode()
    path.write_text("\n".join(lines))


def _flip_signature(key_index: int) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        text = path.read_text()
        body, sigs = text.rsplit("\n\n", 1)
        lines = sigs.split("\n")
        name, blob = lines[key_index].rsplit(" ", 1)
        raw = bytearray(base64.b64decode(blob))
        raw[-1] ^= 1
        lines[key_index] = f"{name} {base64.b64encode(bytes(raw)).decode()}"
        path.write_text(body + "\n\n" + "\n".join(lines))

    return tamper


def _flip_proof_line(line_index: int) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        lines = path.read_text().split("\n")
        raw = bytearray(base64.b64decode(lines[line_index]))
        raw[5] ^= 0x10
        lines[line_index] = base64.b64encode(bytes(raw)).decode()
        path.write_text("\n".join(lines))

    return tamper


def _set_index(path: Path) -> None:
    text = path.read_text()
    path.write_text(text.replace(f"index {INDEX}\n", f"index {INDEX + 1}\n", 1))


def _drop_last_line(path: Path) -> None:
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines[:-1]))


TAMPERINGS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "checkpoint root changed": ("new.checkpoint", _flip_root, "x/mod note rejects"),
    "Ed25519 signature altered": ("new.checkpoint", _flip_signature(0), "x/mod note rejects"),
    "ECDSA signature altered": ("new.checkpoint", _flip_signature(1), "ECDSA"),
    "inclusion path node altered": ("entry.tlog-proof", _flip_proof_line(3), "CheckRecord"),
    "inclusion index shifted": ("entry.tlog-proof", _set_index, "CheckRecord"),
    "entry altered": ("entry.bin", lambda p: p.write_bytes(p.read_bytes() + b"!"), "CheckRecord"),
    "consistency node altered": ("consistency.txt", _flip_proof_line(1), "CheckTree"),
    "consistency proof truncated": ("consistency.txt", _drop_last_line, "CheckTree"),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_go_rejects_tampered_inputs(interop_binary: Path, tmp_path: Path, case: str) -> None:
    file_name, tamper, reason = TAMPERINGS[case]
    write_case(tmp_path)
    tamper(tmp_path / file_name)
    result = run(interop_binary, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL:" in result.stdout
    assert reason in result.stdout, result.stdout
