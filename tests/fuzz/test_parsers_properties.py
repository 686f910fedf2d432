"""Every parser, fed arbitrary and near-valid input: it answers with its result or with its one
documented refusal (LabValueError, UnitError, pydantic's ValidationError, InteropError, FrameError,
problems in a Conversion), never with another exception; and every refusal says why and where.

Near-valid inputs are the real samples of tests/data/interop and the unit tests' builders, mutated
(a field replaced, dropped or retyped; separators, escapes and character sets changed). The
profile (tests/fuzz/__init__.py) sets how many examples each property tries."""

import copy
import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import hl7
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabCorrectionIn,
    LabResultIn,
    RetractionIn,
    SubmissionIn,
    drugs_outside_regimen,
    to_event,
)
from services.ingest.interop import fhir, hl7v2, sdtm
from services.ingest.interop.common import (
    Conversion,
    Directory,
    InteropError,
    Problem,
    load_directory,
)
from services.ingest.interop.mllp import END, START, FrameDecoder, FrameError, frame
from shared.events import decode_event, encode_event
from shared.lab_values import COMPARATORS, LabValue, LabValueError, parse_lab_value
from shared.labs import (
    LAB_DEFINITIONS,
    UNIT_SPELLINGS,
    LabTest,
    UnitError,
    canonical_unit,
    convert,
    factor_to_si,
    resolve_test,
    to_conventional,
    to_si,
)
from shared.protocol import study_protocol
from tests.fuzz import examples
from tests.unit import test_fhir as fhir_builders
from tests.unit import test_hl7v2 as hl7_builders
from tests.unit import test_sdtm as sdtm_builders

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "interop"
STUDY = "NCT05173246"
REGIMEN = set(study_protocol(STUDY).regimen.drugs)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Directory:
    """The study's own interop file and enrolment map, plus the subjects and sending facility
    of the public samples (NIST's lab, the CDISC pilot's USUBJIDs)."""
    folder = tmp_path_factory.mktemp("fuzz-directory")
    interop = (ROOT / "interop" / f"{STUDY}.yaml").read_text()
    interop += (
        "  T01:\n"
        "    hl7_sending_facilities: [NIST Lab Facility, ELAB-3, IA Public Health Lab, LAB2]\n"
        "    local_codes: {1554-5: GLUC}\n"
    )
    enrolments = (ROOT / "interop" / f"{STUDY}.enrolment.csv").read_text().rstrip("\n")
    enrolments += (
        "\nT01-001,T01,PATID1234,CDISC001\nT01-002,T01,555-44-4444,CDISC002\n"
        "T01-003,T01,14,\nT01-004,T01,10006579,\n"
    )
    (folder / "interop.yaml").write_text(interop)
    (folder / "enrolment.csv").write_text(enrolments)
    return load_directory(folder / "interop.yaml", folder / "enrolment.csv")


# ---------------------------------------------------------------------------------------------
# Strategies shared by the parsers
# ---------------------------------------------------------------------------------------------

HUGE_INTEGERS = st.integers(min_value=-(10**400), max_value=10**400)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    HUGE_INTEGERS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.0, -0.0, 1e-320, 1.7976931348623157e308, 10**309]),
)
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "NaN",
        "nan",
        "inf",
        "-Infinity",
        "1e400",
        "1e-400",
        "9" * 400,
        "1" * 5000,
        "\u0661\u0662\u066b\u0665",  # Arabic-Indic digits, decimal separator
        "\uff11\uff12",  # full-width digits
        "²",
        "½",
        "0x10",
        "1_000",
        "\x00",
        "\ufeff1",
        "<",
        ">=",
        "<=>1",
        "1,500",
        "1,5",
        "0,125",
        "1.250.000",
        "\U0001d7d9\U0001d7da",  # mathematical digits
        "\u202e12",
        "\\F\\",
        "'; DROP TABLE alerts; --",
    ]
)
TEXT = st.one_of(st.text(max_size=40), NASTY_TEXT)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def assert_reason(reason: str) -> None:
    assert isinstance(reason, str) and reason.strip(), "a refusal without a reason"


def assert_problems(problems: list[Problem], where: re.Pattern[str]) -> None:
    """Every problem names its element (as `where` matches) and says why."""
    for problem in problems:
        assert_reason(problem.reason)
        assert where.match(problem.where), f"{problem.where!r} names no element: {problem.reason}"


def assert_validation_error(error: ValidationError, model: type[BaseModel]) -> None:
    """pydantic's refusal, as the API answers it: each error has a reason and names its field;
    one with no field is about the body as a whole (not an object), or a whole-model check that
    names the fields in its reason."""
    assert error.errors(), "a ValidationError without errors"
    for issue in error.errors():
        assert_reason(issue["msg"])
        if not issue["loc"] and issue["type"] != "model_type":
            assert any(name in issue["msg"] for name in model.model_fields), issue


def assert_publishable(request: SubmissionIn) -> None:
    """What the publisher does with a valid request (services/ingest/publisher.py, events_of):
    the drugs are checked against the regimen, and `to_event` gives the canonical event or
    refuses a value normalised out of range with a ValidationError only (which the publisher
    answers field by field), never another exception. The event survives Kafka's bytes."""
    for where, reason in drugs_outside_regimen(request, REGIMEN):
        assert where and reason
    try:
        event = to_event(request, STUDY)
    except ValidationError as error:
        assert_validation_error(error, type(request))
        return
    assert decode_event(encode_event(event)) == event


