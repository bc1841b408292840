"""C2SP signed notes: published vectors, an independent ECDSA check, strict parsing."""

from __future__ import annotations

import base64
import hashlib

import ecdsa
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from provenance.errors import (
    KeyFormatError,
    MalformedError,
    NoteFormatError,
    NoteKeyError,
    NoteSignatureError,
    ProvenanceError,
    SignatureError,
    UnverifiedNoteError,
)
from provenance.keys import PrivateKey
from provenance.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    SIG_ECDSA,
    SIG_ED25519,
    EcdsaNoteSigner,
    EcdsaNoteVerifier,
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    NoteSignature,
    ecdsa_key_id,
    ed25519_key_id,
    open_note,
    parse_note,
    parse_verifier_key,
    sign_note,
)

# c2sp.org/signed-note, "Verifier keys / Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi"
    "2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()

# golang.org/x/mod/sumdb/note note_test.go (TestSign, TestNewVerifier).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
    "KvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()

P256 = PrivateKey.from_scalar(hashlib.sha256(b"note test ecdsa key").digest())
NAME = "sensorledger.example/test"


def ed_signer(tag: str = "a", name: str = NAME) -> Ed25519NoteSigner:
    return Ed25519NoteSigner(name, hashlib.sha256(tag.encode()).digest())


def ec_signer(name: str = NAME) -> EcdsaNoteSigner:
    return EcdsaNoteSigner(name, P256)


# --------------------------------------------------------------------------------------------
# Published vectors
# --------------------------------------------------------------------------------------------


def test_spec_example_verifies() -> None:
    verifier = parse_verifier_key(SPEC_VKEY)
    assert isinstance(verifier, Ed25519NoteVerifier)
    assert verifier.vkey == SPEC_VKEY
    opened = open_note(SPEC_NOTE, [verifier])
    assert opened.text == "This is an example message.\n"
    assert [(s.name, s.key_id) for s in opened.verified] == [("example.com/foo", 0x530D903A)]
    assert opened.unverified == ()


def test_go_signer_key_signs_the_go_vector_byte_for_byte() -> None:
    signer = Ed25519NoteSigner.from_skey(GO_SKEY)
    assert signer.skey == GO_SKEY
    assert signer.verifier.vkey == GO_VKEY
    assert signer.key_id == 0xC74F20A3
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE
    assert open_note(GO_NOTE, [parse_verifier_key(GO_VKEY)]).text == GO_TEXT
    assert "AYEKFALV" not in repr(signer)


def test_ed25519_key_id_is_the_recommended_hash() -> None:
    signer = ed_signer()
    pub = signer.verifier.key_material
    digest = hashlib.sha256(NAME.encode() + b"\n\x01" + pub).digest()
    assert signer.key_id == int.from_bytes(digest[:4], "big") == ed25519_key_id(NAME, pub)
    key_b64 = base64.b64encode(bytes([1]) + pub).decode()
    assert signer.verifier.vkey == f"{NAME}+{signer.key_id:08x}+{key_b64}"


# --------------------------------------------------------------------------------------------
# ECDSA (type 0x02)
# --------------------------------------------------------------------------------------------


def test_ecdsa_key_id_is_the_truncated_kid() -> None:
    verifier = ec_signer().verifier
    assert verifier.key_id == int.from_bytes(P256.kid[:4], "big") == ecdsa_key_id(P256.public.der)
    assert verifier.sig_type == SIG_ECDSA
    key_b64 = base64.b64encode(bytes([2]) + P256.public.der).decode()
    assert verifier.vkey == f"{NAME}+{P256.kid[:4].hex()}+{key_b64}"
    parsed = parse_verifier_key(verifier.vkey)
    assert isinstance(parsed, EcdsaNoteVerifier)
    assert parsed.key == P256.public


def test_ecdsa_signature_checks_with_an_independent_library() -> None:
    data = sign_note("hello\n", [ec_signer()])
    sig = parse_note(data).signatures[0]
    assert sig.key_id == int.from_bytes(P256.kid[:4], "big")
    assert sig.signature[0] == 0x30  # ASN.1 DER, not raw r || s
    vk = ecdsa.VerifyingKey.from_der(P256.public.der)
    assert vk.verify(
        sig.signature, b"hello\n", hashfunc=hashlib.sha256, sigdecode=ecdsa.util.sigdecode_der
    )


def test_deterministic_ecdsa_reproduces() -> None:
    signer = EcdsaNoteSigner(NAME, P256, deterministic=True)
    assert sign_note("x\n", [signer]) == sign_note("x\n", [signer])


