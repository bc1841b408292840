"""Our cosignatures, checked by a Go program written from the C2SP text (tests/interop/
cosignature/main.go: crypto/ed25519 and golang.org/x/mod/sumdb/note, no shared code): x/mod's
note.Open accepts our cosigned checkpoint under the log key, ignoring the cosignature line as
an unknown signature, and the cosignature itself verifies; altered ones are refused."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.cosignature import CosignatureSigner
from provenance.merkle import RFC9162_SHA256, root
from provenance.note import Ed25519NoteSigner

SOURCE = Path(__file__).resolve().parents[1] / "interop" / "cosignature" / "main.go"
GOPATH = Path("/usr/share/gocode")
PACKAGES = "golang-go golang-golang-x-mod-dev"


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail(f"Go or golang.org/x/mod is missing: apt-get install -y {PACKAGES} "
                    "(tests/interop/ensure-go.sh; .ci/run does this)", pytrace=False)
    out = tmp_path_factory.mktemp("go-cosignature")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": "",
           "GOCACHE": str(out / "cache"), "GOPROXY": "off", "CGO_ENABLED": "0"}
    binary = out / "cosignature"
    build = subprocess.run([go, "build", "-o", str(binary), SOURCE.name], cwd=SOURCE.parent,
                           env=env, capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stdout + build.stderr
    return binary


def test_go_checks_our_cosignatures(checker: Path, tmp_path: Path) -> None:
    origin = "sensorledger.example/go-cosig"
    log = Ed25519NoteSigner.generate(origin)
    witness = CosignatureSigner.generate("witness.example/go")
    checkpoint = Checkpoint(origin, 5, root([RFC9162_SHA256.hash_leaf(b"%d" % i)
                                             for i in range(5)]))
    text = checkpoint.text()
    note = sign_checkpoint(checkpoint, [log])
    line = witness.cosign(text, 1_764_700_000).line()

    def check(data: bytes, vkey: str = witness.verifier.vkey) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "note"
        path.write_bytes(data)
        return subprocess.run([str(checker), log.verifier.vkey, vkey, str(path)],
                              capture_output=True, text=True, timeout=30)

    good = check(note + line.encode() + b"\n")
    assert good.returncode == 0 and good.stdout == "OK 1764700000\n", good.stderr
    # Another timestamp in the line than the one signed: refused.
    other = witness.cosign(text, 1_764_700_001).signature
    forged = line.rsplit(" ", 1)[0] + " " + base64.b64encode(
        witness.verifier.key_id.to_bytes(4, "big") + (1_764_700_002).to_bytes(8, "big")
        + other[8:]).decode()
    assert check(note + forged.encode() + b"\n").returncode == 1
    # A cosignature of another checkpoint: refused.
    wrong = witness.cosign(text.replace("\n5\n", "\n6\n"), 1_764_700_000).line()
    assert check(note + wrong.encode() + b"\n").returncode == 1
    # Another witness's key: its cosignature is not there.
    stranger = CosignatureSigner.generate("witness.example/go").verifier.vkey
    assert check(note + line.encode() + b"\n", stranger).returncode == 1