# ---------------------------------------------------------------------------------------------
# Lab values and comparators (shared/lab_values.py)
# ---------------------------------------------------------------------------------------------

UNICODE_DIGITS = st.characters(categories=["Nd"])
LAB_VALUE_TEXT = st.one_of(
    TEXT,
    st.text(alphabet="0123456789.,<>=+-eE  ", max_size=20),
    st.text(alphabet=st.one_of(UNICODE_DIGITS, st.sampled_from(list(".,<>= eE-"))), max_size=12),
    st.builds(
        lambda comparator, number, exponent: f"{comparator}{number}{exponent}",
        st.sampled_from(["", *COMPARATORS, " < ", "=", "<<"]),
        st.from_regex(r"\A\d{1,12}([.,]\d{1,6})?\Z"),
        st.sampled_from(["", "e5", "E-3", "e400", "e-400", "e999999999", "e+9"]),
    ),
)


def assert_lab_value(value: LabValue) -> None:
    assert math.isfinite(value.number) and value.number >= 0
    assert value.comparator in (None, *COMPARATORS)


@examples(300)
@given(st.one_of(LAB_VALUE_TEXT, JSON))
def test_a_lab_value_is_a_finite_non_negative_number_or_refused_with_the_reason(raw: Any) -> None:
    try:
        value = parse_lab_value(raw)
    except LabValueError as error:
        assert type(error) is LabValueError
        assert_reason(str(error))
        return
    assert_lab_value(value)
    again = parse_lab_value(str(value))  # its text (what the event carries) reads back alike
    assert again.comparator == value.comparator
    assert again.number == pytest.approx(value.number, rel=1e-5)


@examples(200)
@given(
    comparator=st.sampled_from(["", *COMPARATORS]),
    whole=st.integers(min_value=0, max_value=999),
    fraction=st.from_regex(r"\A\d{1,4}\Z"),
)
def test_a_decimal_comma_reads_as_the_decimal_point(
    comparator: str, whole: int, fraction: str
) -> None:
    point = parse_lab_value(f"{comparator}{whole}.{fraction}")
    if len(fraction) == 3 and whole > 0:  # "1,500": a thousands separator or not? refused
        with pytest.raises(LabValueError, match="ambiguous"):
            parse_lab_value(f"{comparator}{whole},{fraction}")
        return
    assert parse_lab_value(f"{comparator}{whole},{fraction}") == point
    assert point.comparator == (comparator or None)


@examples(200)
@given(st.one_of(LAB_VALUE_TEXT, JSON))
def test_a_lab_value_field_refuses_on_the_value_field(raw: Any) -> None:
    body = {
        "subject_id": "GZ01-001",
        "site_id": "GZ01",
        "test": "NEUT",
        "value": raw,
        "unit": "10^9/L",
        "collected_at": "2025-04-14T07:30:00+08:00",
    }
    try:
        request = LabResultIn.model_validate(body)
    except ValidationError as error:
        assert [issue["loc"] for issue in error.errors()] == [("value",)]
        assert_validation_error(error, LabResultIn)
        return
    assert_lab_value(request.value)
    assert_publishable(request)


# ---------------------------------------------------------------------------------------------
# Tests and units (shared/labs.py)
# ---------------------------------------------------------------------------------------------

TESTS = st.sampled_from(list(LabTest))
UCUM_LIKE = st.builds(
    lambda prefix, exponent, base, per: f"{prefix}{exponent}{base}{per}",
    st.sampled_from(
        ["", "m", "u", "\u00b5", "\u03bc", "n", "p", "f", "k", "M", "G", "T", "10*", "10^", "x10^"]
    ),
    st.one_of(st.just(""), st.integers(-(10**7), 10**7).map(str)),
    st.sampled_from(["", "L", "g", "mol", "eq", "U", "kat", "s", "[iU]", "{cells}", "%", "1"]),
    st.sampled_from(["", "/L", "/dL", "/uL", "/mm3", "/l", ".L-1", "/h", "/10*9", "/{x}"]),
)
UNITS = st.one_of(st.sampled_from(sorted(UNIT_SPELLINGS)), UCUM_LIKE, TEXT)


@examples(300)
@given(test=TESTS, unit=UNITS)
def test_a_unit_is_canonical_for_its_test_or_refused_naming_the_test(
    test: LabTest, unit: str
) -> None:
    try:
        ucum = canonical_unit(test, unit)
    except UnitError as error:
        assert test.value in str(error)
        return
    assert canonical_unit(test, ucum) == ucum  # canonical once is canonical
    assert factor_to_si(test, ucum) > 0


@examples(300)
@given(test=TESTS, value=NUMBERS, source=UNITS, target=UNITS)
def test_a_conversion_gives_a_number_or_refuses_the_unit(
    test: LabTest, value: Any, source: str, target: str
) -> None:
    assume(not isinstance(value, int) or abs(value) < 10**300)  # callers pass floats
    try:
        converted = convert(test, float(value), source, target)
    except UnitError as error:
        assert_reason(str(error))
        return
    assert isinstance(converted, float)
    if math.isfinite(value) and value > 0:
        assert converted >= 0  # a finite value may overflow to inf; it never turns negative


