"""C2SP tlog checkpoints and tlog-proof files: building, strict parsing, verification."""

from __future__ import annotations

import base64
import hashlib

import pytest

from provenance import merkle
from provenance.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from provenance.errors import (
    CheckpointFormatError,
    CheckpointOriginError,
    MalformedError,
    TlogProofFormatError,
    UnverifiedNoteError,
)
from provenance.merkle import MerkleError, RootMismatchError
from provenance.note import Ed25519NoteSigner, sign_note
from provenance.tlogproof import TLOG_PROOF_HEADER, TlogProof, parse_tlog_proof, verify_tlog_proof

ORIGIN = "sensorledger.example/test"
KEY = Ed25519NoteSigner(ORIGIN, hashlib.sha256(b"checkpoint test key").digest())
OTHER = Ed25519NoteSigner(ORIGIN, hashlib.sha256(b"another key").digest())
ROOT = hashlib.sha256(b"root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()

# c2sp.org/tlog-checkpoint, the example's note text.
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_spec_example_text_parses_and_rebuilds() -> None:
    cp = parse_checkpoint(SPEC_TEXT)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert len(cp.root) == 32
    assert cp.text() == SPEC_TEXT


def test_extensions_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 0, merkle.RFC9162_SHA256.empty_root(), ("ext one", "ext two"))
    assert parse_checkpoint(cp.text()) == cp
    assert cp.text().endswith("ext one\next two\n")


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("a\tb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, MAX_TREE_SIZE + 1, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT + b"\0", ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("two\nlines",)),
    ],
)
def test_checkpoint_checks_itself(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(CheckpointFormatError) as info:
        Checkpoint(origin, size, root, extensions)
    assert isinstance(info.value, MalformedError)


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n1\n{ROOT_B64}",  # no final newline
        f"{ORIGIN}\n1\n",  # no root
        f"{ORIGIN}\n01\n{ROOT_B64}\n",  # leading zero
        f"{ORIGIN}\n+1\n{ROOT_B64}\n",
        f"{ORIGIN}\n 1\n{ROOT_B64}\n",
        f"{ORIGIN}\n1_0\n{ROOT_B64}\n",
        f"{ORIGIN}\n\u0661\n{ROOT_B64}\n",  # a digit, but not an ASCII one
        f"{ORIGIN}\n-1\n{ROOT_B64}\n",
        f"{ORIGIN}\n{MAX_TREE_SIZE + 1}\n{ROOT_B64}\n",
        f"{ORIGIN}\n1\n{ROOT_B64.rstrip('=')}\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"{ORIGIN}\n1\n{ROOT.hex()}\n",
        f"{ORIGIN}\n1\n{ROOT_B64}\n\n",  # empty extension line
        f"\n1\n{ROOT_B64}\n",  # empty origin
    ],
)
def test_malformed_checkpoint_texts_rejected(text: str) -> None:
    with pytest.raises(CheckpointFormatError):
        parse_checkpoint(text)


def test_sign_and_open() -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    data = sign_checkpoint(cp, [KEY])
    assert data.startswith(cp.text().encode() + b"\n\xe2\x80\x94 ")
    signed = open_checkpoint(data, [KEY.verifier], origin=ORIGIN)
    assert signed.checkpoint == cp
    assert signed.data == data
    with pytest.raises(CheckpointOriginError):
        open_checkpoint(data, [KEY.verifier], origin="sensorledger.example/other")
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(data, [OTHER.verifier])


def test_a_signed_note_that_is_not_a_checkpoint_is_rejected() -> None:
    with pytest.raises(CheckpointFormatError):
        open_checkpoint(sign_note("hello\nworld\n", [KEY]), [KEY.verifier])


# --------------------------------------------------------------------------------------------
# tlog-proof
# --------------------------------------------------------------------------------------------

LEAVES = [merkle.RFC9162_SHA256.hash_leaf(b"entry %d" % i) for i in range(11)]
INDEX = 6
CP_NOTE = sign_checkpoint(Checkpoint(ORIGIN, len(LEAVES), merkle.root(LEAVES)), [KEY])
PATH = tuple(merkle.inclusion_proof(LEAVES, INDEX))


@pytest.mark.parametrize("extra", [None, b"device arc-panel-7 seq 42"])
def test_tlog_proof_round_trip_and_verify(extra: bytes | None) -> None:
    proof = TlogProof(INDEX, PATH, CP_NOTE, extra)
    data = proof.to_bytes()
    lines = data.decode().split("\n")
    assert lines[0] == TLOG_PROOF_HEADER
    assert lines[1 if extra is None else 2] == f"index {INDEX}"
    assert parse_tlog_proof(data) == proof
    signed = verify_tlog_proof(proof, LEAVES[INDEX], [KEY.verifier], origin=ORIGIN)
    assert signed.checkpoint.size == len(LEAVES)


