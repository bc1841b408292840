"""The in-browser check follows collector key rotations as `verify-proof` does: a proof against
a checkpoint signed by a newer collector key verifies with only the old keys pinned, through
the key-rotate statement the file carries; a statement signed by any other key is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provenance.keys import PrivateKey
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner
from tests.collector.test_key_rotation import _rotated_log_proof
from tests.web.test_verify_page import (  # noqa: F401  (fixtures)
    browser,
    check_in_page,
    check_with_cli,
    failing,
    page,
    pin,
)


def test_the_page_follows_a_rotation_from_the_pinned_old_key(page: Any, tmp_path: Path) -> None:
    origin = "sensorledger.example/rotation"
    old, old_note = PrivateKey.generate(), Ed25519NoteSigner.generate(origin)
    policy = tmp_path / "old.vkey"
    policy.write_text(f"{old_note.verifier.vkey}\n{EcdsaNoteSigner(origin, old).verifier.vkey}\n")
    pin(page, policy.read_text())

    good = _rotated_log_proof(old, PrivateKey.generate(), origin)
    shown = check_in_page(page, good)
    cli = check_with_cli(tmp_path, good, "--policy", str(policy))
    assert shown["checks"] == cli["checks"]
    assert shown["ok"] and cli["ok"]
    assert ("collector key rotation", "PASS") in shown["checks"]
    assert "followed 1 key-rotate statement" in shown["details"]["collector key rotation"]

    forged = _rotated_log_proof(PrivateKey.generate(), PrivateKey.generate(), origin)
    shown = check_in_page(page, forged)
    cli = check_with_cli(tmp_path, forged, "--policy", str(policy))
    assert shown["checks"] == cli["checks"]
    assert failing(shown["checks"]) == ["collector key rotation"]
    assert ("checkpoint signature", "SKIP") in shown["checks"] and not shown["ok"]
