"""kill -9 of a witness while two submitters race it: the honest log and a rewritten history
signed with the same key. Whatever instant the kill lands at, the witness never cosigns two
checkpoints that conflict, never forgets a checkpoint it returned a cosignature for, and
resumes after each restart."""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.request
from hashlib import sha256
from pathlib import Path

import pytest

from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.merkle import RFC9162_SHA256, consistency_proof, root
from provenance.note import Ed25519NoteSigner
from provenance.witnessproto import AddCheckpoint
from tests.support.polling import wait_until
from tests.witness.cleanroom import cosignature_time
from tests.witness.support import WitnessProcess, post

pytestmark = pytest.mark.slow

ORIGIN = "crash.example/log"
LEAVES = 400
KILLS = 8


class Submitter(threading.Thread):
    """Walks one history's checkpoints up, one leaf at a time, following 409s; records every
    cosignature it gets."""

    def __init__(self, url: str, key: Ed25519NoteSigner, tag: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.tag = url, key, tag
        self.leaves = [RFC9162_SHA256.hash_leaf(f"{tag} {i}".encode()) for i in range(LEAVES)]
        self.roots = {n: root(self.leaves[:n]) for n in range(1, LEAVES + 1)}
        self.cosigned: list[tuple[int, bytes, bytes]] = []  # size, root, note with cosig
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def note(self, size: int) -> bytes:
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.roots[size]), [self.key])

    def run(self) -> None:
        old, size = 0, 1
        while not self.stop.is_set():
            proof = tuple(consistency_proof(self.leaves[:size], old)) if 0 < old < size else ()
            note = self.note(size)
            try:
                status, _, body = post(self.url, AddCheckpoint(old, proof, note).to_bytes(),
                                       timeout=5)
            except (OSError, http.client.HTTPException):
                time.sleep(0.01)  # witness down, or killed mid-response: try again
                continue
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.cosigned.append((size, self.roots[size], note + body))
            if status == 200:
                old, size = size, min(size + 1, LEAVES)
            elif status == 409:
                old = int(body)
                size = max(size, min(old + 1, LEAVES)) if old < LEAVES else LEAVES
            else:
                time.sleep(0.005)


def _held_size(w: WitnessProcess) -> int:
    url = f"{w.url}/{sha256(ORIGIN.encode()).hexdigest()}/checkpoint"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.read().split(b"\n")[1])


def test_kill_9_never_conflicts(tmp_path: Path) -> None:
    key = Ed25519NoteSigner.generate(ORIGIN)
    w = WitnessProcess(tmp_path / "w", "witness.example/crash", ORIGIN, [key.verifier.vkey])
    honest = Submitter(w.url, key, "honest")
    fork = Submitter(w.url, key, "rewritten")
    rng = random.Random(15)
    w.start()
    try:
        honest.start()
        while not honest.cosigned:
            time.sleep(0.01)
        fork.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.4))
            w.kill()  # at whatever instant: mid-request, mid-commit, between requests
            with honest.lock:
                returned = max(size for size, _, _ in honest.cosigned)
            w.start()
            # Persisted before returned: the witness holds at least what it cosigned.
            assert _held_size(w) >= returned
        time.sleep(0.3)
        with honest.lock:
            before = len(honest.cosigned)

        def resumed() -> bool:
            with honest.lock:
                return len(honest.cosigned) > before

        wait_until(resumed, 30, message="cosignatures after the last restart")
    finally:
        honest.stop.set()
        fork.stop.set()
        honest.join(10)
        fork.join(10)
        w.kill()
    # The rewritten history never got a cosignature; it was refused (409 then 422).
    assert fork.cosigned == []
    assert fork.statuses.get(422, 0) > 0 and set(fork.statuses) <= {409, 422}
    # Every cosignature is valid (clean-room check) and for the honest history only; sizes
    # only grow in the order they were returned.
    sizes = [size for size, _, _ in honest.cosigned]
    assert sizes == sorted(sizes) and len(sizes) > KILLS
    for size, root_hash, note in honest.cosigned:
        assert root_hash == honest.roots[size]
        assert cosignature_time(note, w.vkey) is not None