def _unit_ok(test: LabTest, unit: str) -> bool:
    try:
        canonical_unit(test, unit)
    except UnitError:
        return False
    return True


@examples(300)
@given(
    pair=st.sampled_from(
        [(t, u) for t in LabTest for u in sorted(UNIT_SPELLINGS) if u and _unit_ok(t, u)]
    ),
    value=st.floats(min_value=1e-6, max_value=1e6),
)
def test_si_to_conventional_and_back_is_the_same_value(
    pair: tuple[LabTest, str], value: float
) -> None:
    test, unit = pair
    si = to_si(test, value, unit)
    conventional = to_conventional(test, si, LAB_DEFINITIONS[test].si_unit)
    assert to_si(test, conventional, LAB_DEFINITIONS[test].conventional_unit) == pytest.approx(
        si, rel=1e-9
    )
    assert convert(test, si, LAB_DEFINITIONS[test].si_unit, unit) == pytest.approx(value, rel=1e-9)


@examples(200)
@given(st.one_of(TEXT, st.sampled_from([t.value for t in LabTest] + ["ANC", " plt ", "751-8"])))
def test_a_test_code_resolves_or_is_refused_naming_the_code(code: str) -> None:
    try:
        test = resolve_test(code)
    except UnitError as error:
        assert "unknown lab test" in str(error)
        return
    assert test in LAB_DEFINITIONS


# ---------------------------------------------------------------------------------------------
# The JSON API's request models (services/ingest/domain.py)
# ---------------------------------------------------------------------------------------------

VALID_BODIES: dict[type[SubmissionIn], dict[str, Any]] = {
    LabResultIn: {
        "subject_id": "GZ01-001",
        "site_id": "GZ01",
        "test": "NEUT",
        "value": "0.9",
        "unit": "10^9/L",
        "reference_low": 1.8,
        "reference_high": 6.3,
        "collected_at": "2025-04-14T07:30:00+08:00",
        "visit": {"cycle": 2, "day": 1},
        "loinc": "751-8",
        "fasting": None,
        "source_message_id": "LIS-1",
    },
    AdverseEventIn: {
        "subject_id": "GZ01-001",
        "site_id": "GZ01",
        "term": "Pneumonitis",
        "verbatim": "lung inflammation",
        "grade": 3,
        "serious": True,
        "immune_related": True,
        "related_drugs": ["toripalimab"],
        "onset_date": "2025-05-10",
        "resolved_date": "2025-05-30",
        "site_aware_at": "2025-05-10T10:00:00+08:00",
    },
    DoseIn: {
        "subject_id": "GZ01-001",
        "site_id": "GZ01",
        "drug": "cisplatin",
        "visit": {"cycle": 1, "day": 1},
        "dose": 75,
        "dose_unit": "mg/m2",
        "administered_at": "2025-03-03T09:00:00+08:00",
    },
    EnrolmentIn: {
        "subject_id": "GZ01-001",
        "site_id": "GZ01",
        "enrolled_on": "2025-03-01",
        "sex": "F",
        "age_years": 52,
        "weight_kg": 55,
        "height_cm": 158,
        "baseline_creatinine": {"value": 0.8, "unit": "mg/dL"},
        "liver_metastases": False,
        "platinum": "carboplatin",
    },
    RetractionIn: {
        "subject_id": "GZ01-001",
        "site_id": "GZ01",
        "retracted_event_id": "7d5f9a40-28e1-4a53-9d7c-1f8d1b6a2e11",
        "reason": "entered in error",
    },
}
VALID_BODIES[LabCorrectionIn] = {
    "subject_id": "GZ01-001",
    "site_id": "GZ01",
    "corrected_event_id": "7d5f9a40-28e1-4a53-9d7c-1f8d1b6a2e11",
    "reason": "re-run",
    "corrected": VALID_BODIES[LabResultIn],
}
# Values close to what each field takes: the edges of its type, its units, its formats.
NEAR_VALID: dict[str, st.SearchStrategy[Any]] = {
    "value": LAB_VALUE_TEXT,
    "unit": UNITS,
    "test": st.sampled_from(["NEUT", "anc", "751-8", "ALT", "XYZ", "", "GLUC", "1558-6"]),
    "collected_at": st.sampled_from(
        [
            "2025-04-14T07:30:00",
            "2025-04-14",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2025-02-30T00:00:00Z",
            "2025-04-14T07:30:00+24:00",
            "2025-04-14T07:30:00.123456789+08:00",
            "2025-04-14T07:30:00Z",
            "2025-04-14T07:30:00+05:45",
        ]
    ),
    "administered_at": st.sampled_from(
        ["2025-03-03", "9999-12-31T23:59:59-14:00", "x", "2025-03-03T09:00:00Z"]
    ),
    "site_aware_at": st.sampled_from(["2025-05-10T10:00:00", "0001-01-01T00:00:00+01:00", None]),
    "onset_date": st.sampled_from(["2025-05-31", "0001-01-01", "9999-12-31", "2025-13-01"]),
    "resolved_date": st.sampled_from(["2025-05-01", "0001-01-01", None]),
    "enrolled_on": st.sampled_from(["0001-01-01", "9999-12-31", "2025-02-29"]),
    "reference_low": NUMBERS,
    "reference_high": NUMBERS,
    "grade": st.integers(-1, 7),
    "term": st.sampled_from(["Pnemonitis", "pneumonitis", "Febrile neutropenia", "", "Death"]),
    "related_drugs": st.lists(st.sampled_from(["toripalimab", "aspirin", "CISPLATIN", ""])),
    "drug": st.sampled_from(["toripalimab", "nab-paclitaxel", "aspirin", "Cisplatin"]),
    "dose": NUMBERS,
    "dose_unit": st.sampled_from(["mg", "mg/m2", "AUC", "g", ""]),
    "subject_id": st.sampled_from(["GZ01-001", "-x", "a" * 51, "GZ01 001", "G", "ĞZ01"]),
    "visit": st.one_of(
        st.fixed_dictionaries({"cycle": st.integers(-1, 101), "day": st.integers(-1, 43)}), JSON
    ),
    "baseline_creatinine": st.fixed_dictionaries({"value": NUMBERS, "unit": UNITS}),
    "weight_kg": NUMBERS,
    "age_years": NUMBERS,
    "retracted_event_id": st.sampled_from(["not-a-uuid", "00000000-0000-0000-0000-000000000000"]),
}


