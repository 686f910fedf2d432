"""Ingest's conversion of requests into canonical events."""

import pytest
from pydantic import ValidationError

from services.ingest.domain import DoseIn, drugs_outside_regimen, enrolment_event
from shared.events import Drug
from shared.protocol import study_protocol
from tests.unit.factories import STUDY, ae, enrolment_request, lab, lab_request


def test_a_lab_result_is_kept_as_reported_and_normalised_to_si_and_conventional() -> None:
    event = lab("ANC", 900, "cells/uL", reference_low=1800, reference_high=6300)
    payload = event.payload
    assert payload.reported.value == 900 and payload.reported.unit == "/uL"
    assert (payload.si.value, payload.si.unit, payload.si.lln, payload.si.uln) == (
        0.9,
        "10*9/L",
        1.8,
        6.3,
    )
    assert payload.conventional.unit == "/mm3" and payload.conventional.value == 900
    assert payload.loinc == "751-8"
    assert event.occurred_at == lab_request().collected_at


def test_the_same_source_message_is_the_same_event() -> None:
    assert lab(source_message_id="m-1").event_id == lab(source_message_id="m-1").event_id
    assert lab(source_message_id="m-1").event_id != lab(source_message_id="m-2").event_id


def test_without_a_message_id_the_content_identifies_the_event() -> None:
    first = lab(source_message_id=None)
    assert first.event_id == lab(source_message_id=None).event_id
    assert first.event_id != lab(value=1.0, source_message_id=None).event_id


def test_a_unit_foreign_to_the_test_is_refused_on_the_unit_field() -> None:
    with pytest.raises(ValidationError) as error:
        lab_request("PLT", 80, "g/dL")
    (issue,) = error.value.errors()
    assert issue["loc"] == ("unit",)
    assert issue["msg"].startswith("'g/dL' is not a unit for PLAT; use a unit convertible to")


def test_a_reference_range_upside_down_is_refused() -> None:
    with pytest.raises(ValidationError, match="reference_low must be below reference_high"):
        lab_request(reference_low=7.0, reference_high=1.8)


def test_a_collection_time_without_offset_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        lab_request(collected_at="2025-04-14T07:30:00")


def test_enrolment_baseline_creatinine_is_stored_in_umol_per_l() -> None:
    request = enrolment_request(baseline_creatinine={"value": 1.0, "unit": "mg/dL"})
    baseline = enrolment_event(request, STUDY).payload.baseline_creatinine_umol_l
    assert baseline == pytest.approx(88.4017, abs=1e-4)  # 1 mg/dL at 113.12 g/mol


def test_an_unknown_adverse_event_term_is_refused_on_the_term_field() -> None:
    with pytest.raises(ValidationError) as error:
        ae(term="Pnemonitis", grade=2)
    (issue,) = error.value.errors()
    assert issue["loc"] == ("term",)
    assert issue["msg"] == "unknown CTCAE v4.03 term 'Pnemonitis'; did you mean: Pneumonitis?"


def test_a_grade_the_term_does_not_define_is_refused_on_the_grade_field() -> None:
    with pytest.raises(ValidationError) as error:
        ae(term="Febrile neutropenia", grade=2)
    (issue,) = error.value.errors()
    assert issue["loc"] == ("grade",)
    assert issue["msg"] == (
        "CTCAE v4.03 'Febrile neutropenia' has no grade 2; it defines grades 3-5"
    )


def test_a_grade_out_of_range_is_refused_by_the_range_alone() -> None:
    with pytest.raises(ValidationError) as error:
        ae(term="Alopecia", grade=6)
    (issue,) = error.value.errors()
    assert issue["loc"] == ("grade",) and issue["type"] == "less_than_equal"


def test_the_adverse_event_term_is_published_as_nci_spells_it() -> None:
    assert ae(term="  pneumonitis ", grade=2).payload.term == "Pneumonitis"
    typed = "musculoskeletal and connective tissue disorder - other, specify"
    assert ae(term=typed, grade=1).payload.term == (
        "Musculoskeletal and connective tissue disorder -  Other, specify"
    )


def test_a_serious_adverse_event_without_site_awareness_is_refused_on_that_field() -> None:
    from services.ingest.domain import AdverseEventIn

    with pytest.raises(ValidationError) as error:
        AdverseEventIn(
            subject_id="GZ01-001",
            site_id="GZ01",
            term="Febrile neutropenia",
            grade=3,
            serious=True,
            onset_date="2025-05-10",
        )
    (issue,) = error.value.errors()
    assert issue["loc"] == ("site_aware_at",)
    assert "24-hour reporting clock" in issue["msg"]


def test_an_implausible_baseline_creatinine_is_refused_on_its_field() -> None:
    with pytest.raises(ValidationError) as error:
        enrolment_request(baseline_creatinine={"value": 25, "unit": "mg/dL"})
    (issue,) = error.value.errors()
    assert issue["loc"] == ("baseline_creatinine",)
    assert "not a plausible baseline creatinine" in issue["msg"]


def test_a_drug_the_study_does_not_give_is_refused_on_its_field() -> None:
    regimen = set(study_protocol("NCT05173246").regimen.drugs)
    dose = DoseIn(
        subject_id="GZ01-001",
        site_id="GZ01",
        drug="pembrolizumab",
        visit={"cycle": 1, "day": 1},
        dose=200,
        dose_unit="mg",
        administered_at="2025-03-03T10:00:00+08:00",
    )
    ((field, reason),) = drugs_outside_regimen(dose, regimen)
    assert field == ("drug",)
    assert reason.startswith("'pembrolizumab' is not a drug of this study")
    assert drugs_outside_regimen(dose.model_copy(update={"drug": Drug.CISPLATIN}), regimen) == []
