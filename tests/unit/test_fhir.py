"""The FHIR R4 adapter: what each resource gives, and why one is refused or left out."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.operationoutcome import OperationOutcome

from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabCorrectionIn,
    LabResultIn,
    RetractionIn,
    drugs_outside_regimen,
    to_event,
)
from services.ingest.interop.common import (
    VISIT_EXTENSION_URL,
    Directory,
    InteropFile,
    Problem,
    load_directory,
)
from services.ingest.interop.fhir import (
    AE_GRADE_EXTENSION_URL,
    CTCAE_GRADE_EXTENSION_URL,
    IMMUNE_RELATED_EXTENSION_URL,
    LIVER_METASTASES_EXTENSION_URL,
    BundleRefused,
    convert_bundle,
    convert_fhir,
    operation_outcome,
    outcome_of,
    units_of,
)
from shared.events import Drug, Visit

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "interop" / "fhir_r4"
DIRECTORY = load_directory(
    ROOT / "interop" / "NCT05173246.yaml", ROOT / "interop" / "NCT05173246.enrolment.csv"
)
STUDY = DIRECTORY.study_id
PATIENT, SUBJECT = "GZ0700185", "GZ01-005"  # the enrolment map's patient id of GZ01-005
LIS = "urn:oid:1.2.156.1.GZ01.lis"
UCUM = "http://unitsofmeasure.org"


def _visit(label: str = "C2D1") -> dict:
    return {"url": VISIT_EXTENSION_URL, "valueString": label}


def observation(
    loinc: str = "751-8", value: float = 0.9, unit: str = "10*9/L", **overrides: Any
) -> dict:
    """A final ANC result of GZ01-005 at C2D1, as a hospital LIS sends it."""
    resource = {
        "resourceType": "Observation",
        "id": "anc-1",
        "identifier": [{"system": LIS, "value": "R-1"}],
        "status": "final",
        "extension": [_visit()],
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": "2025-04-14T07:30:00+08:00",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        "referenceRange": [
            {"low": {"value": 1.8, "unit": unit}, "high": {"value": 6.3, "unit": unit}}
        ],
    }
    return resource | overrides


def adverse_event(**overrides: Any) -> dict:
    resource = {
        "resourceType": "AdverseEvent",
        "id": "ae-1",
        "identifier": {"system": "urn:oid:edc.gz01.ae", "value": "AE-7"},
        "actuality": "actual",
        "extension": [
            {
                "url": CTCAE_GRADE_EXTENSION_URL,
                "valueCodeableConcept": {"coding": [{"code": "3"}]},
            },
            {"url": IMMUNE_RELATED_EXTENSION_URL, "valueBoolean": True},
        ],
        "event": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/mdr", "code": "10035742"}],
            "text": "Pneumonitis",
        },
        "subject": {"reference": f"Patient/{PATIENT}"},
        "date": "2025-05-10T08:00:00+08:00",
        "recordedDate": "2025-05-10T10:00:00+08:00",
        "seriousness": {"coding": [{"code": "serious"}]},
        "suspectEntity": [{"instance": {"reference": "Medication/tor", "display": "Toripalimab"}}],
    }
    return resource | overrides


def administration(**overrides: Any) -> dict:
    resource = {
        "resourceType": "MedicationAdministration",
        "id": "dose-1",
        "identifier": [{"system": "urn:oid:his.gz01.mar", "value": "MAR-9"}],
        "extension": [_visit("C1D1")],
        "status": "completed",
        "medicationCodeableConcept": {"text": "Nab-paclitaxel"},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": "2025-03-03T09:00:00+08:00",
        "dosage": {"dose": {"value": 100, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}},
    }
    return resource | overrides


def enrolment_bundle(bundle_type: str = "transaction", **subject: Any) -> dict:
    """A ResearchSubject with its Patient and baseline Observations, as one Bundle."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:his.gz01.mrn", "value": PATIENT}],
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "gender": "female",
        "birthDate": "1972-06-15",
    }
    research_subject = {
        "resourceType": "ResearchSubject",
        "identifier": [{"system": "urn:oid:safetymon.subject", "value": SUBJECT}],
        "status": "on-study",
        "period": {"start": "2025-03-01"},
        "study": {"identifier": {"value": STUDY}},
        "individual": {"reference": "urn:uuid:patient-1"},
        "assignedArm": "Toripalimab + nab-paclitaxel + cisplatin",
        "extension": [{"url": LIVER_METASTASES_EXTENSION_URL, "valueBoolean": False}],
    } | subject

    def baseline(loinc: str, value: float, unit: str) -> dict:
        return observation(
            loinc,
            value,
            unit,
            id=None,
            identifier=[{"system": LIS, "value": f"B-{loinc}"}],
            extension=[],
            subject={"reference": "urn:uuid:patient-1"},
            effectiveDateTime="2025-02-27T08:00:00+08:00",
            referenceRange=[],
        )

    resources = [
        ("urn:uuid:subject-1", research_subject),
        ("urn:uuid:weight", baseline("29463-7", 55.0, "kg")),
        ("urn:uuid:height", baseline("8302-2", 158.0, "cm")),
        ("urn:uuid:creatinine", baseline("2160-0", 0.8, "mg/dL")),
        ("urn:uuid:patient-1", patient),
    ]
    return bundle(bundle_type, resources)