@st.composite
def mutated(draw: st.DrawFn, body: Any, depth: int = 0) -> Any:
    """`body` with one to three fields replaced (mostly by a near-valid value, else by any JSON
    value), dropped, or added; a nested object (visit, corrected, baseline_creatinine) may be
    mutated in turn."""
    body = copy.deepcopy(body)
    if not isinstance(body, dict) or not body:
        return draw(JSON)
    for _ in range(draw(st.integers(0 if depth else 1, 3))):
        name = draw(st.sampled_from([*sorted(body), "extra_field"]))
        action = draw(st.sampled_from(["near", "near", "near", "any", "drop", "nested"]))
        if action == "drop":
            body.pop(name, None)
        elif action == "nested" and isinstance(body.get(name), dict) and depth < 2:
            body[name] = draw(mutated(body[name], depth + 1))
        elif action == "near" and name in NEAR_VALID:
            body[name] = draw(NEAR_VALID[name])
        else:
            body[name] = draw(JSON)
    return body


MODELS = st.sampled_from(sorted(VALID_BODIES, key=lambda model: model.__name__))


@examples(300)
@given(data=st.data(), model=MODELS)
def test_a_request_is_valid_and_publishable_or_refused_naming_each_field(
    data: st.DataObject, model: type[SubmissionIn]
) -> None:
    near = mutated(VALID_BODIES[model])
    body = data.draw(st.one_of(near, near, near, JSON), label="body")
    try:
        request = model.model_validate(body)
    except ValidationError as error:
        event("refused")
        assert_validation_error(error, model)
        return
    event("valid")
    assert_publishable(request)


@examples(20)
@given(model=MODELS)
def test_every_valid_body_is_accepted_and_published(model: type[SubmissionIn]) -> None:
    request = model.model_validate(VALID_BODIES[model])
    assert drugs_outside_regimen(request, REGIMEN) == []
    assert to_event(request, STUDY).subject_id == "GZ01-001"


# ---------------------------------------------------------------------------------------------
# HL7 v2 (services/ingest/interop/hl7v2.py) and MLLP framing (mllp.py)
# ---------------------------------------------------------------------------------------------

HL7_WHERE = re.compile(r"^(MSH|PID|PV1|OBR|OBX)(\[\d+\])?(-\d+)?$")
HL7_SAMPLES = sorted((DATA / "hl7v2").glob("*.hl7"))
HL7_TEXT = st.one_of(
    TEXT,
    st.text(alphabet="|^~\\&\r\nEFSTRX0123456789.abAB ", max_size=20),
    st.sampled_from(
        [
            "\\F\\",
            "\\S\\",
            "\\T\\",
            "\\R\\",
            "\\E\\",
            "\\X41\\",
            "\\XZZ\\",
            "\\.br\\",
            "\\H\\bold\\N\\",
            "\\",
            "\\Z123\\",
            "\\C2842\\",
            "\\M2842\\",
            "|",
            "^^^^",
            "~~",
            "&&",
            "\r",
            "\n",
            "MSH|^~\\&|",
            "202504140730+0800",
            "202504140730+2400",
            "202504140760-0060",
            "20250230",
            "99991231235959.9999-1400",
            "SN",
            "NM",
            "ST",
            "<^0.1",
            "^1^-^5",
            "F",
            "C",
            "X",
            "W",
            "P",
            "GZ0700037^^^GZ01^MR~X^^^Y",
            "NEUT#^Neutrophils^L",
            "C0D1",
            "C1D43",
            "C101D1",
            "751-8^ANC^LN",
            "UNICODE UTF-8",
            "8859/1",
            "GB 18030-2000",
            "EBCDIC",
        ]
    ),
)
CODECS = st.sampled_from(["utf-8", "latin-1", "gb18030", "utf-16", "cp1252"])


def hl7_template(**header: str) -> str:
    """A valid ORU^R01 of the unit tests (one PID, PV1, OBR and two OBX)."""
    second = hl7_builders.obx(2, code="PLT^Platelets^L", value="80", unit="10*9/L")
    return hl7_builders.oru(hl7_builders.obx(), second, **header)


