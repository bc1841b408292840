"""The one place the collector reaches into paho-mqtt's private parts.

Pinned: ``paho-mqtt>=2.1,<3`` (pyproject.toml). Why: paho reads a packet with one ``recv`` for
its first byte, one per remaining-length byte and one for the rest, and writes each
acknowledgement with a ``send`` of its own, which is five system calls for each reading.
:class:`BufferedClient` serves the reads from one large ``recv`` and sends consecutive
acknowledgements in one ``send``. paho has no public hook for either, so this class overrides
three private methods and reads two private attributes of ``paho.mqtt.client.Client``:

* ``_sock_recv(bufsize) -> bytes``: every socket read in paho 2.x goes through it;
* ``_sock_send(buf) -> int``: every socket write;
* ``_packet_write() -> MQTTErrorCode``: drains ``_out_packet``, a deque of dicts with the keys
  ``command``, ``mid``, ``pos``, ``to_process`` and ``packet``;
* ``_sock``: the current connection's socket.

:data:`PRIVATE_METHODS` and :func:`check_paho_internals` state that contract; the client checks it
when it is built (an upgrade that breaks it stops the collector at start-up with a message naming
the pin, not with wrong bytes on the wire), and tests/collector/test_ingest_socket.py checks it
against the installed paho, beside the behaviour tests on a real Mosquitto.
"""

from __future__ import annotations

import inspect
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import MQTTErrorCode

__all__ = [
    "OUT_PACKET_KEYS",
    "PRIVATE_METHODS",
    "BufferedClient",
    "PahoIncompatible",
    "check_paho_internals",
]

PIN = "paho-mqtt>=2.1,<3"

# name -> parameter names after self; these are what BufferedClient overrides.
PRIVATE_METHODS: dict[str, tuple[str, ...]] = {
    "_sock_recv": ("bufsize",),
    "_sock_send": ("buf",),
    "_packet_write": (),
}
# What _packet_write reads of each queued packet.
OUT_PACKET_KEYS = frozenset({"command", "mid", "pos", "to_process", "packet"})


class PahoIncompatible(RuntimeError):
    """The installed paho-mqtt no longer has the private parts this adapter relies on."""


def check_paho_internals(cls: type[Any] = mqtt.Client) -> None:
    """Raise :class:`PahoIncompatible` unless ``cls`` has the private methods, as overridden."""
    problems = []
    for name, params in PRIVATE_METHODS.items():
        method = getattr(cls, name, None)
        if not callable(method):
            problems.append(f"{name} is gone")
            continue
        found = tuple(inspect.signature(method).parameters)[1:]
        if found != params:
            problems.append(f"{name}{found} is not {name}{params}")
    if problems:
        raise PahoIncompatible(
            f"paho-mqtt {getattr(mqtt, '__version__', '?')} does not fit "
            f"collector/ingest/paho_adapter.py ({PIN}): " + "; ".join(problems)
        )


class BufferedClient(mqtt.Client):
    """paho's client with batched socket reads and writes.

    Bytes held here are invisible to ``select()``: :attr:`buffered` says how many there are.
    """

    READ_CHUNK = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_paho_internals(mqtt.Client)
        super().__init__(*args, **kwargs)
        self._read_sock: object = None
        self._read_buf = b""
        self._read_pos = 0
        self.socket_reads = 0
        self.socket_writes = 0
        # Queued packets wait for the owner's loop_write(): without a callback here, paho writes
        # each one from inside ack() itself.
        self.on_socket_register_write = _no_op

    @property
    def buffered(self) -> int:
        """Bytes read from the current connection that paho has not taken yet."""
        if self._read_sock is not self._sock:
            return 0
        return max(0, len(self._read_buf) - self._read_pos)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_sock is not self._sock:  # a new connection: nothing carries over
            self._read_sock, self._read_buf, self._read_pos = self._sock, b"", 0
        pos = self._read_pos
        if pos >= len(self._read_buf):
            data = super()._sock_recv(max(bufsize, self.READ_CHUNK))
            self.socket_reads += 1
            if len(data) <= bufsize:  # everything asked for, or the connection's end (b"")
                self._read_pos = len(self._read_buf)
                return data
            self._read_buf, pos = data, 0
        self._read_pos = pos + bufsize
        return self._read_buf[pos:pos + bufsize]

    def _sock_send(self, buf: bytes | bytearray) -> int:
        self.socket_writes += 1
        return super()._sock_send(buf)

    def _packet_write(self) -> MQTTErrorCode:
        # Join the acknowledgements at the head of the queue into one packet. Only the head can
        # be partly written already; it is left as it is.
        out = self._out_packet
        if len(out) > 1 and out[0]["pos"] == 0 and out[0]["command"] & 0xF0 == PUBACK:
            acks = []
            while out and out[0]["command"] & 0xF0 == PUBACK:
                acks.append(out.popleft())
            joined = b"".join(ack["packet"] for ack in acks)
            out.appendleft({**acks[0], "mid": 0, "to_process": len(joined), "packet": joined})
        return super()._packet_write()


def _no_op(*_: object) -> None:
    pass
