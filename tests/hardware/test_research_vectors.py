"""Every example frame in the protocol research notes (sources in docs/drivers.md) decodes to
the documented values, and every documented request is produced byte for byte by our
encoders."""

from __future__ import annotations

import pytest

from hardware import arc_protocol, contec_protocol, jbd_protocol, modbus_rtu
from hardware.errors import ChecksumError, FrameError
from hardware.water_profiles import BUILTIN_PROFILES


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def decode_profile(profile_name: str, reply_hex: str) -> dict[str, object]:
    profile = BUILTIN_PROFILES[profile_name]
    (block,) = profile.blocks()
    reply = modbus_rtu.decode_read_reply(h(reply_hex))
    assert isinstance(reply, modbus_rtu.ReadReply)
    return {m.name: m.value for m in block.decode(reply.registers)}


# --- §0 / §1 Modbus water-quality probes ------------------------------------------------


def test_supmea_read_request_and_response() -> None:
    profile = BUILTIN_PROFILES["supmea-ph8001"]
    (block,) = profile.blocks()
    request = modbus_rtu.encode_read_request(1, profile.function, block.address, block.count)
    assert request == h("01 03 00 00 00 03 05 CB")
    values = decode_profile("supmea-ph8001", "01 03 06 00 FA 02 BC 00 06 B9 3F")
    assert values == {"temperature": 25.0, "ph": 7.0, "ph_electrode_potential": 0.6}


@pytest.mark.parametrize(("frame", "unit", "register", "value"), [
    ("01 06 00 0B 00 02 79 C9", 1, 0x000B, 0x0002),  # set address 1 -> 2
    ("01 06 00 07 00 0D F9 CE", 1, 0x0007, 0x000D),  # calibrate at pH 7.00
    ("01 06 00 07 00 0B 79 CC", 1, 0x0007, 0x000B),  # calibrate at pH 4.00
    ("01 06 00 07 00 0F 78 0F", 1, 0x0007, 0x000F),  # calibrate at pH 10.00
    ("01 06 00 07 00 D2 B8 56", 1, 0x0007, 0x00D2),  # factory reset
    ("01 06 00 79 00 01 99 D3", 1, 0x0079, 0x0001),  # Fonrich V2.0 clear arc alarms
])
def test_single_register_writes(frame: str, unit: int, register: int, value: int) -> None:
    assert modbus_rtu.encode_write_single(unit, register, value) == h(frame)


@pytest.mark.parametrize(("frame", "unit", "function", "address", "count"), [
    ("00 03 00 00 00 03 04 1A", 0, 3, 0x0000, 3),  # Supmea query of an unknown address
    ("01 03 25 00 00 01 8F 06", 1, 3, 0x2500, 1),  # Yosemitech start measurement
    ("01 03 26 00 00 04 4F 41", 1, 3, 0x2600, 4),  # Y511 temp + turbidity
    ("01 03 28 00 00 02 CD AB", 1, 3, 0x2800, 2),  # Y532 pH
    ("01 03 24 00 00 02 CE FB", 1, 3, 0x2400, 2),  # Y532 temperature
    ("01 03 26 01 00 10 1E 8E", 1, 3, 0x2601, 16),  # Y4000 all values
    ("14 03 00 53 00 08 B6 D8", 20, 3, 0x0053, 8),  # Aqualabo PHEHT read
    ("01 04 01 30 00 04 F0 3A", 1, 4, 0x0130, 4),  # Fonrich arc alarm block
    ("01 03 00 0D 00 06 54 0B", 1, 3, 0x000D, 6),  # Acrel newest SOE record
])
def test_read_requests(frame: str, unit: int, function: int, address: int, count: int) -> None:
    assert modbus_rtu.encode_read_request(unit, function, address, count) == h(frame)


def test_exception_reply() -> None:
    reply = modbus_rtu.decode_read_reply(h("01 83 02 C0 F1"))
    assert reply == modbus_rtu.ExceptionReply(unit=1, function=3, code=2)


