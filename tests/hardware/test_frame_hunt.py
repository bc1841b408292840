"""The frame hunt every UART protocol shares: garbage, partial frames, resync, bounded buffer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import contec_protocol, envelope_framing, jbd_protocol
from hardware.errors import ChecksumError, FrameError, ProtocolError
from hardware.frame_hunt import (
    INCOMPLETE,
    Damaged,
    FalseStart,
    Found,
    FrameHunter,
    Verdict,
)


class NmeaLike:
    """A line protocol with no length field: ``$`` … ``\\n``, at most 12 bytes, and a
    sentence starting ``$X`` is damaged. Only ``max_frame`` bounds a start with no end."""

    name = "line"
    max_frame = 12

    def next_start(self, buf: bytearray, at: int) -> int:
        start = buf.find(b"$", at)
        return len(buf) if start < 0 else start

    def judge(self, buf: bytearray, at: int) -> Verdict[bytes]:
        end = buf.find(b"\n", at, at + self.max_frame)
        if end < 0:
            return INCOMPLETE
        if buf.startswith(b"$X", at):
            return Damaged(end + 1 - at, FrameError("damaged sentence"))
        if buf.find(b"$", at + 1, end) >= 0:
            return FalseStart(FrameError("sentence cut short"))
        return Found(end + 1 - at, bytes(buf[at + 1 : end]))


def lines() -> FrameHunter[bytes]:
    return FrameHunter(NmeaLike())


Make = Callable[[], FrameHunter[Any]]
SAMPLE_FRAMES: list[tuple[str, Make, bytes, object]] = [
    ("jbd", jbd_protocol.FrameAssembler, jbd_protocol.encode_reply(0x04, b"\x0f\x45\x0f\x3d"),
     jbd_protocol.Frame(0x04, 0, b"\x0f\x45\x0f\x3d")),
    ("envelope", envelope_framing.EnvelopeAssembler, envelope_framing.encode_frame(b"\xd2\x84"),
     b"\xd2\x84"),
    ("v7", contec_protocol.PacketAssembler, contec_protocol.encode_command(0xA1),
     contec_protocol.Packet(0x7D, bytes((0xA1, 0, 0, 0, 0, 0, 0)))),
    ("legacy", contec_protocol.LegacyAssembler, bytes((0x85, 0x20, 0x03, 0x48, 0x61)),
     bytes((0x85, 0x20, 0x03, 0x48, 0x61))),
    ("line", lines, b"$GPGGA\n", b"GPGGA"),
]
IDS = [name for name, *_ in SAMPLE_FRAMES]


@pytest.mark.parametrize(("name", "make", "wire", "frame"), SAMPLE_FRAMES, ids=IDS)
def test_a_frame_fed_one_byte_at_a_time_comes_out_once(name: str, make: Make, wire: bytes,
                                                       frame: object) -> None:
    hunter = make()
    out: list[object] = []
    for byte in wire:
        assert frame not in out
        out += hunter.feed(bytes((byte,)))
    assert out == [frame] and hunter.skipped == 0 and hunter.buffered == 0


def test_garbage_is_skipped_and_counted() -> None:
    hunter = envelope_framing.EnvelopeAssembler()
    assert hunter.feed(b"\x00\x01noise with no magic") == []
    assert hunter.skipped == 21 and hunter.buffered == 0
    assert hunter.feed(b"trailing S") == []  # "S" may be half a magic: held back
    assert hunter.buffered == 1
    assert hunter.feed(b"L") == [] and hunter.buffered == 2
    jbd = jbd_protocol.FrameAssembler()
    assert jbd.feed(bytes(range(0x20, 0x60))) == [] and jbd.skipped == 0x40


def test_a_false_start_claiming_a_long_frame_does_not_hold_back_a_real_one() -> None:
    frame = envelope_framing.encode_frame(b"reading")
    hunter = envelope_framing.EnvelopeAssembler()
    out = hunter.feed(b"SL\x01\x10\x00" + b"junk" + frame)  # claims 4096 bytes
    assert out[-1] == b"reading"
    assert [str(e) for e in out[:-1]] == ["incomplete envelope frame start skipped"]
    assert hunter.skipped == 9 and hunter.buffered == 0


def test_resync_after_a_damaged_frame_and_inside_one() -> None:
    good = jbd_protocol.encode_reply(0x03, b"\x01\x02")
    bad = bytearray(jbd_protocol.encode_reply(0x03, b"\x01\x02\x03"))
    bad[5] ^= 0xFF  # checksum no longer matches
    out = jbd_protocol.FrameAssembler().feed(bytes(bad) + good)
    assert isinstance(out[0], ChecksumError) and out[1] == jbd_protocol.Frame(3, 0, b"\x01\x02")
    # A damaged frame with a valid one starting inside it: the valid one is kept, not
    # dropped with the damaged one.
    hunter = lines()
    items = hunter.feed(b"$X1 $OK\n")
    assert [str(i) if isinstance(i, ProtocolError) else i for i in items] == [
        "damaged sentence", b"OK"]


def test_a_start_that_never_completes_is_dropped_at_max_frame() -> None:
    hunter = lines()
    out = hunter.feed(b"$" + b"A" * 30)
    assert [str(e) for e in out] == ["line frame start not complete after 12 bytes"]
    assert hunter.buffered == 0 and hunter.skipped == 31
    assert hunter.feed(b"$B\n") == [b"B"]


FORMATS = [(make, max_frame) for make, max_frame in (
    (jbd_protocol.FrameAssembler, 262),
    (envelope_framing.EnvelopeAssembler, 4105),
    (contec_protocol.PacketAssembler, 9),
    (contec_protocol.LegacyAssembler, 5),
    (lines, 12),
)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300) | st.sampled_from(
    [wire for _, _, wire, _ in SAMPLE_FRAMES] + [b"SL\x01\x10\x00", b"\xdd\x03\x00\xff", b"$"]),
    max_size=40))
def test_the_buffer_stays_bounded_and_frames_survive_any_stream(chunks: list[bytes]) -> None:
    for (make, max_frame), (_, _, wire, frame) in zip(FORMATS, SAMPLE_FRAMES, strict=True):
        hunter = make()
        assert hunter.format.max_frame == max_frame
        fed = 0
        for chunk in chunks:
            for item in hunter.feed(chunk):
                assert isinstance(item, ProtocolError | type(frame))
            fed += len(chunk)
            assert hunter.buffered < max_frame
            assert hunter.skipped <= fed
        # Whatever came before, a clean frame after a flush of starts still comes out.
        hunter.clear()
        assert hunter.feed(wire) == [frame]
