"""The registry's promises about settings, and property tests of the pure codecs."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import contec_protocol, envelope_framing, jbd_protocol, modbus_rtu
from hardware.base import Driver, Sample
from hardware.errors import ChecksumError, HardwareConfigError, ProtocolError
from hardware.registers import BYTE_ORDERS, decode_value, encode_value
from hardware.registry import available, create, register
from hardware.water_profiles import BUILTIN_PROFILES, profile_from_table

from .conftest import measured

# --- registry and settings ------------------------------------------------------------------


def test_available_drivers() -> None:
    assert available() == ["arc-monitor", "contec-oximeter", "jbd-bms", "modbus-water",
                           "self-signing-serial"]


def test_every_driver_satisfies_the_protocol() -> None:
    for name in available():
        settings: dict[str, object] = {"port": "/dev/null-serial"}
        if name == "modbus-water":
            settings["profile"] = "supmea-ph8001"
        driver = create(name, settings)
        try:
            assert isinstance(driver, Driver)
            assert driver.name == name and driver.kind
        finally:
            driver.close()


@pytest.mark.parametrize(("name", "settings", "message"), [
    ("no-such-driver", {}, "unknown driver 'no-such-driver'; available drivers: arc-monitor"),
    ("jbd-bms", {}, "jbd-bms: setting 'port' is required"),
    ("jbd-bms", {"port": 7}, "jbd-bms: setting 'port' must be non-empty text"),
    ("jbd-bms", {"port": "/dev/x", "baud_rate": 9600}, "unknown setting(s) 'baud_rate'"),
    ("jbd-bms", {"port": "/dev/x", "baudrate": "fast"}, "setting 'baudrate' must be an integer"),
    ("jbd-bms", {"port": "/dev/x", "parity": "X"}, "setting 'parity' must be one of N, E, O"),
    ("jbd-bms", {"port": "/dev/x", "retries": True}, "setting 'retries' must be an integer"),
    ("contec-oximeter", {"port": "/dev/x", "protocol": "v8"}, "must be one of v7, legacy"),
    ("contec-oximeter", {"port": "/dev/x", "window_s": 0}, "setting 'window_s' must be in"),
    ("arc-monitor", {"port": "/dev/x", "channels": 25}, "setting 'channels' must be in 1..24"),
    ("modbus-water", {"port": "/dev/x"}, "setting 'profile' is required"),
    ("modbus-water", {"port": "/dev/x", "profile": "ph-9000"}, "unknown profile 'ph-9000'"),
    ("modbus-water", {"port": "/dev/x", "unit": 0, "profile": "supmea-ph8001"},
     "setting 'unit' must be in 1..247"),
])
def test_bad_settings_give_one_clear_message(name: str, settings: dict[str, object],
                                             message: str) -> None:
    with pytest.raises(HardwareConfigError) as caught:
        create(name, settings)
    assert message in str(caught.value)


def test_agent_keys_are_ignored() -> None:
    driver = create("jbd-bms", {"port": "/dev/x", "driver": "jbd-bms", "interval_s": 2})
    driver.close()


def test_registering_a_name_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from hardware import registry

    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))

    @register("test-double")
    def factory(_settings: object) -> Driver:
        raise NotImplementedError

    with pytest.raises(ValueError, match="registered twice"):
        register("test-double")(lambda _s: factory(_s))


@pytest.mark.parametrize(("table", "message"), [
    ({"fields": [{"name": "x", "address": 1}]}, "'name' must be non-empty text"),
    ({"name": "p", "fields": []}, "'fields' must be a non-empty list"),
    ({"name": "p", "function": 6, "fields": [{"name": "x", "address": 1}]}, "'function'"),
    ({"name": "p", "fields": [{"name": "x", "address": 1, "type": "float64"}]}, "'type'"),
    ({"name": "p", "fields": [{"name": "x", "address": 1, "type": "float32"},
                              {"name": "y", "address": 2}]}, "overlap"),
    ({"name": "p", "fields": [{"name": "x", "address": 1}, {"name": "x", "address": 5}]},
     "used twice"),
    ({"name": "p", "fields": [{"name": "x", "address": 1, "scale": 10}]}, "unknown key"),
    ({"name": "p", "fields": [{"name": "x", "address": 1}], "trigger": {"address": 1}},
     "trigger 'values'"),
])
def test_bad_profile_tables(table: dict[str, object], message: str) -> None:
    with pytest.raises(HardwareConfigError) as caught:
        profile_from_table(table)
    assert message in str(caught.value)


def test_configured_profile_groups_contiguous_fields_only() -> None:
    profile = profile_from_table({"name": "acme", "byte_order": "CDAB", "fields": [
        {"name": "a", "address": 10, "type": "float32"},
        {"name": "b", "address": 12, "type": "uint16", "decimals": 1},
        {"name": "c", "address": 20, "type": "int32", "byte_order": "ABCD"},
    ]})
    assert [(b.address, b.count) for b in profile.blocks()] == [(10, 3), (20, 2)]
    registers = [*encode_value(1.5, "float32", "CDAB"), 123]
    values = profile.blocks()[0].decode(registers)
    assert [(m.name, m.value) for m in values] == [("a", 1.5), ("b", 12.3)]


def test_builtin_profiles_use_registered_senml_units() -> None:
    registered = {"Cel", "pH", "mV", "NTU", "mg/l", "ug/l", None}
    for profile in BUILTIN_PROFILES.values():
        assert {f.unit for f in profile.fields} <= registered


def test_sample_value_lookup() -> None:
    from hardware.base import Measurement

    sample = Sample("battery", (Measurement(name="pack_voltage", value=13.2, unit="V"),))
    assert measured(sample, "pack_voltage") == 13.2 and measured(sample, "soc") is None


# --- properties of the codecs ----------------------------------------------------------------


@given(st.binary(min_size=1, max_size=40))
def test_modbus_crc_appended_verifies(body: bytes) -> None:
    frame = modbus_rtu.with_crc(body)
    assert modbus_rtu.crc16(frame) == 0  # the CRC of a frame with its CRC is zero


@given(st.sampled_from(BYTE_ORDERS), st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trips_in_every_byte_order(order: str, value: float) -> None:
    decoded = decode_value(encode_value(value, "float32", order), "float32", order)
    assert struct.pack(">f", decoded) == struct.pack(">f", value)


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(BYTE_ORDERS))
def test_int32_round_trips(value: int, order: str) -> None:
    assert decode_value(encode_value(value, "int32", order), "int32", order) == value


@settings(max_examples=300)
@given(st.binary(max_size=60), st.integers(0, 255), st.binary(max_size=40),
       st.binary(max_size=60))
def test_jbd_frame_survives_junk_around_it(junk: bytes, register: int, data: bytes,
                                           tail: bytes) -> None:
    frame = jbd_protocol.encode_reply(register, data)
    assembler = jbd_protocol.FrameAssembler()
    items = assembler.feed(junk + frame)
    # Even junk posing as the start of a long frame does not hold a complete frame back.
    assert jbd_protocol.Frame(register, 0, data) in items
    assert jbd_protocol.Frame(register, 0, data) in assembler.feed(tail + frame)


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.just(b"SL\x01\x00\xff"), st.binary(min_size=1, max_size=300))
def test_envelope_frames_survive_junk(junk: bytes, envelope: bytes) -> None:
    frame = envelope_framing.encode_frame(envelope)
    assembler = envelope_framing.EnvelopeAssembler()
    assert envelope in assembler.feed(junk + frame)
    assert envelope in assembler.feed(junk[:3] + frame)


@given(st.binary(min_size=1, max_size=100), st.integers(0, 99))
def test_envelope_frame_bit_flip_is_caught(envelope: bytes, position: int) -> None:
    frame = bytearray(envelope_framing.encode_frame(envelope))
    index = 5 + position % (len(frame) - 5)  # anywhere after the magic and version
    frame[index] ^= 0x01
    items = envelope_framing.EnvelopeAssembler().feed(bytes(frame))
    assert envelope not in items
    assert any(isinstance(i, ProtocolError) for i in items) or not items


@given(st.builds(
    contec_protocol.RealTime,
    signal=st.integers(0, 8), pleth=st.integers(0, 127), bar=st.integers(0, 15),
    spo2=st.none() | st.integers(0, 100), pulse_rate=st.none() | st.integers(0, 254),
    pi_percent=st.none() | st.integers(1, 2200).map(lambda v: v / 100),
    finger_out=st.booleans(), searching=st.booleans(), beep=st.booleans(),
    searching_too_long=st.booleans(),
))
def test_contec_realtime_round_trip(sample: contec_protocol.RealTime) -> None:
    packet = contec_protocol.encode_realtime(sample)
    assert packet[0] == 0x01 and all(b & 0x80 for b in packet[1:])
    (decoded,) = contec_protocol.PacketAssembler().feed(packet)
    assert isinstance(decoded, contec_protocol.Packet)
    assert contec_protocol.decode_realtime(decoded.data) == sample


def test_modbus_diagnosis() -> None:
    reply = bytes.fromhex("01 03 06 00 FA 02 BC 00 06 B9 3F")
    assert modbus_rtu.diagnose(b"", 1, 3, 3) == "silent"
    assert modbus_rtu.diagnose(b"\xff\x00" + reply, 1, 3, 3) == "ok"
    assert modbus_rtu.diagnose(reply[:-1] + b"\x00", 1, 3, 3) == "checksum"
    assert modbus_rtu.diagnose(reply[:6], 1, 3, 3) == "truncated"
    assert modbus_rtu.diagnose(b"\x55\xaa", 1, 3, 3) == "garbage"
    with pytest.raises(ChecksumError):
        modbus_rtu.decode_read_reply(reply[:-1] + b"\x00")