def test_zero_length_fc16_crc_is_the_documented_one() -> None:
    # Yosemitech conductivity "start": FC16, 0 registers, byte count 0 (non-standard).
    assert modbus_rtu.with_crc(h("01 10 1C 00 00 00 00")) == h("01 10 1C 00 00 00 00 D8 92")


def test_yosemitech_y4000_values_dcba() -> None:
    values = decode_profile(
        "yosemitech-y4000",
        "01 03 20 00 00 08 41 CD CC 4C 40 66 66 E6 3E CD CC EC 40 CD CC 94 41 00 00 57 43 "
        "33 33 83 40 CD CC 4C 3F BF C3",
    )
    assert values == {
        "dissolved_oxygen": 8.5, "turbidity": 3.2, "conductivity": 0.45, "ph": 7.4,
        "temperature": 18.6, "orp": 215.0, "chlorophyll": 4.1, "blue_green_algae": 0.8,
    }


@pytest.mark.parametrize(("reply", "value"), [
    ("01 03 04 00 00 E0 40 B2 03", 7.0),  # Y532 pH
    ("01 03 04 00 00 B4 41 4D 03", 22.5),  # Y532 temperature
])
def test_yosemitech_single_floats(reply: str, value: float) -> None:
    decoded = modbus_rtu.decode_read_reply(h(reply))
    assert isinstance(decoded, modbus_rtu.ReadReply)
    from hardware.registers import decode_value

    assert decode_value(decoded.registers, "float32", "DCBA") == value


def test_yosemitech_y511_temperature_and_turbidity() -> None:
    decoded = modbus_rtu.decode_read_reply(h("01 03 08 00 00 A0 41 00 00 48 41 47 48"))
    assert isinstance(decoded, modbus_rtu.ReadReply)
    from hardware.registers import decode_value

    regs = decoded.registers
    assert decode_value(regs[0:2], "float32", "DCBA") == 20.0
    assert decode_value(regs[2:4], "float32", "DCBA") == 12.5


def test_aqualabo_trigger_read_cycle() -> None:
    profile = BUILTIN_PROFILES["aqualabo-pheht"]
    assert profile.trigger is not None
    trigger = modbus_rtu.encode_write_multiple(
        profile.default_unit, profile.trigger.address, list(profile.trigger.values)
    )
    assert trigger == h("14 10 00 01 00 01 02 00 0F 15 15")
    # The acknowledgement echoes address and quantity.
    assert modbus_rtu.with_crc(h("14 10 00 01 00 01")) == h("14 10 00 01 00 01 52 CC")
    values = decode_profile(
        "aqualabo-pheht", "14 03 10 41 AC 00 00 40 E6 66 66 43 7A 00 00 C1 44 CC CD EE A2"
    )
    assert values == {"temperature": 21.5, "ph": 7.2, "orp": 250.0,
                      "ph_electrode_potential": -12.3}


def test_modbus_crc_mismatch_is_a_checksum_error() -> None:
    with pytest.raises(ChecksumError):
        modbus_rtu.decode_read_reply(h("01 03 06 00 FA 02 BC 00 06 B9 3E"))
    with pytest.raises(FrameError):
        modbus_rtu.decode_read_reply(h("01 03 06 00 FA 02 BC 00 06"))


# --- §2.1 JBD BMS ------------------------------------------------------------------------


def frames(data: bytes) -> list[jbd_protocol.Frame]:
    out = jbd_protocol.FrameAssembler().feed(data)
    assert all(isinstance(f, jbd_protocol.Frame) for f in out), out
    return [f for f in out if isinstance(f, jbd_protocol.Frame)]


@pytest.mark.parametrize(("register", "frame"), [
    (0x03, "DD A5 03 00 FF FD 77"),
    (0x04, "DD A5 04 00 FF FC 77"),
    (0x05, "DD A5 05 00 FF FB 77"),
])
def test_jbd_read_requests(register: int, frame: str) -> None:
    assert jbd_protocol.encode_read(register) == h(frame)


