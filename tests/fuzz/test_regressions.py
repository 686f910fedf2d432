"""What the fuzzing found, pinned: each input once crashed a parser (an exception other than its
documented refusal, so a 500 from the API or an MLLP connection closed without an ACK) or let an
unreadable event through. Each is now refused with its reason, where it is."""

import contextlib
import json
import re
from decimal import Decimal

import hl7
import pytest
from pydantic import ValidationError

from services.dsmb.rollups import CutoffError, parse_cutoff
from services.ingest.domain import DoseIn, EnrolmentIn, to_event
from services.ingest.interop import fhir, hl7v2, sdtm
from services.ingest.interop.common import InteropError, Problem
from shared import labs
from shared.lab_values import LabValueError, parse_lab_value
from shared.labs import (
    MAX_FACTOR,
    LabTest,
    UnitError,
    canonical_unit,
    conversion_factor,
    convert,
    factor_to_si,
    to_si,
)
from tests.fuzz.test_parsers_properties import XPT
from tests.unit import test_fhir as fhir_builders
from tests.unit import test_hl7v2 as hl7_builders
from tests.unit import test_sdtm as sdtm_builders
from tests.unit.factories import STUDY, lab_request

# The study's own sites and enrolment map (GZ01-001: HL7 patient GZ0700037, SDTM USUBJID
# NCT05173246-GZ01-001, as the unit tests' builders name it).
DIRECTORY = fhir_builders.DIRECTORY

# ---------------------------------------------------------------------------------------------
# Lab values (shared/lab_values.py)
# ---------------------------------------------------------------------------------------------


def test_an_integer_beyond_float_is_refused_not_an_overflow() -> None:
    # JSON numbers have no limit: {"value": 1000...0} (400 digits) raised OverflowError: a 500.
    with pytest.raises(LabValueError, match="too large"):
        parse_lab_value(10**400)
    with pytest.raises(ValidationError) as error:
        lab_request(value=10**400, source_message_id="m-1")
    assert [issue["loc"] for issue in error.value.errors()] == [("value",)]


def test_minus_zero_is_zero_so_its_text_reads_back() -> None:
    value = parse_lab_value(-0.0)
    assert str(value) == "0" and parse_lab_value(str(value)) == value


# ---------------------------------------------------------------------------------------------
# Units (shared/labs.py)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["10*999999/L", "10^-999999/L", "10*40/L", "Ymol/L"])
def test_a_unit_beyond_any_laboratory_scale_is_refused(unit: str) -> None:
    # UCUM reads them; converting 1e300 in "10*999999/L" raised decimal.Overflow (a 500 from
    # the JSON API, FHIR and HL7), and "10^-999999/L" turned any count into 0 (grade 4).
    with pytest.raises(UnitError, match=re.escape(f"'{unit}' is not a unit for")):
        canonical_unit(LabTest.ANC if "mol" not in unit else LabTest.GLUCOSE, unit)
    with pytest.raises(ValidationError) as error:
        lab_request(value=1e300, unit=unit, source_message_id="m-1")
    assert [issue["loc"] for issue in error.value.errors()] == [("unit",)]


def test_units_at_the_ends_of_the_scale_still_convert() -> None:
    assert factor_to_si(LabTest.ANC, "/L") == Decimal("1E-9")
    assert factor_to_si(LabTest.CREATININE, "mol/L") == Decimal("1E+6") < MAX_FACTOR
    assert conversion_factor(LabTest.ANC, "/mm3", "10*9/L") == Decimal("0.001")


def test_a_finite_value_overflowing_in_conversion_is_refused_by_the_event() -> None:
    # The conversion is finite arithmetic now; a result beyond float is inf, which the
    # canonical event refuses (a ValidationError: the publisher answers it field by field).
    assert convert(LabTest.CREATININE, 1e308, "mol/L", "umol/L") == float("inf")
    request = lab_request("CREAT", 1e308, "mol/L", reference_low=None, reference_high=None)
    with pytest.raises(ValidationError, match="finite number"):
        to_event(request, STUDY)