@st.composite
def hl7_messages(draw: st.DrawFn) -> bytes:
    """A valid message or sample, then fields replaced, segments dropped or repeated, the
    separators changed, and the text encoded in some character set (declared or not)."""
    if draw(st.booleans()):
        text = hl7_template(charset=draw(st.sampled_from(["", "UNICODE UTF-8", "8859/1"])))
    else:
        text = draw(st.sampled_from(HL7_SAMPLES)).read_bytes().decode("latin-1")
    segments = [s.split("|") for s in text.replace("\n", "\r").split("\r") if s]
    for _ in range(draw(st.integers(0, 4))):
        index = draw(st.integers(0, len(segments) - 1))
        action = draw(st.sampled_from(["field", "field", "field", "drop", "repeat", "separators"]))
        if action == "field":
            fields = segments[index]
            position = draw(st.integers(1, max(1, len(fields) + 2)))
            fields.extend([""] * (position + 1 - len(fields)))
            fields[position] = draw(HL7_TEXT)
        elif action == "drop" and len(segments) > 1:
            del segments[index]
        elif action == "repeat":
            segments.insert(index, list(segments[index]))
        elif action == "separators" and segments[0] and segments[0][0] == "MSH":
            segments[0][1] = draw(st.text(alphabet="^~\\&#|!*", min_size=0, max_size=5))
    ends = draw(st.sampled_from(["\r", "\n", "\r\n"]))
    message = ends.join("|".join(fields) for fields in segments)
    return message.encode(draw(CODECS), errors="replace")


@st.composite
def byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with bytes flipped, inserted, deleted, or cut short."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        else:
            del data[position:]
    return bytes(data)


HL7_INPUT = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=300).map(str.encode),
    hl7_messages(),
    st.sampled_from(HL7_SAMPLES).map(Path.read_bytes).flatmap(byte_mutations),
    st.builds(lambda text: ("MSH|^~\\&|" + text).encode(), st.text(max_size=200)),
)


def ack_segments(result: hl7v2.Hl7Result, text: str) -> hl7.Message:
    """The ACK as a receiver parses it; its MSA says what the result says."""
    ack = hl7.parse(text)
    msa = ack.segment("MSA")
    code = str(msa(1))
    assert code == ("AR" if result.rejected else "AA" if result.conversion.accepted else "AE")
    assert hl7v2._element(msa, 2) == result.control_id  # MSA-2 echoes MSH-10 ("" if none)
    assert hl7v2._element(ack.segment("MSH"), 9, 1) == "ACK"
    return ack


@examples(300)
@given(HL7_INPUT)
def test_any_hl7_bytes_are_converted_or_refused_by_element_and_always_acknowledged(
    directory: Directory, data: bytes
) -> None:
    result = hl7v2.convert_oru_bytes(data, directory)
    event("rejected" if result.rejected else f"requests: {min(len(result.conversion.requests), 2)}")
    assert_problems(result.conversion.problems, HL7_WHERE)
    assert_problems(result.conversion.skipped, HL7_WHERE)
    if result.rejected:
        assert result.conversion.problems and not result.conversion.requests
    text = hl7v2.ack(result)
    ack = ack_segments(result, text)
    errors = [segment for segment in ack if str(segment[0]) == "ERR"]
    assert len(errors) == len(result.conversion.problems) + len(result.conversion.skipped)
    assert hl7.parse(hl7v2.ack_for_failure(result)).segment("MSA")
    hl7v2.encode(text, result)  # in the message's character set, whatever it holds
    for _, request in result.conversion.requests:
        assert_publishable(request)


@examples(200)
@given(HL7_INPUT)
def test_hl7_bytes_decode_or_are_refused_naming_msh_18(data: bytes) -> None:
    try:
        text = hl7v2.decode_message(data)
    except InteropError as error:
        assert str(error).startswith("MSH-18: ")
        return
    assert "\n" not in text and text == text.strip()


@examples(100)
@given(HL7_INPUT)
def test_an_acknowledgement_never_echoes_the_patient_name(
    directory: Directory, data: bytes
) -> None:
    assume(b"Xiaoming" not in data.split(b"PID", 1)[0])  # unless the header itself holds it
    result = hl7v2.convert_oru_bytes(data, directory)
    assert "Xiaoming" not in hl7v2.ack(result)


FRAME_FREE = st.binary(max_size=60).filter(lambda b: START not in b and END not in b)


@examples(300)
@given(
    messages=st.lists(FRAME_FREE, max_size=6),
    garbage=st.lists(st.binary(max_size=10).filter(lambda b: START not in b), max_size=7),
    cuts=st.lists(st.integers(0, 500), max_size=12),
)
def test_mllp_frames_cut_anywhere_give_each_message_once_in_order(
    messages: list[bytes], garbage: list[bytes], cuts: list[int]
) -> None:
    stream = b""
    for index, message in enumerate(messages):  # bytes outside frames are dropped
        stream += (garbage[index] if index < len(garbage) else b"") + frame(message)
    decoder, received = FrameDecoder(), []
    previous = 0
    for cut in [*sorted(set(c for c in cuts if c < len(stream))), len(stream)]:
        received += decoder.feed(stream[previous:cut])
        previous = cut
    assert received == messages


