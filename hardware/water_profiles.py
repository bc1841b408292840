"""Register-map profiles for water-quality probes: a new probe is a config entry, not code.

A :class:`WaterProfile` says which registers hold which quantity, in which data type, scale
and byte order, and how to ask for them. The built-in profiles follow the protocol research
notes (research §1; sources in docs/drivers.md); :func:`profile_from_table` reads the same
structure from the agent's TOML so a site can add a probe without a release::

    [sensors.inlet.profile]
    name = "acme-cl2"
    function = 3                 # 3 = holding registers, 4 = input registers
    byte_order = "ABCD"          # default for the fields below
    fields = [
      { name = "free_chlorine", address = 100, type = "float32", unit = "mg/l" },
      { name = "temperature", address = 102, type = "int16", decimals = 1, unit = "Cel" },
    ]
    # optional: write before each read, then wait (Aqualabo style)
    trigger = { address = 1, values = [15], wait_s = 0.4 }
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Measurement, Value
from .errors import HardwareConfigError
from .modbus_rtu import MAX_READ_REGISTERS, READ_HOLDING, READ_INPUT
from .registers import BYTE_ORDERS, DATA_TYPES, decode_value, register_count

__all__ = [
    "BUILTIN_PROFILES",
    "ReadBlock",
    "RegisterField",
    "Trigger",
    "WaterProfile",
    "profile_from_table",
    "resolve_profile",
]


@dataclass(frozen=True, slots=True)
class RegisterField:
    """One quantity in the register map.

    For integer types the published value is ``raw / 10**decimals``; for ``float32`` the
    value is published as sent and ``decimals`` is the resolution the probe reports (an
    emulator rounds to it).
    """

    name: str
    address: int
    data_type: str = "int16"
    unit: str | None = None
    decimals: int = 0
    byte_order: str = "ABCD"

    @property
    def size(self) -> int:
        return register_count(self.data_type)

    def decode(self, registers: Sequence[int]) -> Value:
        raw = decode_value(tuple(registers), self.data_type, self.byte_order)
        if isinstance(raw, float) or self.decimals == 0:
            return raw
        # Divide by an exact power of ten: raw * 0.1 would publish 25.000000000000004.
        return raw / 10.0**self.decimals


@dataclass(frozen=True, slots=True)
class Trigger:
    """A write that starts a measurement, then a wait before the result registers are valid
    (Aqualabo PONSEL, research §1.3)."""

    address: int
    values: tuple[int, ...]
    wait_s: float


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: contiguous registers covering one or more fields."""

    address: int
    count: int
    fields: tuple[RegisterField, ...]

    def decode(self, registers: Sequence[int]) -> tuple[Measurement, ...]:
        """The block's fields as measurements. Raises :class:`~provenance.errors.MalformedError`
        for a value no reading can carry: a float32 register holding NaN or infinity."""
        if len(registers) != self.count:
            raise ValueError(f"block 0x{self.address:04X} needs {self.count} registers")
        out = []
        for field in self.fields:
            offset = field.address - self.address
            value = field.decode(registers[offset : offset + field.size])
            out.append(Measurement(name=field.name, value=value, unit=field.unit))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class WaterProfile:
    name: str
    function: int
    fields: tuple[RegisterField, ...]
    default_unit: int = 1
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    trigger: Trigger | None = None
    source: str = ""

    def blocks(self) -> tuple[ReadBlock, ...]:
        """Reads covering every field; only strictly contiguous fields share a read, because
        some probes refuse a read that touches an undocumented register (research §1.2)."""
        ordered = sorted(self.fields, key=lambda f: f.address)
        blocks: list[ReadBlock] = []
        group: list[RegisterField] = []
        for field in ordered:
            if group:
                end = group[-1].address + group[-1].size
                span = field.address + field.size - group[0].address
                if field.address == end and span <= MAX_READ_REGISTERS:
                    group.append(field)
                    continue
                blocks.append(_block(group))
            group = [field]
        if group:
            blocks.append(_block(group))
        return tuple(blocks)


