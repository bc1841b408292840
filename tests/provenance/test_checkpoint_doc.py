"""docs/wire-format.md's checkpoint example is what the code produces, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

from provenance.checkpoint import open_checkpoint
from provenance.note import parse_verifier_key

from .checkpoint_example import (
    EXAMPLE_COLLECTOR_NOTE_KEY,
    EXAMPLE_NOTE_KEY,
    EXAMPLE_ORIGIN,
    example_checkpoint,
    example_checkpoint_note,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text()


def _text_block(label: str) -> str:
    match = re.search(rf"```text {label}\n(.*?)```", DOC, re.S)
    assert match, f"no ```text {label} block in docs/wire-format.md"
    return match.group(1)


def test_documented_vkeys_are_ours() -> None:
    assert _text_block("vkeys").splitlines() == [
        EXAMPLE_NOTE_KEY.verifier.vkey,
        EXAMPLE_COLLECTOR_NOTE_KEY.verifier.vkey,
    ]


def test_documented_checkpoint_note_is_ours() -> None:
    assert _text_block("checkpoint-note").encode() == example_checkpoint_note()


def test_documented_checkpoint_verifies_with_each_documented_key() -> None:
    note = _text_block("checkpoint-note").encode()
    for vkey in _text_block("vkeys").splitlines():
        signed = open_checkpoint(note, [parse_verifier_key(vkey)], origin=EXAMPLE_ORIGIN)
        assert signed.checkpoint == example_checkpoint()
        assert len(signed.note.verified) == 1