def bundle(bundle_type: str, resources: list[tuple[str, dict]]) -> dict:
    entries = [
        {"fullUrl": url, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        for url, r in resources
    ]
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def without(resource: dict, *names: str) -> dict:
    return {k: v for k, v in resource.items() if k not in names}


def accepted(document: dict, directory: Directory = DIRECTORY) -> list[Any]:
    conversion = convert_fhir(document, directory)
    assert conversion.problems == []
    return [request for _, request in conversion.requests]


def refused(document: dict, directory: Directory = DIRECTORY) -> dict[str, str]:
    conversion = convert_fhir(document, directory)
    assert conversion.problems and conversion.requests == []
    return {problem.where: problem.reason for problem in conversion.problems}


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------------------------


def test_a_final_lab_observation_is_a_lab_result_with_its_visit_range_and_loinc() -> None:
    (request,) = accepted(observation())
    assert isinstance(request, LabResultIn)
    assert (request.subject_id, request.site_id, request.test.value) == (SUBJECT, "GZ01", "NEUT")
    assert (request.value.number, request.unit, request.loinc) == (0.9, "10*9/L", "751-8")
    assert (request.reference_low, request.reference_high) == (1.8, 6.3)
    assert request.visit == Visit(cycle=2, day=1)
    assert request.collected_at.isoformat() == "2025-04-14T07:30:00+08:00"
    assert (request.source_system, request.source_message_id) == ("fhir", f"{LIS}|R-1")


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "si"),
    [
        ("751-8", 0.9, "10*9/L", 0.9),
        ("751-8", 900, "/uL", 0.9),
        ("1975-2", 34.2, "umol/L", 34.2),
        ("1975-2", 2.0, "mg/dL", 34.2),
    ],
)
def test_a_result_keeps_the_unit_sent_and_normalises_to_si(
    loinc: str, value: float, unit: str, si: float
) -> None:
    resource = observation(loinc, value, unit, referenceRange=[])
    (request,) = accepted(resource)
    payload = to_event(request, STUDY).payload
    assert payload.reported.unit == unit
    assert payload.si.value == pytest.approx(si, rel=1e-3)


def test_the_ucum_code_is_read_rather_than_the_display_unit() -> None:
    resource = observation()
    resource["valueQuantity"] |= {"unit": "x10^9/L (display)", "code": "10*9/L"}
    (request,) = accepted(resource)
    assert request.unit == "10*9/L"


def test_a_unit_not_coded_in_ucum_is_read_from_the_unit_text() -> None:
    resource = observation(valueQuantity={"value": 900, "unit": "cells/uL"}, referenceRange=[])
    (request,) = accepted(resource)
    assert request.unit == "/uL"


def test_a_comparator_makes_the_value_a_bound() -> None:
    resource = observation("1975-2", 0, "umol/L", referenceRange=[])
    resource["valueQuantity"] = {"value": 0.1, "comparator": "<", "unit": "mg/dL"}
    (request,) = accepted(resource)
    assert (str(request.value), request.value.comparator) == ("<0.1", "<")
    assert to_event(request, STUDY).payload.comparator == "<"


def test_a_result_without_a_reference_range_is_accepted_without_limits() -> None:
    (request,) = accepted(without(observation(), "referenceRange"))
    assert (request.reference_low, request.reference_high) == (None, None)


def test_a_reference_range_in_another_unit_is_converted_to_the_unit_of_the_result() -> None:
    resource = observation(valueQuantity={"value": 0.9, "system": UCUM, "code": "10*9/L"})
    resource["referenceRange"] = [{"low": {"value": 1800, "system": UCUM, "code": "/uL"}}]
    (request,) = accepted(resource)
    assert request.reference_low == pytest.approx(1.8)


def test_a_collection_time_without_utc_offset_is_refused_on_effective_date_time() -> None:
    problems = refused(observation(effectiveDateTime="2025-04-14T07:30:00"))
    assert problems == {
        "Observation.effectiveDateTime": "'2025-04-14T07:30:00' has no UTC offset: FHIR requires "
        "one on a dateTime with a time, and safetymon needs it to place the event in time"
    }


def test_a_collection_date_without_time_is_refused() -> None:
    problems = refused(observation(effectiveDateTime="2025-04-14"))
    assert problems["Observation.effectiveDateTime"].startswith("'2025-04-14' has no time and")