def test_a_baseline_creatinine_beyond_float_is_refused_on_its_field() -> None:
    with pytest.raises(ValidationError) as error:
        EnrolmentIn.model_validate(
            {
                "subject_id": "GZ01-005",
                "site_id": "GZ01",
                "enrolled_on": "2025-03-01",
                "sex": "F",
                "age_years": 52,
                "weight_kg": 55,
                "height_cm": 158,
                "baseline_creatinine": {"value": 1e308, "unit": "mol/L"},
                "liver_metastases": False,
                "platinum": "cisplatin",
            }
        )
    assert [issue["loc"] for issue in error.value.errors()] == [("baseline_creatinine",)]
    assert to_si(LabTest.CREATININE, 1.0, "mg/dL") == pytest.approx(88.4017, abs=1e-4)


def test_the_unit_caches_are_bounded() -> None:
    # Keyed by units as senders spell them: unbounded, every new spelling stayed in memory.
    for index in range(5000):
        with contextlib.suppress(UnitError):
            canonical_unit(LabTest.ANC, f"{index}/furlong")
    for cached in (labs._convertible, factor_to_si, conversion_factor):
        assert cached.cache_info().maxsize is not None
        assert cached.cache_info().currsize <= cached.cache_info().maxsize


# ---------------------------------------------------------------------------------------------
# The canonical events (shared/events.py)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dose", [float("inf"), float("nan")])
def test_an_infinite_dose_is_refused_not_published_as_null(dose: float) -> None:
    # JSON's 1e999 reads as inf: the dose was accepted (202) and published as "dose": null,
    # an event no consumer can read.
    body = {
        "subject_id": "GZ01-005",
        "site_id": "GZ01",
        "drug": "cisplatin",
        "visit": {"cycle": 1, "day": 1},
        "dose": dose,
        "dose_unit": "mg/m2",
        "administered_at": "2025-03-03T09:00:00+08:00",
    }
    with pytest.raises(ValidationError) as error:
        DoseIn.model_validate(body)
    assert [issue["loc"] for issue in error.value.errors()] == [("dose",)]
    assert json.loads(json.dumps({"dose": 1e999}))["dose"] == float("inf")


# ---------------------------------------------------------------------------------------------
# HL7 v2, FHIR, SDTM: a visit label naming a cycle and day outside the protocol's
# ---------------------------------------------------------------------------------------------

OUT_OF_PROTOCOL = ["C0D1", "C1D0", "C101D1", "C1D43"]


@pytest.mark.parametrize("label", OUT_OF_PROTOCOL)
def test_hl7_a_visit_outside_the_protocol_is_refused_on_pv1_19(label: str) -> None:
    # visit_from_label raised pydantic's ValidationError out of convert_oru: a 500 over HTTP,
    # and over MLLP the connection closed with no ACK (the sender resends for ever).
    result = hl7v2.convert_oru(hl7_builders.oru(visit=label), DIRECTORY)
    (problem,) = result.conversion.problems
    assert problem.where == "PV1-19"
    assert problem.reason.startswith(f"'{label}' is not a visit of the protocol")
    ack = hl7.parse(hl7v2.ack(result))
    assert str(ack.segment("MSA")(1)) == "AE"


@pytest.mark.parametrize("label", OUT_OF_PROTOCOL)
def test_fhir_a_visit_outside_the_protocol_is_refused_on_its_extension(label: str) -> None:
    for resource in (
        fhir_builders.observation(extension=[fhir_builders._visit(label)]),
        fhir_builders.administration(extension=[fhir_builders._visit(label)]),
    ):
        conversion = fhir.convert_fhir(resource, DIRECTORY)
        (problem,) = conversion.problems  # one: not also "no protocol visit" for the dose
        assert problem.where.endswith(f"extension('{fhir.VISIT_EXTENSION_URL}')")
        assert f"'{label}' is not a visit of the protocol" in problem.reason


@pytest.mark.parametrize("label", ["CYCLE 0 DAY 1", "C1D43"])
def test_sdtm_a_visit_outside_the_protocol_is_refused_on_visit(label: str) -> None:
    for domain, row in (("LB", sdtm_builders.lb_row), ("EX", sdtm_builders.ex_row)):
        conversion = sdtm.convert_row(domain, row(VISIT=label), 7, DIRECTORY)
        assert [(p.where, p.reason.split(" (")[0]) for p in conversion.problems] == [
            ("row 7, VISIT", f"'{label}' is not a visit of the protocol")
        ]