@pytest.mark.parametrize(("register", "data", "frame"), [
    (0xE1, "00 01", "DD 5A E1 02 00 01 FF 1C 77"),  # charge FET off
    (0xE1, "00 00", "DD 5A E1 02 00 00 FF 1D 77"),  # both on
    (0xE1, "00 02", "DD 5A E1 02 00 02 FF 1B 77"),  # discharge off
    (0x01, "00 00", "DD 5A 01 02 00 00 FF FD 77"),  # exit factory mode, no save
    (0x00, "56 78", "DD 5A 00 02 56 78 FF 30 77"),  # enter factory mode
])
def test_jbd_write_requests(register: int, data: str, frame: str) -> None:
    assert jbd_protocol.encode_write(register, h(data)) == h(frame)


def test_jbd_basic_info_capture() -> None:
    (frame,) = frames(h("DD 03 00 1D 06 18 00 00 01 F2 01 F4 00 00 2C 7C 00 00 00 00 00 00 "
                        "80 64 03 04 03 0B 8B 0B 8A 0B 84 FA 8D 77"))
    assert (frame.first, frame.second) == (0x03, 0x00)
    info = jbd_protocol.decode_basic_info(frame.data)
    assert info.pack_voltage_v == 15.60
    assert info.pack_current_a == 0.0
    assert info.remaining_capacity_ah == 4.98
    assert info.nominal_capacity_ah == 5.00
    assert info.cycles == 0
    assert info.manufactured is not None and info.manufactured.isoformat() == "2022-03-28"
    assert info.balance_bits == 0 and info.active_protections == ()
    assert info.software_version == 0x80
    assert info.soc_percent == 100
    assert info.charge_fet_on and info.discharge_fet_on
    assert info.cell_count == 4
    assert info.temperatures_c == (22.4, 22.3, 21.7)
    assert jbd_protocol.encode_basic_info(info) == frame.data


def test_jbd_cell_voltages_capture() -> None:
    (frame,) = frames(h("DD 04 00 08 0F 45 0F 3D 0F 37 0F 3D FE C6 77"))
    assert jbd_protocol.decode_cell_voltages(frame.data) == (3909, 3901, 3895, 3901)


def test_jbd_device_name_reply_and_acks() -> None:
    name = b"JBD-SP04S034-L4S-200A-B-U"
    reply = jbd_protocol.encode_reply(0x05, name)
    assert reply[:8] == h("DD 05 00 19 4A 42 44 2D") and reply[-3:] == h("FA 08 77")
    assert frames(reply)[0].data == name
    for ack in ("DD E1 00 00 00 00 77", "DD 01 00 00 00 00 77"):
        (frame,) = frames(h(ack))
        assert frame.data == b"" and frame.second == 0


def test_jbd_extended_basic_info_keeps_unknown_bytes_aside() -> None:
    # A JBD-DP04S007 appends 9 bytes after its single NTC (§2.1, layout uncertain).
    base = jbd_protocol.BasicInfo(1330, -250, 19167, 20000, 12, 11388, 0, 0, 0x10, 96, 3, 4,
                                  (2981,))
    extra = h("00 00 00 4E 20 4A DF 00 00")
    payload = jbd_protocol.encode_basic_info(base) + extra
    decoded = jbd_protocol.decode_basic_info(payload)
    assert decoded.extra == extra
    assert decoded.pack_current_a == -2.5 and decoded.temperatures_c == (25.0,)


def test_jbd_bad_checksum_is_reported() -> None:
    items = jbd_protocol.FrameAssembler().feed(h("DD 04 00 08 0F 45 0F 3D 0F 37 0F 3D FE C7 77"))
    assert len(items) == 1 and isinstance(items[0], ChecksumError)