def test_the_start_of_an_effective_period_is_the_collection_time() -> None:
    resource = without(observation(), "effectiveDateTime")
    resource["effectivePeriod"] = {"start": "2025-04-14T07:30:00+08:00"}
    (request,) = accepted(resource)
    assert request.collected_at.isoformat() == "2025-04-14T07:30:00+08:00"


def test_an_unknown_patient_is_refused_on_the_subject_never_guessed() -> None:
    problems = refused(observation(subject={"reference": "Patient/XX999"}))
    assert list(problems) == ["Observation.subject"]
    assert "'XX999' is not in the enrolment map" in problems["Observation.subject"]


@pytest.mark.parametrize(
    "subject",
    [
        {"reference": f"https://his.example/fhir/Patient/{PATIENT}/_history/3"},
        {"identifier": {"system": "urn:oid:his.gz01.mrn", "value": PATIENT}},
        {"reference": f"ResearchSubject/{SUBJECT}"},
    ],
)
def test_the_subject_is_found_by_patient_reference_identifier_or_research_subject(
    subject: dict,
) -> None:
    (request,) = accepted(observation(subject=subject))
    assert request.subject_id == SUBJECT


def test_a_test_the_study_does_not_monitor_is_skipped_not_refused() -> None:
    conversion = convert_fhir(observation("29463-7", 55, "kg", referenceRange=[]), DIRECTORY)
    assert conversion.accepted and conversion.requests == []
    assert conversion.skipped == [
        Problem("Observation.code", "http://loinc.org|29463-7 is not a test this study monitors")
    ]


def test_a_site_local_code_is_read_through_the_directory() -> None:
    local = {"coding": [{"system": "urn:oid:sh02.lab", "code": "ANC"}], "text": "Neutrophils"}
    resource = observation(code=local, subject={"reference": "Patient/SH0700222"})
    (request,) = accepted(resource)
    assert (request.site_id, request.test.value, request.loinc) == ("SH02", "NEUT", None)


@pytest.mark.parametrize("status", ["registered", "preliminary", "unknown"])
def test_a_result_not_final_is_refused_until_the_final_one(status: str) -> None:
    problems = refused(observation(status=status))
    assert problems == {
        "Observation.status": f"status '{status}' is not accepted: send the final result"
    }


@pytest.mark.parametrize("status", ["amended", "corrected"])
def test_an_amended_result_corrects_the_event_of_the_result_first_sent(status: str) -> None:
    first = to_event(accepted(observation())[0], STUDY)
    amended = observation(value=1.2, status=status, meta={"versionId": "2"})
    amended["note"] = [{"text": "re-run after clotted sample"}]
    (correction,) = accepted(amended)
    assert isinstance(correction, LabCorrectionIn)
    assert correction.corrected_event_id == first.event_id
    assert correction.corrected.value.number == 1.2
    assert correction.reason == "re-run after clotted sample"
    assert correction.source_message_id == f"{LIS}|R-1|{status}|2"
    assert to_event(correction, STUDY).event_id != first.event_id


def test_two_corrections_without_a_version_are_told_apart_by_their_content() -> None:
    (one,) = accepted(observation(value=1.2, status="corrected"))
    (two,) = accepted(observation(value=1.3, status="corrected"))
    (again,) = accepted(observation(value=1.2, status="corrected"))
    assert one.source_message_id != two.source_message_id
    assert one.source_message_id == again.source_message_id


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
def test_a_withdrawn_result_retracts_the_event_of_the_result_first_sent(status: str) -> None:
    first = to_event(accepted(observation())[0], STUDY)
    (retraction,) = accepted(observation(status=status, meta={"versionId": "3"}))
    assert isinstance(retraction, RetractionIn)
    assert retraction.retracted_event_id == first.event_id
    assert retraction.reason == f"the sender set status '{status}'"


def test_a_correction_that_cannot_name_the_result_it_replaces_is_refused() -> None:
    resource = without(observation(status="corrected"), "identifier", "id")
    problems = refused(resource)
    assert list(problems) == ["Observation.identifier"]


def test_without_identifier_the_resource_id_is_the_message_id_and_meta_source_the_system() -> None:
    resource = without(observation(), "identifier") | {"meta": {"source": "gz01-lis"}}
    (request,) = accepted(resource)
    assert (request.source_system, request.source_message_id) == (
        "fhir:gz01-lis",
        "Observation/anc-1",
    )


def test_an_invalid_element_is_named_by_its_path_with_the_reason() -> None:
    resource = observation()
    resource["valueQuantity"]["value"] = "0,9"
    resource["referenceRange"][0]["low"]["value"] = "low"
    problems = refused(resource)
    assert set(problems) == {
        "Observation.valueQuantity.value",
        "Observation.referenceRange[0].low.value",
    }
    assert problems["Observation.valueQuantity.value"] == (
        "Decimal value string does not match spec regex."
    )


