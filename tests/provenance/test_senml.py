"""SenML CBOR labels and the RFC 8428 §6 example pack."""

from __future__ import annotations

import json
import math

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from provenance import cbor
from provenance.errors import MalformedError
from provenance.senml import CBOR_LABELS, Measurement, decode_pack
from tests.conftest import standard_vectors

DATA = json.loads(standard_vectors("senml_cbor.json").read_text())


def test_label_table_matches_rfc8428() -> None:
    assert dict(CBOR_LABELS) == DATA["label_map"]
    for row in DATA["labels"]:
        assert CBOR_LABELS[row["json_label"]] == row["cbor_label"]


def test_rfc8428_section6_pack_decodes_to_the_published_records() -> None:
    example = next(e for e in DATA["examples"] if e["id"] == "rfc8428-section-6")
    raw = bytes.fromhex(example["cbor_hex"])
    assert len(raw) == example["cbor_length"]
    assert decode_pack(cbor.decode(raw, what="pack")) == example["decoded_with_json_labels"]


def test_single_data_point_encodes_to_the_derived_bytes() -> None:
    derived = DATA["derived"]["single_data_point_5_1_1"]
    rec = derived["json"][0]
    m = Measurement(name=rec["n"], unit=rec["u"], value=rec["v"])
    # Key order 0, 1, 2 is also the deterministic order, so our bytes equal the derived ones.
    assert cbor.encode([m.to_cbor_record()]).hex() == derived["cbor_hex"]


values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@given(
    name=st.text(min_size=1, max_size=64),
    value=values,
    unit=st.none() | st.sampled_from(["Cel", "V", "A", "%", "beat/min", "mV"]),
    t=st.none() | st.integers(-1000, 1000),
)
def test_measurement_round_trips(name: str, value: object, unit: str | None, t: int | None) -> None:
    m = Measurement(name=name, value=value, unit=unit, time_offset=t)  # type: ignore[arg-type]
    back = Measurement.from_cbor_record(cbor2.loads(cbor.encode(m.to_cbor_record())))
    assert back == m
    assert type(back.value) is type(m.value)


@pytest.mark.parametrize(
    "record",
    [
        {0: "x"},  # no value
        {0: "x", 2: 1, 3: "y"},  # two values
        {2: 1.0},  # no name
        {0: "x", 2: "text"},  # v must be numeric
        {0: "x", 4: 1},  # vb must be boolean
        {0: "x", 2: 1, 9: 0},  # unknown label
        {0: "x", 2: True},  # bool is not a number here
        [0, "x"],  # not a map
    ],
)
def test_bad_records_are_refused(record: object) -> None:
    with pytest.raises(MalformedError):
        Measurement.from_cbor_record(record)


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(MalformedError):
        Measurement(name="x", value=math.nan)


def _valid_text(text: object) -> bool:
    return isinstance(text, str) and 1 <= len(text) <= 64


def _record_is_valid(rec: dict[object, object]) -> bool:
    """The reading subset of RFC 8428, written out as plainly as possible."""
    if not set(rec) <= {0, 1, 2, 3, 4, 6}:
        return False
    present = [label for label in (2, 3, 4) if label in rec]
    if len(present) != 1:
        return False
    value = rec[present[0]]
    typed = {2: _finite_number(value), 3: type(value) is str, 4: type(value) is bool}
    return (typed[present[0]] and _valid_text(rec.get(0))
            and (1 not in rec or _valid_text(rec[1]))
            and (6 not in rec or _finite_number(rec[6])))


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and type(value) is not bool and math.isfinite(value)


names = st.sampled_from(["n", "x" * 64]) | st.text(min_size=1, max_size=64)
values_by_label = {2: st.integers(-(2**64), 2**64) | st.floats(allow_nan=False,
                                                                allow_infinity=False),
                   3: st.text(max_size=8), 4: st.booleans()}
# Each of these breaks some label's rule and suits another's.
edges = st.sampled_from(["", "x" * 65, "t", None, True, b"", math.nan, math.inf, 1.5, 7])
junk = edges | st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(),
                         st.text(max_size=3), st.binary(max_size=4))
FAULTS = ("none", "drop", "replace", "extra")


@st.composite
def records(draw: st.DrawFn) -> dict[object, object]:
    """A valid record, then at most one fault: a label dropped, a value replaced by junk, or
    a label added (unknown, or a second value)."""
    label = draw(st.sampled_from([2, 3, 4]))
    rec: dict[object, object] = {0: draw(names), label: draw(values_by_label[label])}
    if draw(st.booleans()):
        rec[1] = draw(names)
    if draw(st.booleans()):
        rec[6] = draw(values_by_label[2])
    fault = draw(st.sampled_from(FAULTS))
    if fault == "drop":
        del rec[draw(st.sampled_from(sorted(rec, key=repr)))]
    elif fault == "replace":
        rec[draw(st.sampled_from(sorted(rec, key=repr)))] = draw(junk)
    elif fault == "extra":
        rec[draw(st.sampled_from([2, 3, 4, 5, 7, 9, -2]))] = draw(junk)
    return rec


@given(records() | st.dictionaries(st.integers(-3, 10), junk, max_size=5))
def test_records_are_accepted_exactly_by_the_written_rules(rec: dict[object, object]) -> None:
    """Measurement.from_cbor_record's fast checks agree with the rules stated in full."""
    if not _record_is_valid(rec):
        with pytest.raises(MalformedError):
            Measurement.from_cbor_record(rec)
        return
    m = Measurement.from_cbor_record(rec)
    value_label = next(label for label in (2, 3, 4) if label in rec)
    assert (m.name, m.unit, m.time_offset) == (rec[0], rec.get(1), rec.get(6))
    assert m.value is rec[value_label] or m.value == rec[value_label]


def test_a_measurement_is_built_with_keywords_only() -> None:
    """A unit and a text value are both strings: by position they could swap unseen."""
    with pytest.raises(TypeError):
        Measurement("state", "ok", "1")  # type: ignore[misc]
    m = Measurement(name="state", value="ok", unit="1")
    assert (m.name, m.value, m.unit) == ("state", "ok", "1")