def _block(group: list[RegisterField]) -> ReadBlock:
    start = group[0].address
    return ReadBlock(start, group[-1].address + group[-1].size - start, tuple(group))


def _float_fields(order: str, start: int, names: Sequence[tuple[str, str | None, int]]
                  ) -> tuple[RegisterField, ...]:
    return tuple(
        RegisterField(name, start + 2 * i, "float32", unit, decimals, order)
        for i, (name, unit, decimals) in enumerate(names)
    )


BUILTIN_PROFILES: Mapping[str, WaterProfile] = {
    profile.name: profile
    for profile in (
        WaterProfile(
            name="supmea-ph8001",
            function=READ_HOLDING,
            fields=(
                RegisterField("temperature", 0, "int16", "Cel", 1),
                RegisterField("ph", 1, "int16", "pH", 2),
                RegisterField("ph_electrode_potential", 2, "int16", "mV", 1),
            ),
            source="§1.1 Supmea SUP-PH8001, 16-bit signed, fixed scale",
        ),
        WaterProfile(
            name="yosemitech-y4000",
            function=READ_HOLDING,
            fields=_float_fields("DCBA", 0x2601, (
                ("dissolved_oxygen", "mg/l", 2),
                ("turbidity", "NTU", 2),
                # mS/cm or µS/cm: the sources disagree (research §1.2), so no unit is claimed.
                ("conductivity", None, 3),
                ("ph", "pH", 2),
                ("temperature", "Cel", 2),
                ("orp", "mV", 1),
                ("chlorophyll", "ug/l", 2),
                ("blue_green_algae", None, 2),
            )),
            source="§1.2 Yosemitech Y4000 sonde, float32 LSB first (DCBA) from 0x2601",
        ),
        WaterProfile(
            name="aqualabo-pheht",
            function=READ_HOLDING,
            default_unit=20,
            stopbits=2,
            fields=_float_fields("ABCD", 0x0053, (
                ("temperature", "Cel", 2),
                ("ph", "pH", 2),
                ("orp", "mV", 1),
                ("ph_electrode_potential", "mV", 1),
            )),
            trigger=Trigger(address=0x0001, values=(0x000F,), wait_s=0.4),
            source="§1.3 Aqualabo PONSEL PHEHT, float32 big-endian (ABCD), trigger then read",
        ),
        WaterProfile(
            name="evoqua-chlorine",
            function=READ_HOLDING,
            fields=(
                RegisterField("free_chlorine", 100, "float32", "mg/l", 2),
                RegisterField("ph", 115, "float32", "pH", 2),
                RegisterField("orp", 130, "float32", "mV", 0),
                RegisterField("temperature", 160, "float32", "Cel", 1),
            ),
            source="§1.4 Evoqua Blu-Sentinel SE map (a Modbus TCP device) served over RTU",
        ),
    )
}


def resolve_profile(spec: object) -> WaterProfile:
    """A built-in profile by name, or a profile described by a settings table."""
    if isinstance(spec, str):
        try:
            return BUILTIN_PROFILES[spec]
        except KeyError:
            raise HardwareConfigError(
                f"modbus-water: unknown profile {spec!r}; built-in profiles: "
                f"{', '.join(sorted(BUILTIN_PROFILES))}, or give a profile table"
            ) from None
    if isinstance(spec, Mapping):
        return profile_from_table(spec)
    raise HardwareConfigError(
        "modbus-water: setting 'profile' is required: a built-in profile name "
        f"({', '.join(sorted(BUILTIN_PROFILES))}) or a profile table"
    )


_PROFILE_KEYS = {"name", "function", "byte_order", "fields", "trigger", "unit", "baudrate",
                 "parity", "stopbits"}
_FIELD_KEYS = {"name", "address", "type", "unit", "decimals", "byte_order"}