def test_an_element_r4_does_not_define_is_refused() -> None:
    problems = refused(observation(triggeredBy=[]))  # an R5 element
    assert problems == {"Observation.triggeredBy": "not an element of this R4 resource"}


def test_a_value_that_is_not_a_quantity_is_refused_on_value_x() -> None:
    resource = without(observation(), "valueQuantity") | {"valueString": "<0.1"}
    problems = refused(resource)
    assert problems == {
        "Observation.value[x]": "valueString is not accepted: a monitored result needs "
        "valueQuantity (value and unit)"
    }


def test_a_unit_foreign_to_the_test_is_refused_on_the_ucum_code() -> None:
    problems = refused(observation(unit="g/dL", referenceRange=[]))
    assert problems["Observation.valueQuantity.code"].startswith("'g/dL' is not a unit for NEUT")


def test_a_resource_type_the_adapter_does_not_read_is_refused_naming_those_it_does() -> None:
    problems = refused({"resourceType": "Patient", "id": "p"})
    assert problems == {
        "resourceType": "'Patient' is not accepted: accepted: Observation, AdverseEvent, "
        "MedicationAdministration, ResearchSubject, Bundle"
    }


# ---------------------------------------------------------------------------------------------
# AdverseEvent
# ---------------------------------------------------------------------------------------------


def test_an_adverse_event_gives_term_grade_seriousness_attribution_and_awareness() -> None:
    (request,) = accepted(adverse_event())
    assert isinstance(request, AdverseEventIn)
    assert (request.term, request.grade, request.serious) == ("Pneumonitis", 3, True)
    assert request.immune_related is True
    assert request.related_drugs == (Drug("toripalimab"),)
    assert str(request.onset_date) == "2025-05-10"
    assert request.site_aware_at.isoformat() == "2025-05-10T10:00:00+08:00"
    assert request.source_message_id == "urn:oid:edc.gz01.ae|AE-7"


@pytest.mark.parametrize(
    "extension",
    [
        {"url": CTCAE_GRADE_EXTENSION_URL, "valueInteger": 2},
        {
            "url": AE_GRADE_EXTENSION_URL,
            "valueCodeableConcept": {
                "coding": [
                    {
                        "system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
                        "code": "C41339",
                    }
                ]
            },
        },
    ],
)
def test_the_grade_is_read_from_an_integer_or_an_nci_grade_code(extension: dict) -> None:
    (request,) = accepted(adverse_event(extension=[extension]))
    assert request.grade == 2


def test_an_adverse_event_without_ctcae_grade_is_refused_on_the_grade_extension() -> None:
    resource = adverse_event(extension=[], severity={"coding": [{"code": "severe"}]})
    problems = refused(resource)
    where = f"AdverseEvent.extension('{CTCAE_GRADE_EXTENSION_URL}')"
    assert list(problems) == [where]
    assert problems[where].startswith("no CTCAE grade: R4 AdverseEvent has no grade element")


def test_a_grade_the_term_does_not_define_is_refused_on_the_grade_extension() -> None:
    resource = adverse_event(
        extension=[{"url": CTCAE_GRADE_EXTENSION_URL, "valueInteger": 5}],
        event={"text": "Alopecia"},
    )
    problems = refused(resource)
    assert problems == {
        f"AdverseEvent.extension('{CTCAE_GRADE_EXTENSION_URL}')": "CTCAE v4.03 'Alopecia' has "
        "no grade 5; it defines grades 1-2"
    }


def test_the_term_is_a_display_or_text_that_is_a_ctcae_term_never_a_meddra_code() -> None:
    event = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/mdr", "code": "10012735"}],
        "text": "watery stools x6/day",
    }
    assert list(refused(adverse_event(event=event))) == ["AdverseEvent.event"]
    event["coding"][0]["display"] = "Diarrhea"
    (request,) = accepted(adverse_event(event=event))
    assert (request.term, request.verbatim) == ("Diarrhea", "watery stools x6/day")


def test_an_unknown_term_is_refused_with_the_nearest_ctcae_terms() -> None:
    problems = refused(adverse_event(event={"text": "Pnemonitis"}))
    assert problems == {
        "AdverseEvent.event": "unknown CTCAE v4.03 term 'Pnemonitis'; did you mean: Pneumonitis?"
    }


def test_a_serious_event_without_a_recorded_time_is_refused_for_the_reporting_clock() -> None:
    problems = refused(without(adverse_event(), "recordedDate"))
    assert list(problems) == ["AdverseEvent.recordedDate"]
    assert "24-hour reporting clock" in problems["AdverseEvent.recordedDate"]


def test_a_suspected_drug_is_named_by_a_contained_medication() -> None:
    medication = {"resourceType": "Medication", "id": "m", "code": {"text": "Nab-Paclitaxel"}}
    resource = adverse_event(
        contained=[medication], suspectEntity=[{"instance": {"reference": "#m"}}]
    )
    (request,) = accepted(resource)
    assert request.related_drugs == (Drug("nab-paclitaxel"),)


