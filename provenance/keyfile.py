"""Reading and writing key files: the one place in provenance that touches the filesystem.

Private keys are written owner-only (0600) and never overwritten; loading a private key that
the group or others can read is refused, because a leaked device key forges readings.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ProvenanceError
from .keys import PrivateKey, PublicKey

__all__ = ["KeyFileError", "load_private_key", "load_public_key", "save_private_key"]


class KeyFileError(ProvenanceError):
    """A key file is missing, unreadable, too open, or would be overwritten."""

    code = "key_file"


def save_private_key(key: PrivateKey, path: str | os.PathLike[str]) -> Path:
    """Write ``key`` as PKCS#8 PEM with mode 0600; refuse to overwrite an existing file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{p} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem())
        f.flush()
        os.fsync(f.fileno())
    return p


def load_private_key(path: str | os.PathLike[str], *, require_private: bool = True) -> PrivateKey:
    """Load a PEM private key; with ``require_private`` refuse a file readable by group/others."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {p} does not exist") from None
    if require_private and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {p} has mode {stat.S_IMODE(st.st_mode):04o}; it must be readable by its "
            f"owner only: run `chmod 600 {p}`"
        )
    try:
        return PrivateKey.from_pem(p.read_bytes())
    except PermissionError as exc:
        raise KeyFileError(f"cannot read key file {p}: {exc}") from exc


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Load a PEM public key (SubjectPublicKeyInfo)."""
    p = Path(path)
    try:
        return PublicKey.from_pem(p.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"public key file {p} does not exist") from None