def test_non_canonical_der_ecdsa_signature_is_rejected() -> None:
    verifier = ec_signer().verifier
    sig = parse_note(sign_note("x\n", [ec_signer()])).signatures[0].signature
    assert verifier.verify(b"x\n", sig)
    r, s = decode_dss_signature(sig)
    rb = b"\x00" + r.to_bytes(33, "big").lstrip(b"\x00").rjust(33, b"\x00")  # one byte too many
    sb = s.to_bytes(33, "big").lstrip(b"\x00")
    if sb[0] & 0x80:
        sb = b"\x00" + sb
    padded = b"\x30" + bytes([len(rb) + len(sb) + 4, 2, len(rb)]) + rb + bytes([2, len(sb)]) + sb
    assert not verifier.verify(b"x\n", padded)
    assert not verifier.verify(b"x\n", sig + b"\x00")


# --------------------------------------------------------------------------------------------
# Several signers, unknown keys, failures
# --------------------------------------------------------------------------------------------


def test_two_signatures_each_verifiable_alone() -> None:
    ed, ec = ed_signer(), ec_signer()
    data = sign_note("body\n", [ed, ec])
    both = open_note(data, [ed.verifier, ec.verifier])
    assert [s.key_id for s in both.verified] == [ed.key_id, ec.key_id]
    only_ed = open_note(data, [ed.verifier])
    assert [s.key_id for s in only_ed.unverified] == [ec.key_id]
    only_ec = open_note(data, [ec.verifier])
    assert [s.key_id for s in only_ec.verified] == [ec.key_id]


def test_unknown_signatures_are_ignored() -> None:
    trusted, stranger = ed_signer("t"), ed_signer("s")
    same_name_other_id = ed_signer("x")  # same name, other key
    other_name_same_key = Ed25519NoteSigner("other.example", hashlib.sha256(b"t").digest())
    data = sign_note("b\n", [stranger, same_name_other_id, trusted, other_name_same_key])
    opened = open_note(data, [trusted.verifier])
    assert [s.key_id for s in opened.verified] == [trusted.key_id]
    assert len(opened.unverified) == 3


def test_a_forged_signature_in_the_name_of_another_key_is_ignored() -> None:
    trusted = ed_signer("t")
    forged = NoteSignature(trusted.name, trusted.key_id ^ 1, b"\x00" * 64)
    good = parse_note(sign_note("b\n", [trusted])).signatures[0]
    data = ("b\n\n" + forged.line() + "\n" + good.line() + "\n").encode()
    assert open_note(data, [trusted.verifier]).unverified == (forged,)


def test_no_trusted_signature_is_rejected() -> None:
    data = sign_note("b\n", [ed_signer("s")])
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(data, [ed_signer("t").verifier])
    assert isinstance(info.value, SignatureError)
    with pytest.raises(UnverifiedNoteError):
        open_note(data, [])


def test_a_failing_trusted_signature_rejects_the_whole_note() -> None:
    a, b = ed_signer("a"), ed_signer("b", name="other.example")
    data = sign_note("body\n", [a, b])
    tampered = data.replace(b"body\n", b"bodY\n", 1)
    with pytest.raises(NoteSignatureError) as info:
        open_note(tampered, [a.verifier])
    assert (info.value.name, info.value.key_id) == (a.name, a.key_id)
    # One good trusted signature does not excuse a bad one.
    bad_b = NoteSignature(b.name, b.key_id, b"\x01" * 64)
    good_a = parse_note(data).signatures[0]
    mixed = ("body\n\n" + good_a.line() + "\n" + bad_b.line() + "\n").encode()
    with pytest.raises(NoteSignatureError):
        open_note(mixed, [a.verifier, b.verifier])


def test_the_same_trusted_key_twice_is_malformed() -> None:
    a = ed_signer()
    line = parse_note(sign_note("b\n", [a])).signatures[0].line()
    with pytest.raises(NoteFormatError):
        open_note(f"b\n\n{line}\n{line}\n".encode(), [a.verifier])


def test_sixteen_signatures_are_accepted() -> None:
    signers = [ed_signer(str(i), name=f"w{i}.example") for i in range(16)]
    opened = open_note(sign_note("b\n", signers), [s.verifier for s in signers])
    assert len(opened.verified) == 16


def test_text_may_hold_empty_lines() -> None:
    a = ed_signer()
    assert open_note(sign_note("a\n\nb\n", [a]), [a.verifier]).text == "a\n\nb\n"


# --------------------------------------------------------------------------------------------
# Strict parsing
# --------------------------------------------------------------------------------------------

GOOD_LINE = parse_note(sign_note("b\n", [ed_signer()])).signatures[0].line()
GOOD_B64 = GOOD_LINE.rsplit(" ", 1)[1]