def test_tlog_proof_of_a_one_leaf_tree_has_no_path() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, LEAVES[0]), [KEY])
    data = TlogProof(0, (), note).to_bytes()
    assert data.startswith(f"{TLOG_PROOF_HEADER}\nindex 0\n\n".encode())
    verify_tlog_proof(parse_tlog_proof(data), LEAVES[0], [KEY.verifier])


def test_tlog_proof_verification_failures() -> None:
    proof = TlogProof(INDEX, PATH, CP_NOTE)
    with pytest.raises(RootMismatchError):
        verify_tlog_proof(proof, LEAVES[INDEX + 1], [KEY.verifier])
    with pytest.raises(MerkleError):
        verify_tlog_proof(TlogProof(INDEX + 1, PATH, CP_NOTE), LEAVES[INDEX], [KEY.verifier])
    bad_path = (PATH[0], hashlib.sha256(b"x").digest(), *PATH[2:])
    with pytest.raises(RootMismatchError):
        verify_tlog_proof(TlogProof(INDEX, bad_path, CP_NOTE), LEAVES[INDEX], [KEY.verifier])
    with pytest.raises(MerkleError):
        verify_tlog_proof(TlogProof(INDEX, PATH[:-1], CP_NOTE), LEAVES[INDEX], [KEY.verifier])
    with pytest.raises(UnverifiedNoteError):
        verify_tlog_proof(proof, LEAVES[INDEX], [OTHER.verifier])
    with pytest.raises(CheckpointOriginError):
        verify_tlog_proof(proof, LEAVES[INDEX], [KEY.verifier], origin="other.example/log")


GOOD = TlogProof(INDEX, PATH, CP_NOTE).to_bytes().decode()
HASH_LINE = base64.b64encode(PATH[0]).decode()


@pytest.mark.parametrize(
    "text",
    [
        GOOD.replace(TLOG_PROOF_HEADER, "c2sp.org/tlog-proof@v2", 1),
        GOOD.replace(f"index {INDEX}\n", "", 1),
        GOOD.replace(f"index {INDEX}\n", f"index 0{INDEX}\n", 1),
        GOOD.replace(f"index {INDEX}\n", f"index {INDEX} \n", 1),
        GOOD.replace(f"index {INDEX}\n", f"index  {INDEX}\n", 1),
        GOOD.replace(f"index {INDEX}\n", "index -1\n", 1),
        GOOD.replace(f"index {INDEX}\n", f"extra !!\nindex {INDEX}\n", 1),
        GOOD.replace(f"index {INDEX}\n", f"index {INDEX}\nextra AAAA\n", 1),
        GOOD.replace(HASH_LINE, HASH_LINE.rstrip("="), 1),
        GOOD.replace(HASH_LINE, HASH_LINE[:-4] + "AA==", 1),  # 31 bytes
        GOOD.replace(HASH_LINE, PATH[0].hex(), 1),
        GOOD.replace(HASH_LINE, "é" + HASH_LINE[1:], 1),
        GOOD.replace(f"index {INDEX}\n", f"index {INDEX}\n" + (HASH_LINE + "\n") * 64, 1),
        GOOD.replace("\n\n", "\n", 1),  # no empty line before the checkpoint
        GOOD[: GOOD.index("\n\n") + 2],  # no checkpoint
        GOOD.rstrip("\n"),  # checkpoint without its final newline
    ],
)
def test_malformed_tlog_proofs_rejected(text: str) -> None:
    with pytest.raises((TlogProofFormatError, MalformedError)):
        proof = parse_tlog_proof(text.encode())
        verify_tlog_proof(proof, LEAVES[INDEX], [KEY.verifier])


def test_tlog_proof_checks_itself() -> None:
    with pytest.raises(TlogProofFormatError):
        TlogProof(-1, PATH, CP_NOTE)
    with pytest.raises(TlogProofFormatError):
        TlogProof(INDEX, (b"short",), CP_NOTE)
    with pytest.raises(TlogProofFormatError):
        TlogProof(INDEX, PATH, CP_NOTE, b"")
    with pytest.raises(TlogProofFormatError):
        TlogProof(INDEX, (PATH[0],) * 64, CP_NOTE)