# --- §3 Contec pulse oximeters -------------------------------------------------------------


def packets(hex_text: str) -> list[contec_protocol.Packet]:
    out = contec_protocol.PacketAssembler().feed(h(hex_text))
    assert all(isinstance(p, contec_protocol.Packet) for p in out), out
    return [p for p in out if isinstance(p, contec_protocol.Packet)]


def test_contec_captured_realtime_packet() -> None:
    (packet,) = packets("01 E0 85 B3 96 C1 E1 FF FF")
    sample = contec_protocol.decode_realtime(packet.data)
    assert sample.signal == 5 and not sample.finger_out and not sample.beep
    assert sample.pleth == 51 and sample.bar == 6 and not sample.searching
    assert sample.pulse_rate == 65 and sample.spo2 == 97
    assert sample.pi_percent is None  # the PI-invalid flag and 0xFFFF agree


def test_contec_derived_realtime_packet_with_pi() -> None:
    (packet,) = packets("01 A0 C6 C0 87 C8 E2 EB 80")
    sample = contec_protocol.decode_realtime(packet.data)
    assert (sample.signal, sample.beep, sample.pleth, sample.bar) == (6, True, 64, 7)
    assert (sample.pulse_rate, sample.spo2, sample.pi_percent) == (72, 98, 2.35)
    assert contec_protocol.encode_realtime(sample) == h("01 A0 C6 C0 87 C8 E2 EB 80")


def test_contec_commands() -> None:
    assert contec_protocol.encode_command(0xA1) == h("7D 81 A1 80 80 80 80 80 80")
    assert contec_protocol.encode_command(0xAF) == h("7D 81 AF 80 80 80 80 80 80")
    (packet,) = packets("7D 81 A1 80 80 80 80 80 80")
    assert packet.type == 0x7D and packet.data[0] == 0xA1


def test_contec_replies() -> None:
    device_id, pi, notice, free = packets(
        "04 80 F5 F3 E5 F2 A0 A0 A0 0E 80 81 11 80 81 81 80 80 80 80 80 0C 80"
    )
    assert device_id.type == 0x04 and device_id.data == b"user   "
    assert pi.type == 0x0E and pi.data == b"\x01"  # PI not supported
    assert notice.type == 0x11 and notice.data[:2] == b"\x01\x01"
    assert free.type == 0x0C and free.data == b""


@pytest.mark.parametrize(("frame", "signal", "beep", "pleth", "bar", "pulse", "spo2"), [
    ("85 32 06 48 62", 5, False, 50, 6, 72, 98),
    ("C5 5A 49 07 61", 5, True, 90, 9, 135, 97),
])
def test_contec_legacy_packets(frame: str, signal: int, beep: bool, pleth: int, bar: int,
                               pulse: int, spo2: int) -> None:
    (raw,) = contec_protocol.LegacyAssembler().feed(h(frame))
    assert isinstance(raw, bytes)
    sample = contec_protocol.decode_legacy(raw)
    assert (sample.signal, sample.beep, sample.pleth, sample.bar) == (signal, beep, pleth, bar)
    assert (sample.pulse_rate, sample.spo2) == (pulse, spo2)
    assert contec_protocol.encode_legacy(sample) == h(frame)


# --- §4 arc monitor ------------------------------------------------------------------------


def test_fonrich_arc_block_reply() -> None:
    reply = modbus_rtu.decode_read_reply(h("01 04 08 00 05 00 00 00 00 00 02 F0 CC"))
    assert isinstance(reply, modbus_rtu.ReadReply)
    words = arc_protocol.decode_arc_words(reply.registers)
    assert words.alarm_channels == frozenset({1, 3})
    assert words.bus_arc_count == 0
    assert words.channel_counts == (2,)


# --- measurements: unit symbols in `unit`, readings in `value` -------------------------------