def test_a_suspected_drug_that_is_not_named_is_refused_and_a_procedure_left_out() -> None:
    entities = [
        {"instance": {"reference": "Medication/m1"}},
        {"instance": {"reference": "Procedure/biopsy"}},
    ]
    conversion = convert_fhir(adverse_event(suspectEntity=entities), DIRECTORY)
    assert [p.where for p in conversion.problems] == ["AdverseEvent.suspectEntity[0].instance"]
    assert [p.where for p in conversion.skipped] == ["AdverseEvent.suspectEntity[1].instance"]


def test_a_potential_adverse_event_is_left_out() -> None:
    conversion = convert_fhir(adverse_event(actuality="potential"), DIRECTORY)
    assert conversion.accepted and conversion.requests == []
    assert [p.where for p in conversion.skipped] == ["AdverseEvent.actuality"]


# ---------------------------------------------------------------------------------------------
# MedicationAdministration
# ---------------------------------------------------------------------------------------------


def test_a_completed_administration_is_a_dose_of_its_visit() -> None:
    (request,) = accepted(administration())
    assert isinstance(request, DoseIn)
    assert (request.drug, request.dose, request.dose_unit) == ("nab-paclitaxel", 100, "mg/m2")
    assert request.visit == Visit(cycle=1, day=1)
    assert request.administered_at.isoformat() == "2025-03-03T09:00:00+08:00"


def test_a_carboplatin_dose_is_an_auc_named_by_coding_display() -> None:
    resource = administration(
        medicationCodeableConcept={"coding": [{"code": "40048", "display": "Carboplatin"}]},
        dosage={"dose": {"value": 5, "unit": "AUC"}},
    )
    (request,) = accepted(resource)
    assert (request.drug, request.dose, request.dose_unit) == ("carboplatin", 5, "AUC")


@pytest.mark.parametrize("status", ["in-progress", "not-done", "on-hold", "stopped"])
def test_an_administration_not_completed_is_refused(status: str) -> None:
    assert list(refused(administration(status=status))) == ["MedicationAdministration.status"]


def test_an_administration_without_protocol_visit_is_refused_on_the_visit_extension() -> None:
    problems = refused(administration(extension=[]))
    assert list(problems) == [f"MedicationAdministration.extension('{VISIT_EXTENSION_URL}')"]


def test_a_dose_unit_the_study_does_not_use_is_refused_on_the_dose_unit() -> None:
    problems = refused(administration(dosage={"dose": {"value": 20, "unit": "mL"}}))
    assert list(problems) == ["MedicationAdministration.dosage.dose.unit"]


def test_a_drug_outside_the_regimen_is_converted_and_left_to_the_ingest_app_to_refuse() -> None:
    (request,) = accepted(administration(medicationCodeableConcept={"text": "Pembrolizumab"}))
    assert request.drug == "pembrolizumab"
    regimen = {Drug.TORIPALIMAB, Drug.NAB_PACLITAXEL, Drug.CISPLATIN, Drug.CARBOPLATIN}
    ((field, reason),) = drugs_outside_regimen(request, regimen)
    assert field == ("drug",) and "not a drug of this study" in reason


# ---------------------------------------------------------------------------------------------
# ResearchSubject: enrolment
# ---------------------------------------------------------------------------------------------


def test_a_research_subject_with_its_patient_and_baseline_observations_is_an_enrolment() -> None:
    conversion = convert_fhir(enrolment_bundle(), DIRECTORY)
    assert conversion.problems == []
    ((where, request),) = conversion.requests
    assert where == "Bundle.entry[0].resource" and isinstance(request, EnrolmentIn)
    assert (request.subject_id, request.site_id, str(request.enrolled_on)) == (
        SUBJECT,
        "GZ01",
        "2025-03-01",
    )
    assert (request.sex, request.age_years) == ("F", 52)
    assert (request.weight_kg, request.height_cm) == (55.0, 158.0)
    assert request.baseline_creatinine.model_dump() == {"value": 0.8, "unit": "mg/dL"}
    assert (request.platinum, request.liver_metastases) == ("cisplatin", False)


def test_the_baseline_observations_are_used_once_not_published_as_lab_results() -> None:
    conversion = convert_fhir(enrolment_bundle(), DIRECTORY)
    assert sorted(p.where for p in conversion.skipped) == [
        "Bundle.entry[1].resource",
        "Bundle.entry[2].resource",
        "Bundle.entry[3].resource",
    ]
    assert {p.reason for p in conversion.skipped} == {
        "used as the baseline of the enrolment at Bundle.entry[0].resource"
    }


