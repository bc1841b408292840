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
from tests.conftest import shared_vectors

DATA = json.loads(shared_vectors("senml_cbor.json").read_text())


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
