"""The interop tests' Go program (tests/interop/go/main.go), built once for the session.

It is built offline from Debian's packages. When they are missing the tests fail and name
them: they are part of CI (.ci/run installs them)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GO_SOURCE = Path(__file__).resolve().parent / "go" / "main.go"
GOPATH = Path("/usr/share/gocode")
X_MOD = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb"
PACKAGES = "golang-go golang-golang-x-mod-dev"


@pytest.fixture(scope="session")
def interop_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail(
            f"the Go toolchain is missing: install the Debian packages {PACKAGES} "
            f"(apt-get install -y {PACKAGES}); .ci/run does this",
            pytrace=False,
        )
    if not (X_MOD / "note").is_dir() or not (X_MOD / "tlog").is_dir():
        pytest.fail(
            f"golang.org/x/mod sources are missing under {GOPATH}: install the Debian package "
            f"golang-golang-x-mod-dev (apt-get install -y {PACKAGES}); .ci/run does this",
            pytrace=False,
        )
    out = tmp_path_factory.mktemp("go-interop")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(out / "cache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    binary = out / "interop"
    build = subprocess.run(
        [go, "build", "-o", str(binary), GO_SOURCE.name],
        cwd=GO_SOURCE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, f"go build failed:\n{build.stdout}{build.stderr}"
    return binary