# ---------------------------------------------------------------------------------------------
# FHIR (services/ingest/interop/fhir.py)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["\u00b2", "9" * 5000, "\u0663"])
def test_a_grade_code_that_is_no_number_is_refused_on_the_grade_extension(code: str) -> None:
    # str.isdigit() holds for "²" and for 5000 digits; int() refused both: ValueError, a 500.
    grade = {
        "url": fhir.CTCAE_GRADE_EXTENSION_URL,
        "valueCodeableConcept": {"coding": [{"code": code}]},
    }
    resource = fhir_builders.adverse_event(extension=[grade])
    conversion = fhir.convert_fhir(resource, DIRECTORY)
    (problem,) = conversion.problems
    assert problem.where == f"AdverseEvent.extension('{fhir.CTCAE_GRADE_EXTENSION_URL}')"
    assert problem.reason.startswith("no CTCAE grade in the extension")


@pytest.mark.parametrize("kind", ["", "Nope", 5, ["Observation"]])
def test_a_contained_resource_of_no_r4_type_is_refused_on_its_resource_type(kind: object) -> None:
    # fhir.resources raised KeyError / TypeError (not a ValidationError) for it: a 500.
    resource = fhir_builders.observation(contained=[{"resourceType": kind, "id": "x"}])
    assert fhir.convert_fhir(resource, DIRECTORY).problems == [
        Problem("Observation.contained[0].resourceType", f"'{kind}' is not an R4 resource type")
    ]
    bundle = fhir_builders.bundle("batch", [("urn:uuid:o", resource)])
    ((_, conversion),) = fhir.units_of(bundle, DIRECTORY)
    assert [p.where for p in conversion.problems] == [
        "Bundle.entry[0].resource.contained[0].resourceType"
    ]


def test_a_required_element_sent_as_null_is_refused_as_missing() -> None:
    # fhir.resources takes null for a required complex element; the adapter then read
    # None.coding / None.type / None.reference: AttributeError, a 500.
    required = [
        (fhir_builders.observation(code=None), "Observation.code"),
        (
            fhir_builders.adverse_event(suspectEntity=[{"instance": None}]),
            "AdverseEvent.suspectEntity[0].instance",
        ),
    ]
    for resource, where in required:
        conversion = fhir.convert_fhir(resource, DIRECTORY)
        assert conversion.problems == [Problem(where, "Field required")]
    for element in ("individual", "study"):
        bundle = fhir_builders.enrolment_bundle()
        bundle["entry"][0]["resource"][element] = None
        conversion = fhir.convert_fhir(bundle, DIRECTORY)
        assert [p.where for p in conversion.problems] == [f"Bundle.entry[0].resource.{element}"]
    # An optional element sent as null is still no element at all.
    assert fhir.convert_fhir(fhir_builders.observation(id=None), DIRECTORY).problems == []


# ---------------------------------------------------------------------------------------------
# SDTM rows sent as JSON (services/ingest/interop/sdtm.py)
# ---------------------------------------------------------------------------------------------


def test_a_json_cell_beyond_float_is_refused_naming_row_and_column() -> None:
    # float(10**400) raised OverflowError out of dataset_of_rows: a 500 on /v1/sdtm/rows.
    row = sdtm_builders.lb_row() | {"LBSTRESN": 10**400}
    with pytest.raises(InteropError, match=r"^row 3, LBSTRESN: the number is too large$"):
        sdtm.dataset_of_rows("LB", [row], first_row=3)


def test_a_corrupt_sas_transport_file_is_refused_whatever_pyreadstat_raises() -> None:
    # Its variable descriptors shifted by four bytes: pyreadstat raised TypeError (a nameless
    # duplicated column), which read_dataset let through: a 500 from /v1/sdtm/{domain}.
    corrupt = bytearray(XPT)
    header = corrupt.index(b"HEADER RECORD*******NAMSTV8")
    corrupt[header + 58 : header + 58] = b"\x00" * 4
    del corrupt[header + 309 : header + 313]
    with pytest.raises(InteropError, match=r"^lb\.xpt: not a readable SAS transport file"):
        sdtm.read_dataset(bytes(corrupt), "lb.xpt")


# ---------------------------------------------------------------------------------------------
# DSMB cut-off (services/dsmb/rollups.py)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_cutoff_beyond_utc_is_refused_not_an_overflow(text: str) -> None:
    # astimezone(UTC) raised OverflowError: a 500 from /v1/dsmb/rollups?cutoff=...
    with pytest.raises(CutoffError, match="out of range"):
        parse_cutoff(text)