def test_a_missing_baseline_observation_is_named_with_where_it_is_expected() -> None:
    document = enrolment_bundle()
    del document["entry"][1]  # the body weight
    problems = refused(document)
    assert problems == {
        "Bundle.entry.resource.ofType(Observation).where(code.coding.code = '29463-7')": (
            f"no baseline body weight of {SUBJECT}: FHIR has no element for it; send a final "
            "Observation (LOINC 29463-7, in kg) of the Patient in the same Bundle as the "
            "ResearchSubject (or contained in it)"
        )
    }


def test_an_enrolment_without_the_liver_metastases_extension_is_refused_on_it() -> None:
    problems = refused(enrolment_bundle(extension=[]))
    where = f"Bundle.entry[0].resource.extension('{LIVER_METASTASES_EXTENSION_URL}')"
    assert list(problems) == [where]


def test_an_arm_that_names_no_platinum_is_refused_on_assigned_arm() -> None:
    problems = refused(enrolment_bundle(assignedArm="Arm A"))
    assert problems == {
        "Bundle.entry[0].resource.assignedArm": "'Arm A' names no platinum: the arm must name "
        "the platinum (cisplatin or carboplatin)"
    }


def test_a_research_subject_not_in_the_enrolment_map_is_refused_on_its_identifier() -> None:
    problems = refused(enrolment_bundle(identifier=[{"value": "GZ01-999"}]))
    assert list(problems) == ["Bundle.entry[0].resource.identifier"]


def test_a_patient_name_is_never_copied_into_requests_or_problems() -> None:
    document = enrolment_bundle()
    document["entry"][4]["resource"]["gender"] = "other"
    for conversion in (
        convert_fhir(enrolment_bundle(), DIRECTORY),
        convert_fhir(document, DIRECTORY),
    ):
        text = repr(conversion.requests) + repr(conversion.problems) + repr(conversion.skipped)
        assert "Chalmers" not in text and "Peter" not in text
    assert refused(document) == {
        "Bundle.entry[4].resource.gender": "gender 'other': enrolment needs male or female"
    }


def test_a_research_subject_sent_alone_is_refused_for_want_of_its_patient() -> None:
    research_subject = enrolment_bundle()["entry"][0]["resource"]
    problems = refused(research_subject)
    assert problems["ResearchSubject.individual"] == (
        "the Patient 'urn:uuid:patient-1' is neither in the Bundle nor contained: sex and age "
        "at enrolment come from it"
    )
    weight = "ResearchSubject.contained.ofType(Observation).where(code.coding.code = '29463-7')"
    assert problems[weight].startswith(f"no baseline body weight of {SUBJECT}")
    assert len(problems) == 4  # the Patient, weight, height and creatinine


def test_a_research_subject_not_yet_on_study_is_not_an_enrolment() -> None:
    problems = refused(enrolment_bundle(status="screening"))
    assert list(problems) == ["Bundle.entry[0].resource.status"]


# ---------------------------------------------------------------------------------------------
# Bundle: transaction (all or nothing) and batch (each entry alone)
# ---------------------------------------------------------------------------------------------


def _two_results(bundle_type: str) -> dict:
    good = observation()
    bad = observation(id="anc-2", identifier=[], effectiveDateTime="2025-04-15")
    return bundle(bundle_type, [("urn:uuid:a", good), ("urn:uuid:b", bad)])


def test_a_transaction_with_one_bad_entry_is_refused_whole_naming_the_entry() -> None:
    conversion = convert_fhir(_two_results("transaction"), DIRECTORY)
    assert not conversion.accepted
    assert [p.where for p in conversion.problems] == ["Bundle.entry[1].resource.effectiveDateTime"]


def test_a_batch_gives_each_entry_its_own_conversion() -> None:
    entries = dict(convert_bundle(_two_results("batch"), DIRECTORY))
    assert entries[0].accepted and len(entries[0].requests) == 1
    assert not entries[1].accepted and entries[1].requests == []


def test_an_observation_refers_to_a_patient_in_the_bundle_by_its_full_url() -> None:
    patient = {"resourceType": "Patient", "identifier": [{"value": "SH0700222"}]}
    result = observation(subject={"reference": "urn:uuid:p"})
    (request,) = accepted(bundle("transaction", [("urn:uuid:p", patient), ("urn:uuid:o", result)]))
    assert request.subject_id == "SH02-006"


def test_enrolments_come_before_the_results_of_the_same_bundle() -> None:
    document = enrolment_bundle()
    document["entry"].insert(0, {"fullUrl": "urn:uuid:r", "resource": observation()})
    conversion = convert_fhir(document, DIRECTORY)
    assert [type(r).__name__ for _, r in conversion.requests] == ["EnrolmentIn", "LabResultIn"]


def test_a_reference_to_a_bundle_entry_that_is_not_there_is_refused_on_the_subject() -> None:
    result = observation(subject={"reference": "urn:uuid:missing"})
    problems = refused(bundle("transaction", [("urn:uuid:o", result)]))
    assert problems == {
        "Bundle.entry[0].resource.subject": "'urn:uuid:missing' is no Patient of the Bundle or "
        "contained (or it was refused)"
    }