@examples(300)
@given(chunks=st.lists(st.binary(max_size=80), max_size=10), limit=st.integers(1, 120))
def test_mllp_any_bytes_give_whole_messages_or_a_frame_error(
    chunks: list[bytes], limit: int
) -> None:
    decoder = FrameDecoder(limit)
    for chunk in chunks:
        try:
            messages = decoder.feed(chunk)
        except FrameError as error:
            assert str(limit) in str(error)
            continue
        for message in messages:
            assert START not in message and END not in message and len(message) <= limit


# ---------------------------------------------------------------------------------------------
# FHIR R4 (services/ingest/interop/fhir.py)
# ---------------------------------------------------------------------------------------------

FHIR_ROOTS = ("resourceType", *fhir.ACCEPTED, *fhir.SUPPORTING)
FHIR_WHERE = re.compile(rf"^({'|'.join(FHIR_ROOTS)})\b")
FHIR_SEEDS = [
    fhir_builders.observation(),
    fhir_builders.observation(
        status="corrected", valueQuantity={"value": 0.1, "comparator": "<", "unit": "10*9/L"}
    ),
    fhir_builders.adverse_event(),
    fhir_builders.administration(),
    fhir_builders.enrolment_bundle(),
    fhir_builders.enrolment_bundle("batch"),
    *(json.loads(path.read_text()) for path in sorted((DATA / "fhir_r4").glob("*.json"))),
]
FHIR_VALUES = st.one_of(
    JSON,
    st.sampled_from(
        [
            "2025-04-14T07:30:00+08:00",
            "2025-04-14T07:30:00",
            "2025-04",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "Patient/GZ0700185",
            "C0D1",
            "C2D43",
            "Patient/unknown",
            "urn:uuid:patient-1",
            "#contained",
            "http://loinc.org",
            "http://unitsofmeasure.org",
            "10*999999/L",
            "10^-999999/L",
            "mg/dL",
            "²",
            "9" * 5000,
            "C41340",
            "final",
            "amended",
            "entered-in-error",
            "batch",
            "transaction",
            "Observation",
            "Bundle",
            "DELETE",
            {"value": 1e308, "unit": "10*999999/L", "system": "http://unitsofmeasure.org"},
            {"value": 1e308, "code": "10*999999/L", "system": "http://unitsofmeasure.org"},
            {"coding": [{"code": "²"}]},
            {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
            {"reference": "Patient/GZ0700185"},
        ]
    ),
)


ALIKE: dict[type, st.SearchStrategy[Any]] = {
    str: st.one_of(TEXT, FHIR_VALUES.filter(lambda value: isinstance(value, str))),
    int: st.integers(-(10**6), 10**6),
    float: st.floats(),
    bool: st.booleans(),
}


def json_paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            paths += json_paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            paths += json_paths(value, (*prefix, index))
    return paths


@st.composite
def mutated_json(draw: st.DrawFn, document: Any) -> Any:
    """`document` with up to three elements anywhere in it replaced (mostly by a value of the
    same JSON type), dropped, set to null, wrapped in a list, or given a sibling it does not
    define."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(json_paths(document)))
        if not path:
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        action = draw(
            st.sampled_from(["alike", "alike", "replace", "drop", "null", "wrap", "sibling"])
        )
        # Drawn values are copied: a later mutation must not change the strategy's own samples.
        if action == "alike":  # a value of the same JSON type: the resource still parses
            parent[last] = copy.deepcopy(draw(ALIKE.get(type(parent[last]), FHIR_VALUES)))
        elif action == "replace":
            parent[last] = copy.deepcopy(draw(FHIR_VALUES))
        elif action == "drop":
            del parent[last]
        elif action == "null":  # FHIR JSON has no null; fhir.resources takes it even if required
            parent[last] = None
        elif action == "wrap":
            parent[last] = [parent[last]]
        elif isinstance(parent, dict):
            name = draw(st.sampled_from(["_status", "extra", "valueString", "contained"]))
            parent[name] = copy.deepcopy(draw(FHIR_VALUES))
    return document


MUTATED_FHIR = st.sampled_from(FHIR_SEEDS).flatmap(mutated_json)
FHIR_INPUT = st.one_of(
    MUTATED_FHIR,
    MUTATED_FHIR,
    MUTATED_FHIR,
    JSON,
    st.dictionaries(st.text(max_size=10), JSON, max_size=4).flatmap(
        lambda extra: st.sampled_from(FHIR_ROOTS).map(lambda t: {"resourceType": t} | extra)
    ),
)


def assert_fhir_conversion(conversion: Conversion) -> None:
    assert_problems(conversion.problems, FHIR_WHERE)
    assert_problems(conversion.skipped, FHIR_WHERE)
    if conversion.problems:
        assert fhir.operation_outcome(conversion.problems, conversion.skipped)["issue"]
    for _, request in conversion.requests:
        assert_publishable(request)


@examples(300)
@given(FHIR_INPUT)
def test_any_fhir_json_is_converted_or_refused_by_element_path(
    directory: Directory, document: Any
) -> None:
    conversion = fhir.convert_fhir(document, directory)
    event(f"problems: {bool(conversion.problems)}, requests: {bool(conversion.requests)}")
    assert_fhir_conversion(conversion)
    units = fhir.units_of(document, directory)
    for _, conversion in units:
        assert_fhir_conversion(conversion)
    problems = [p for _, c in units for p in c.problems]
    skipped = {key: c.skipped for key, c in units}
    for published in (0, 1, 2):
        outcome = fhir.outcome_of(problems, skipped, published)
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]


# An adapter's problem names an element (or nothing: a failure of the whole message); its
# reason always has words. (FHIR's string, [ \r\n\t\S]+, refuses only text with no visible
# character at all, which no adapter writes.)
WHERE = st.one_of(st.just(""), TEXT.filter(str.strip))


@examples(100)
@given(
    problems=st.lists(st.builds(Problem, WHERE, TEXT.filter(str.strip)), max_size=4),
    skipped=st.lists(st.builds(Problem, WHERE, TEXT.filter(str.strip)), max_size=3),
    code=st.sampled_from([None, "transient", "invalid"]),
)
def test_an_operation_outcome_always_validates(
    problems: list[Problem], skipped: list[Problem], code: str | None
) -> None:
    outcome = fhir.operation_outcome(problems, skipped, code)
    assert len(outcome["issue"]) == max(1, len(problems) + len(skipped))


# ---------------------------------------------------------------------------------------------
# CDISC SDTM (services/ingest/interop/sdtm.py)
# ---------------------------------------------------------------------------------------------

SDTM_SAMPLES = sorted((DATA / "sdtm_cdiscpilot01").glob("*.csv"))
COLUMNS = [
    *sorted({c for columns in sdtm.REQUIRED_COLUMNS.values() for c in columns}),
    "DOMAIN",
    "LBSTRESN",
    "LBSTRESC",
    "LBSTRESU",
    "LBSTNRLO",
    "LBSTNRHI",
    "LBORRES",
    "LBORRESU",
    "LBDTC",
    "LBLOINC",
    "LBFAST",
    "LBSTAT",
    "VISIT",
    "AEDECOD",
    "AETOXGR",
    "AESER",
    "AEREL",
    "AERELDRG",
    "AEIMMUNE",
    "AESTDTC",
    "AEENDTC",
    "AEAWRDTC",
    "EXDOSE",
    "EXDOSU",
    "EXSTDTC",
    "RFICDTC",
    "AGE",
    "AGEU",
    "WEIGHT",
    "HEIGHT",
    "CREATBL",
    "CREATBLU",
    "LIVERMET",
    "PLATINUM",
]
CELL_TEXT = st.one_of(
    TEXT,
    st.sampled_from(
        [
            "NCT05173246",
            "NCT05173246-GZ01-001",
            "CDISC001",
            "NEUT",
            "751-8",
            "<0.1",
            "10^9/L",
            "10*999999/L",
            "2025-04-14T07:30",
            "2025-04-14T07:30:00+08:00",
            "2025-04-14",
            "2025---14",
            "0001-01-01T00:00-14:00",
            "9999-12-31T23:59+14:00",
            "Y",
            "N",
            "U",
            "NOT DONE",
            "CYCLE 2 DAY 1",
            "CYCLE 0 DAY 1",
            "C999D99",
            "POSSIBLE",
            "toripalimab,aspirin",
            "cisplatin",
            "MG/M2",
            "YEARS",
            "Pneumonitis",
            "2",
        ]
    ),
)
CELLS = st.one_of(st.none(), CELL_TEXT, st.floats(allow_nan=True, allow_infinity=True))
ROW_WHERE = re.compile(r"^row \d+(, .+| \(.+\))?$")


def assert_sdtm_conversion(conversion: Conversion, number: int) -> None:
    for problem in [*conversion.problems, *conversion.skipped]:
        assert_reason(problem.reason)
        assert problem.where.startswith(f"row {number}"), problem
        assert ROW_WHERE.match(problem.where) and sdtm.column_of(problem), problem
    assert not (conversion.problems and conversion.requests)
    for _, request in conversion.requests:
        assert_publishable(request)


VALID_ROWS = {
    "LB": sdtm_builders.lb_row(),
    "AE": sdtm_builders.ae_row(),
    "EX": sdtm_builders.ex_row(),
    "DM": sdtm_builders.dm_row(),
}


@st.composite
def sdtm_rows(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid row of the unit tests with up to four cells replaced (by a near-valid cell, a
    number, text, or nothing) or dropped; or any cells at all."""
    domain = draw(st.sampled_from(sdtm.DOMAINS))
    if draw(st.integers(0, 4)) == 0:
        base = {"STUDYID": STUDY, "USUBJID": "NCT05173246-GZ01-001"}
        return domain, base | draw(st.dictionaries(st.sampled_from(COLUMNS), CELLS, max_size=20))
    row = dict(VALID_ROWS[domain])
    for _ in range(draw(st.integers(0, 4))):
        column = draw(st.sampled_from(sorted(row) + COLUMNS))
        if draw(st.integers(0, 4)) == 0:
            row.pop(column, None)
        else:
            row[column] = draw(CELLS)
    return domain, row


@examples(300)
@given(
    domain_row=sdtm_rows(),
    number=st.integers(1, 10**6),
    offset=st.sampled_from([None, "+08:00", "-05:00", "+00:00"]),
)
def test_any_sdtm_row_converts_or_is_refused_naming_row_and_column(
    directory: Directory, domain_row: tuple[str, dict[str, Any]], number: int, offset: str | None
) -> None:
    domain, row = domain_row
    conversion = sdtm.convert_row(domain, row, number, directory, offset)
    event(f"problems: {bool(conversion.problems)}, requests: {bool(conversion.requests)}")
    assert_sdtm_conversion(conversion, number)


@st.composite
def sdtm_csv(draw: st.DrawFn) -> tuple[bytes, str]:
    """A sample dataset's header and a few rows with cells replaced, columns dropped, quoting
    broken; encoded in some character set."""
    path = draw(st.sampled_from(SDTM_SAMPLES))
    records = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    records = [records[0], *draw(st.lists(st.sampled_from(records[1:]), min_size=0, max_size=4))]
    records = [list(record) for record in records]
    for _ in range(draw(st.integers(0, 5))):
        record = draw(st.sampled_from(records))
        position = draw(st.integers(0, len(record) - 1))
        action = draw(st.sampled_from(["cell", "cell", "drop", "add"]))
        if action == "cell":
            record[position] = draw(st.one_of(CELL_TEXT, st.floats().map(repr)))
        elif action == "drop":
            del record[position]
        else:
            record.insert(position, draw(CELL_TEXT))
    buffer = io.StringIO()
    csv.writer(buffer).writerows(records)
    text = buffer.getvalue()
    if draw(st.booleans()):
        text = text.replace('"', draw(st.sampled_from(["", '"', "'", '""'])))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    name = draw(st.sampled_from([path.name, path.name.upper(), "data.csv", "lb.xpt", "ae"]))
    return text.encode(encoding, errors="replace"), name


def _xpt_sample() -> bytes:
    """A small LB dataset as a SAS transport file (pyreadstat writes it from a frame)."""
    import tempfile

    import pandas
    import pyreadstat

    frame_ = pandas.read_csv(DATA / "sdtm_cdiscpilot01" / "lb.csv", nrows=5, dtype=str)
    for column in ("LBSEQ", "LBSTRESN", "LBSTNRLO", "LBSTNRHI"):
        frame_[column] = pandas.to_numeric(frame_[column])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lb.xpt"
        pyreadstat.write_xport(frame_, str(path), table_name="LB")
        return path.read_bytes()


XPT = _xpt_sample()
SDTM_FILES = st.one_of(
    sdtm_csv(),
    st.tuples(st.binary(max_size=400), st.sampled_from(["lb.csv", "ae.xpt", "DM", "ex.CSV"])),
    st.tuples(byte_mutations(XPT), st.sampled_from(["lb.xpt", "lb.csv"])),
    st.tuples(st.binary(max_size=400).map(lambda b: sdtm.XPT_HEADER + b), st.just("lb.xpt")),
)


@examples(250)
@given(file=SDTM_FILES, offset=st.sampled_from([None, "+08:00"]))
def test_any_sdtm_file_is_read_or_refused_and_its_rows_named(
    directory: Directory, file: tuple[bytes, str], offset: str | None
) -> None:
    data, filename = file
    try:
        dataset = sdtm.read_dataset(data, filename)
    except InteropError as error:
        assert str(error).startswith(filename) and str(error).removeprefix(filename).strip(": ")
        return
    assert dataset.domain in sdtm.DOMAINS
    event(f"read: {dataset.format}")
    for number, conversion in sdtm.convert_dataset(dataset, directory, offset):
        assert_sdtm_conversion(conversion, number)


def test_the_xpt_sample_reads_as_the_csv_it_was_written_from() -> None:
    assert sdtm.read_dataset(XPT, "lb.xpt").rows[0]["LBTESTCD"] == "ALT"


@examples(200)
@given(
    domain=st.one_of(st.sampled_from(sdtm.DOMAINS), TEXT),
    rows=st.lists(st.dictionaries(st.sampled_from(COLUMNS), JSON, max_size=8), max_size=4),
    first=st.integers(1, 10**6),
)
def test_sdtm_rows_sent_as_json_are_read_or_refused_naming_the_row(
    directory: Directory, domain: str, rows: list[dict[str, Any]], first: int
) -> None:
    base = {"STUDYID": STUDY, "USUBJID": "NCT05173246-GZ01-001", "LBSEQ": 1, "AESEQ": 1}
    base |= {"EXSEQ": 1, "SITEID": "GZ01", "SEX": "F", "LBTESTCD": "NEUT", "AETERM": "Rash"}
    base |= {"EXTRT": "cisplatin"}
    try:
        dataset = sdtm.dataset_of_rows(domain, [base | row for row in rows], first)
    except InteropError as error:
        assert_reason(str(error))
        return
    for number, conversion in sdtm.convert_dataset(dataset, directory):
        assert_sdtm_conversion(conversion, number)


@examples(100)
@given(offset=st.one_of(TEXT, st.from_regex(r"\A[+-]\d{2}:\d{2}\Z")))
def test_a_utc_offset_is_a_zone_or_refused_naming_it(directory: Directory, offset: str) -> None:
    row = {"STUDYID": STUDY, "USUBJID": "NCT05173246-GZ01-001", "LBSEQ": "1"}
    try:
        conversion = sdtm.convert_row("LB", row, 1, directory, offset)
    except InteropError as error:
        assert "utc_offset" in str(error)
        return
    assert_sdtm_conversion(conversion, 1)


def test_the_fuzz_directory_knows_the_samples(directory: Directory) -> None:
    assert directory.site_for_facility("NIST Lab Facility") == "T01"
    assert directory.subject_for_usubjid("CDISC001").subject_id == "T01-001"
