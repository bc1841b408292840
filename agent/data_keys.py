"""The agent's side of private readings: the subjects' data keys and the sealing of values.

**Data keys.** One 256-bit AES key per subject (a patient's pseudonym, or the device id), kept
in an owner-only JSON file (``[private] keys_file``, default ``<state_dir>/data-keys.json``),
written atomically. The first private reading of a subject creates its key;
``sensor-agent data-key rotate --subject S`` replaces it, and the running agent picks the new
key up at its next reading (the file is re-read when it changes). The old key is forgotten:
readings sealed under it stay readable by the readers who were granted it, through the grants
the collector keeps, and by no one else.

**Readers.** The public keys in ``[private] readers``. Every private message carries one grant
(COSE_Encrypt, ECDH-ES + A256KW) of its data key per reader, computed once per key and reader.
To revoke a reader, take its key out of the config, rotate the data keys and restart: it keeps
what it could already read, and gets nothing new.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

from provenance import cose_encrypt
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.private_message import PrivateMessage, check_subject
from provenance.sealed_values import Opening

from .errors import AgentError

__all__ = ["DataKeyError", "DataKeys", "ValueSealer", "load_readers"]


class DataKeyError(AgentError):
    """The data-key file cannot be read or written safely."""

    code = "data_keys"


def load_readers(paths: tuple[Path, ...]) -> list[PublicKey]:
    readers = []
    for path in paths:
        try:
            readers.append(PublicKey.from_pem(path.read_bytes()))
        except (OSError, ProvenanceError) as exc:
            raise DataKeyError(f"reader key {path}: {exc}") from None
    return readers


class DataKeys:
    """The current data key of each subject, in one owner-only file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # signing may run in a worker thread
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, tuple[bytes, bytes]] = {}

    def current(self, subject: str) -> tuple[bytes, bytes]:
        """(key id, key) of ``subject``; made and saved on first use."""
        with self._lock:
            self._reload()
            found = self._keys.get(subject)
            if found is None:
                found = cose_encrypt.new_data_key()
                self._keys[subject] = found
                self._save()
            return found

    def rotate(self, subject: str) -> bytes:
        """Give ``subject`` a new data key; returns its id. The old key is forgotten."""
        check_subject(subject)
        with self._lock:
            self._reload()
            self._keys[subject] = cose_encrypt.new_data_key()
            self._save()
            return self._keys[subject][0]

    def subjects(self) -> dict[str, bytes]:
        with self._lock:
            self._reload()
            return {s: kid for s, (kid, _) in self._keys.items()}

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        except OSError as exc:
            raise DataKeyError(f"data keys {self.path}: {exc}") from None
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise DataKeyError(f"data keys {self.path} can be read by others "
                               f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it")
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
            keys = {subject: (bytes.fromhex(entry["kid"]), bytes.fromhex(entry["key"]))
                    for subject, entry in body["subjects"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataKeyError(f"data keys {self.path} are unreadable: {exc!r}") from None
        self._keys, self._stamp = keys, stamp

    def _save(self) -> None:
        body = {"subjects": {s: {"kid": kid.hex(), "key": key.hex()}
                             for s, (kid, key) in sorted(self._keys.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(body, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_ino)


class ValueSealer:
    """Turns a signed private reading and its opening into the private message."""

    def __init__(self, keys: DataKeys, readers: list[PublicKey]) -> None:
        self.keys = keys
        self.readers = readers
        self._grants: dict[bytes, tuple[bytes, ...]] = {}

    def message(self, envelope: bytes, subject: str, opening: Opening) -> bytes:
        kid, key = self.keys.current(subject)
        grants = self._grants.get(kid)
        if grants is None:
            grants = tuple(cose_encrypt.grant_key(kid, key, r) for r in self.readers)
            if len(self._grants) > 64:
                self._grants.clear()
            self._grants[kid] = grants
        sealed = cose_encrypt.encrypt0(key, kid, opening.encode())
        return PrivateMessage(envelope, subject, sealed, grants).encode()