def test_convert_bundle_refuses_a_document_that_is_not_a_bundle() -> None:
    with pytest.raises(BundleRefused) as refusal:
        convert_bundle(observation(), DIRECTORY)
    assert refusal.value.problems == [Problem("resourceType", "not a Bundle")]


@pytest.mark.parametrize("bundle_type", ["searchset", "document", "message", "history"])
def test_a_bundle_of_another_type_is_refused_on_its_type(bundle_type: str) -> None:
    problems = refused(_two_results(bundle_type))
    assert problems == {
        "Bundle.type": f"'{bundle_type}' is not accepted: transaction, batch, collection"
    }


def test_a_resource_that_is_not_converted_is_left_out_of_a_bundle() -> None:
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    conversion = convert_fhir(bundle("collection", [("urn:uuid:e", encounter)]), DIRECTORY)
    assert conversion.accepted
    assert [p.where for p in conversion.skipped] == ["Bundle.entry[0].resource"]


# ---------------------------------------------------------------------------------------------
# OperationOutcome
# ---------------------------------------------------------------------------------------------


def test_the_operation_outcome_validates_and_names_each_element() -> None:
    conversion = convert_fhir(observation(effectiveDateTime="2025-04-14T07:30:00"), DIRECTORY)
    skipped = [Problem("Bundle.entry[3].resource.code", "not monitored")]
    outcome = operation_outcome(conversion.problems, skipped)
    OperationOutcome.model_validate(outcome)
    assert outcome["resourceType"] == "OperationOutcome"
    error, warning = outcome["issue"]
    assert (error["severity"], error["code"]) == ("error", "invalid")
    assert error["expression"] == ["Observation.effectiveDateTime"]
    assert "has no UTC offset" in error["diagnostics"]
    assert (warning["severity"], warning["code"]) == ("warning", "not-supported")


def test_an_unknown_patient_is_not_found_and_an_unread_type_not_supported() -> None:
    unknown = convert_fhir(observation(subject={"reference": "Patient/X"}), DIRECTORY)
    patient = convert_fhir({"resourceType": "Patient"}, DIRECTORY)
    codes = [i["code"] for i in operation_outcome(unknown.problems + patient.problems)["issue"]]
    assert codes == ["not-found", "not-supported"]


def test_an_accepted_message_is_answered_with_one_information_issue() -> None:
    outcome = operation_outcome([])
    OperationOutcome.model_validate(outcome)
    assert [i["severity"] for i in outcome["issue"]] == ["information"]


def test_an_outcome_names_the_events_accepted_next_to_the_problems_of_a_batch() -> None:
    units = units_of(_two_results("batch"), DIRECTORY)
    refused_entry = next(c for _, c in units if not c.accepted)
    outcome = outcome_of(refused_entry.problems, {3: [Problem("Bundle.entry[3].resource", "x")]}, 1)
    OperationOutcome.model_validate(outcome)
    assert [(i["severity"], i["diagnostics"]) for i in outcome["issue"]][1:] == [
        ("warning", "x"),
        ("information", "1 event accepted"),
    ]


def test_a_failure_of_the_event_log_is_a_transient_issue_without_element() -> None:
    outcome = operation_outcome([Problem("", "Kafka did not acknowledge")], code="transient")
    OperationOutcome.model_validate(outcome)
    assert outcome["issue"] == [
        {"severity": "error", "code": "transient", "diagnostics": "Kafka did not acknowledge"}
    ]


def test_a_batch_is_published_entry_by_entry_and_a_transaction_as_one_unit() -> None:
    assert [key for key, _ in units_of(_two_results("batch"), DIRECTORY)] == [0, 1]
    ((key, transaction),) = units_of(_two_results("transaction"), DIRECTORY)
    assert key == 0 and not transaction.accepted and transaction.requests == []
    ((_, single),) = units_of(observation(), DIRECTORY)
    assert single.accepted and len(single.requests) == 1


# ---------------------------------------------------------------------------------------------
# Public FHIR R4 examples (tests/data/interop/fhir_r4, see its README)
# ---------------------------------------------------------------------------------------------


def _directory_with(patients: dict[str, str], local_codes: dict[str, str]) -> Directory:
    interop = InteropFile.model_validate(
        {"study_id": STUDY, "sites": {"GZ01": {"local_codes": local_codes}}}
    )
    rows = [
        {"subject_id": subject, "site_id": "GZ01", "patient_id": patient}
        for patient, subject in patients.items()
    ]
    return Directory(interop, rows)