def profile_from_table(table: Mapping[str, Any]) -> WaterProfile:
    """Build and check a profile from its config table (layout in the module docstring)."""
    where = f"modbus-water profile {table.get('name', '?')!r}"

    def fail(problem: str) -> HardwareConfigError:
        return HardwareConfigError(f"{where}: {problem}")

    unknown = set(table) - _PROFILE_KEYS
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_PROFILE_KEYS)}")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise fail("'name' must be non-empty text")
    function = table.get("function", READ_HOLDING)
    if function not in (READ_HOLDING, READ_INPUT) or isinstance(function, bool):
        raise fail("'function' must be 3 (holding registers) or 4 (input registers)")
    default_order = table.get("byte_order", "ABCD")
    if default_order not in BYTE_ORDERS:
        raise fail(f"'byte_order' must be one of {', '.join(BYTE_ORDERS)}")
    raw_fields = table.get("fields")
    if not isinstance(raw_fields, Sequence) or isinstance(raw_fields, str) or not raw_fields:
        raise fail("'fields' must be a non-empty list of field tables")
    fields = tuple(_field_from_table(f, default_order, fail) for f in raw_fields)
    _check_overlaps(fields, fail)
    trigger = None
    if "trigger" in table:
        trigger = _trigger_from_table(table["trigger"], fail)
    ints = {}
    for key, default, low, high in (("unit", 1, 1, 247), ("baudrate", 9600, 300, 4_000_000),
                                    ("stopbits", 1, 1, 2)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise fail(f"{key!r} must be an integer in {low}..{high}")
        ints[key] = value
    parity = table.get("parity", "N")
    if parity not in ("N", "E", "O"):
        raise fail("'parity' must be N, E or O")
    return WaterProfile(
        name=name, function=function, fields=fields, default_unit=ints["unit"],
        baudrate=ints["baudrate"], parity=parity, stopbits=ints["stopbits"], trigger=trigger,
        source="configured",
    )


_Fail = Callable[[str], HardwareConfigError]


def _field_from_table(raw: object, default_order: str, fail: _Fail) -> RegisterField:
    if not isinstance(raw, Mapping):
        raise fail("each field must be a table")
    unknown = set(raw) - _FIELD_KEYS
    if unknown:
        raise fail(f"field has unknown key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise fail("every field needs a 'name' of 1-64 characters")
    address = raw.get("address")
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFE:
        raise fail(f"field {name!r}: 'address' must be an integer register number")
    data_type = raw.get("type", "int16")
    if data_type not in DATA_TYPES:
        raise fail(f"field {name!r}: 'type' must be one of {', '.join(DATA_TYPES)}")
    unit = raw.get("unit")
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise fail(f"field {name!r}: 'unit' must be a SenML unit symbol")
    decimals = raw.get("decimals", 0)
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 9:
        raise fail(f"field {name!r}: 'decimals' must be an integer in 0..9")
    order = raw.get("byte_order", default_order)
    if order not in BYTE_ORDERS:
        raise fail(f"field {name!r}: 'byte_order' must be one of {', '.join(BYTE_ORDERS)}")
    return RegisterField(name, address, data_type, unit, decimals, order)


def _check_overlaps(fields: tuple[RegisterField, ...], fail: _Fail) -> None:
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fail(f"field names used twice: {duplicates}")
    ordered = sorted(fields, key=lambda f: f.address)
    for left, right in itertools.pairwise(ordered):
        if right.address < left.address + left.size:
            raise fail(f"fields {left.name!r} and {right.name!r} overlap")


def _trigger_from_table(raw: object, fail: _Fail) -> Trigger:
    if not isinstance(raw, Mapping) or set(raw) - {"address", "values", "wait_s"}:
        raise fail("'trigger' must be a table with address, values, wait_s")
    address = raw.get("address")
    values = raw.get("values")
    wait_s = raw.get("wait_s", 0.0)
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFF:
        raise fail("trigger 'address' must be a register number")
    if not isinstance(values, Sequence) or not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in values
    ):
        raise fail("trigger 'values' must be a list of 16-bit register values")
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float) or not 0 <= wait_s <= 60:
        raise fail("trigger 'wait_s' must be a number of seconds in 0..60")
    return Trigger(address, tuple(values), float(wait_s))
