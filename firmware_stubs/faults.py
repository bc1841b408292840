"""Line faults an emulator can inject on demand: the robustness tests' lever.

Faults apply to what the *device* sends, in the order the device sends it. Each call to
:meth:`LineFaults.apply` passes one outgoing frame and returns the bytes that really go on
the wire, and whether the frame arrived intact (so the transcript can say what the agent
could possibly have decoded).
"""

from __future__ import annotations

import threading

__all__ = ["LineFaults"]


class LineFaults:
    """``checksum_at`` is the position (from the end) of a checksum byte in this protocol's
    frames: -1 for Modbus (CRC last), -2 for JBD (checksum before the 0x77 end marker)."""

    def __init__(self, *, checksum_at: int = -1) -> None:
        self.checksum_at = checksum_at
        self._lock = threading.Lock()
        self._muted = False
        self._garbage = b""
        self._corrupt = 0
        self._truncate = 0

    @property
    def muted(self) -> bool:
        return self._muted

    def mute(self, muted: bool = True) -> None:
        """Stop answering (unplugged, powered off) until ``mute(False)``."""
        with self._lock:
            self._muted = muted

    def inject_garbage(self, data: bytes) -> None:
        """Send ``data`` just before the next frame."""
        with self._lock:
            self._garbage += data

    def corrupt_next(self, count: int = 1) -> None:
        """Flip bits in the checksum of the next ``count`` frames."""
        with self._lock:
            self._corrupt += count

    def truncate_next(self, count: int = 1) -> None:
        """Cut the next ``count`` frames to half their length."""
        with self._lock:
            self._truncate += count

    def apply(self, frame: bytes) -> tuple[bytes, bool]:
        with self._lock:
            if self._muted:
                return b"", False
            prefix, self._garbage = self._garbage, b""
            if self._corrupt:
                self._corrupt -= 1
                corrupted = bytearray(frame)
                corrupted[self.checksum_at] ^= 0x5A
                return prefix + bytes(corrupted), False
            if self._truncate:
                self._truncate -= 1
                return prefix + frame[: max(1, len(frame) // 2)], False
            return prefix + frame, True