@pytest.mark.parametrize(
    "data",
    [
        b"b\n\n" + GOOD_LINE.encode(),  # no final newline
        b"b\n" + GOOD_LINE.encode() + b"\n",  # no blank line
        b"b\n\n",  # no signatures
        b"b\x01\n\n" + GOOD_LINE.encode() + b"\n",  # control character
        b"b\r\n\n" + GOOD_LINE.encode() + b"\n",
        b"\xff\n\n" + GOOD_LINE.encode() + b"\n",  # not UTF-8
        b"b\n\n- " + GOOD_LINE[2:].encode() + b"\n",  # hyphen, not em dash
        b"b\n\n\xe2\x80\x94" + GOOD_LINE[2:].encode() + b"\n",  # no space after the dash
        f"b\n\n— {NAME}\n".encode(),  # no signature
        f"b\n\n— {NAME} {GOOD_B64}!\n".encode(),  # bad base64
        f"b\n\n— {NAME} {GOOD_B64.rstrip('=')}\n".encode(),  # unpadded
        f"b\n\n— {NAME}  {GOOD_B64}\n".encode(),  # two spaces
        f"b\n\n— a+b {GOOD_B64}\n".encode(),  # '+' in the name
        f"b\n\n— a\u00a0b {GOOD_B64}\n".encode(),  # Unicode space in the name
        f"b\n\n— {NAME} AAAAAA==\n".encode(),  # 4 bytes: a key id, no signature
        f"b\n\n— {NAME} AAAAAAF=\n".encode(),  # non-canonical base64 (stray bits)
        ("b\n\n" + f"{GOOD_LINE}\n" * (MAX_SIGNATURES + 1)).encode(),
        b"b" * MAX_NOTE_SIZE + b"\n\n" + GOOD_LINE.encode() + b"\n",
    ],
)
def test_malformed_notes_rejected(data: bytes) -> None:
    with pytest.raises(NoteFormatError) as info:
        parse_note(data)
    assert isinstance(info.value, MalformedError)
    with pytest.raises(NoteFormatError):
        open_note(data, [ed_signer().verifier])


@pytest.mark.parametrize(
    ("text", "count"),
    [("no newline", 1), ("tab\there\n", 1), ("b\n", 0), ("nul\x00\n", 1), ("\ud800\n", 1)],
)
def test_sign_note_refuses_bad_input(text: str, count: int) -> None:
    with pytest.raises(NoteFormatError):
        sign_note(text, [ed_signer()] * count)


def test_sign_note_refuses_the_same_key_twice() -> None:
    with pytest.raises(NoteFormatError):
        sign_note("b\n", [ed_signer(), ed_signer()])


# --------------------------------------------------------------------------------------------
# Key strings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # 7 hex digits
        "PeterNeumann+c74f20a3",  # no key
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # empty name
        # x/mod's own bad keys: wrong length, unknown algorithm (ids adjusted to match)
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad base64
        f"{NAME}+{P256.kid[:4].hex()}+{base64.b64encode(bytes([2]) + b'not der').decode()}",
    ],
)
def test_bad_verifier_keys_rejected(vkey: str) -> None:
    with pytest.raises(NoteKeyError) as info:
        parse_verifier_key(vkey)
    assert isinstance(info.value, KeyFormatError)


@pytest.mark.parametrize(
    "skey",
    [
        GO_SKEY.replace("c74f20a3", "c74f20a4"),
        GO_SKEY.replace("PRIVATE+KEY", "PRIVATE+KAY"),
        GO_SKEY[len("PRIVATE+KEY+") :],
        GO_SKEY[:-4],
    ],
)
def test_bad_signer_keys_rejected(skey: str) -> None:
    with pytest.raises(NoteKeyError):
        Ed25519NoteSigner.from_skey(skey)


def test_two_trusted_keys_with_one_name_and_id_are_refused() -> None:
    a = ed_signer()
    impostor = Ed25519NoteVerifier.__new__(Ed25519NoteVerifier)
    other = ed_signer("zz")
    for slot in ("_key", "_raw", "name"):
        object.__setattr__(impostor, slot, getattr(other.verifier, slot))
    object.__setattr__(impostor, "key_id", a.key_id)
    with pytest.raises(NoteKeyError):
        open_note(sign_note("b\n", [a]), [a.verifier, impostor])


def test_types_and_family() -> None:
    assert (SIG_ED25519, SIG_ECDSA) == (1, 2)
    for cls in (NoteFormatError, NoteKeyError, NoteSignatureError, UnverifiedNoteError):
        assert issubclass(cls, ProvenanceError)