#: Every SenML unit symbol a driver uses (docs/drivers.md, "Units").
SENML_UNITS = {"Cel", "V", "A", "%", "%EL", "pH", "count", "beat/min", "NTU", "mV", "mA", "Ah",
               "mg/l", "ug/l"}


def test_every_codec_puts_the_unit_in_unit_and_the_reading_in_value() -> None:
    """Measurement's fields run (name, value, unit), so every builder passes keywords; one
    that passed (name, unit, value) by position would put a unit symbol in ``value`` here."""
    from hardware.arc import status_measurements
    from hardware.base import Measurement
    from hardware.jbd import battery_measurements
    from hardware.oximetry import summarise
    from hardware.registers import encode_value

    (basic,) = frames(h("DD 03 00 1D 06 18 00 00 01 F2 01 F4 00 00 2C 7C 00 00 00 00 00 00 "
                        "80 64 03 04 03 0B 8B 0B 8A 0B 84 FA 8D 77"))
    (cells,) = frames(h("DD 04 00 08 0F 45 0F 3D 0F 37 0F 3D FE C6 77"))
    battery = battery_measurements(jbd_protocol.decode_basic_info(basic.data),
                                   jbd_protocol.decode_cell_voltages(cells.data),
                                   dict.fromkeys(jbd_protocol.COUNTER_NAMES, 2))
    oximeter = summarise([contec_protocol.decode_realtime(p.data) for p in packets(
        "01 E0 85 B3 96 C1 E1 FF FF 01 A0 C6 C0 87 C8 E2 EB 80")])
    arcs = arc_protocol.ArcState(0, frozenset({1}), 0, (2, 0), (87, 3), (90, 4), (99, 5))
    status = arc_protocol.MonitorStatus(620, (31.5, None), 0, 2, 0.0, 9.5, 4.75, (5.5, 4.0))
    arc = status_measurements(arcs, status, arc_protocol.ResidualStatus(12, False, False, False))
    water: list[Measurement] = []
    for profile in BUILTIN_PROFILES.values():
        for block in profile.blocks():
            registers = [r for f in block.fields for r in encode_value(3, f.data_type,
                                                                       f.byte_order)]
            decoded = block.decode(registers)
            assert [(m.name, m.unit) for m in decoded] == [(f.name, f.unit) for f in block.fields]
            water += decoded

    for m in (*battery, *oximeter, *arc, *water):
        assert m.unit is None or m.unit in SENML_UNITS, m
        assert isinstance(m.value, int | float) and m.time_offset is None, m  # bool is an int

    def some(measurements: tuple[Measurement, ...], *names: str) -> dict[str, object]:
        return {m.name: (m.value, m.unit) for m in measurements if m.name in names}

    # Values and units as the research captures (and the hand-made arc status) state them.
    assert some(battery, "pack_voltage", "remaining_capacity", "state_of_charge",
                "temperature_1", "cell_voltage_1", "charge_fet",
                "protection_count_short_circuit") == {
        "pack_voltage": (15.6, "V"), "remaining_capacity": (4.98, "Ah"),
        "state_of_charge": (100, "%EL"), "temperature_1": (22.4, "Cel"),
        "cell_voltage_1": (3.909, "V"), "charge_fet": (True, None),
        "protection_count_short_circuit": (2, "count")}
    assert some(oximeter, "spo2", "pulse_rate", "perfusion_index", "valid_samples") == {
        "spo2": (97, "%"), "pulse_rate": (65, "beat/min"), "perfusion_index": (2.35, "%"),
        "valid_samples": (2, "count")}
    assert some(arc, "arc_count_1", "arc_intensity_1", "bus_voltage", "temperature_1",
                "channel_current_2", "residual_current", "residual_alarm") == {
        "arc_count_1": (2, "count"), "arc_intensity_1": (87, None), "bus_voltage": (620, "V"),
        "temperature_1": (31.5, "Cel"), "channel_current_2": (4.0, "A"),
        "residual_current": (12, "mA"), "residual_alarm": (False, None)}