def test_the_spec_adverse_event_example_is_refused_with_each_reason() -> None:
    directory = _directory_with({"example": SUBJECT}, {})
    problems = refused(sample("AdverseEvent-example.json"), directory)
    assert problems == {
        "AdverseEvent.suspectEntity[0].instance": "'Medication/example' does not name the drug: "
        "give instance.display or a contained or bundled Medication with code.text",
        f"AdverseEvent.extension('{CTCAE_GRADE_EXTENSION_URL}')": (
            "no CTCAE grade: R4 AdverseEvent has no grade element (severity mild/moderate/severe "
            f"is not a grade); send extension {CTCAE_GRADE_EXTENSION_URL} with valueInteger or "
            "valueCodeableConcept code 1-5"
        ),
        "AdverseEvent.event": "unknown CTCAE v4.03 term 'O/E - itchy rash'",
    }


def test_the_spec_adverse_event_example_converts_once_graded_with_a_ctcae_term() -> None:
    resource = sample("AdverseEvent-example.json")
    resource["event"]["coding"][0]["display"] = "Rash maculo-papular"
    resource["extension"] = [{"url": CTCAE_GRADE_EXTENSION_URL, "valueInteger": 1}]
    resource["suspectEntity"][0]["instance"]["display"] = "toripalimab"
    (request,) = accepted(resource, _directory_with({"example": SUBJECT}, {}))
    assert (request.term, request.grade, request.serious) == ("Rash maculo-papular", 1, False)
    assert request.verbatim == "This was a mild rash on the left forearm"
    assert request.source_message_id == "http://acme.com/ids/patients/risks|49476534"


def test_the_spec_medication_administration_on_hold_is_refused_on_its_status() -> None:
    problems = refused(sample("MedicationAdministration-medadminexample03.json"))
    assert problems == {
        "MedicationAdministration.status": "status 'on-hold' is not accepted: only a completed "
        "administration is a dose given"
    }


def test_the_spec_medication_administration_names_its_contained_medication() -> None:
    resource = sample("MedicationAdministration-medadminexample03.json")
    resource |= {"status": "completed", "extension": [_visit("C1D1")]}
    resource["dosage"] = {"dose": {"value": 12, "unit": "mg"}}
    problems = refused(resource, _directory_with({"pat1": SUBJECT}, {}))
    assert problems == {
        "MedicationAdministration.medication[x]": "'alemtuzumab 10mg/ml (lemtrada)' is not a "
        "drug name (lowercase letters, digits, hyphens)"
    }


def test_the_spec_glucose_in_blood_is_not_monitored_and_left_out() -> None:
    conversion = convert_fhir(sample("observation-example-f001-glucose.json"), DIRECTORY)
    assert conversion.accepted and conversion.requests == []
    assert [p.where for p in conversion.skipped] == ["Observation.code"]
    assert "15074-8" in conversion.skipped[0].reason


def test_the_spec_lipid_panel_is_left_out_unless_a_site_maps_its_codes() -> None:
    document = sample("Bundle-lipids.json")
    conversion = convert_fhir(document, DIRECTORY)
    assert conversion.accepted and conversion.requests == []
    assert len(conversion.skipped) == 5  # the DiagnosticReport and four unmonitored tests


def test_the_spec_lipid_results_carry_no_collection_time_of_their_own() -> None:
    directory = _directory_with({"pat2": SUBJECT}, {"35200-5": "CHOL", "35217-9": "TRIG"})
    conversion = convert_fhir(sample("Bundle-lipids.json"), directory)
    # The time is on the DiagnosticReport only: a result's collection time is never borrowed.
    assert {p.where: p.reason for p in conversion.problems} == {
        f"Bundle.entry[{i}].resource.effectiveDateTime": "no specimen collection time: give it "
        "with its UTC offset"
        for i in (1, 2)
    }
    document = sample("Bundle-lipids.json")
    for i in (1, 2):
        document["entry"][i]["resource"]["effectiveDateTime"] = "2011-03-04T08:30:00+11:00"
    requests = accepted(document, directory)
    assert [(r.test.value, r.value.number, r.unit, r.reference_high) for r in requests] == [
        ("CHOL", 6.3, "mmol/L", 4.5),
        ("TRIG", 1.3, "mmol/L", 2.0),
    ]


def test_the_spec_transaction_of_patients_is_refused_for_its_reads_and_deletes() -> None:
    document = sample("Bundle-bundle-transaction.json")
    conversion = convert_fhir(copy.deepcopy(document), DIRECTORY)
    reasons = {p.where: p.reason for p in conversion.problems}
    assert reasons["Bundle.entry[5].resource"].startswith("no resource (DELETE is not accepted")
    assert reasons["Bundle.entry[8].resource"].startswith("no resource (a read")
    assert conversion.requests == [] and "Chalmers" not in repr(conversion)


def test_a_patient_alone_is_not_a_message_the_adapter_reads() -> None:
    assert list(refused(sample("Patient-pat1.json"))) == ["resourceType"]


def test_every_public_example_validates_with_the_r4b_models() -> None:
    for path in sorted(SAMPLES.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        get_fhir_model_class(document["resourceType"]).model_validate(document)
