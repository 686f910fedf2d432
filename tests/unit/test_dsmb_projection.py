"""What each event states in the DSMB read models (services.dsmb.projection.rows_of): pure, one
event in, rows out; checked on the hand-checked scenario's events and what the grader derives."""

import uuid
from collections.abc import Iterator

import pytest

from services.dsmb import readmodels as rm
from services.dsmb.projection import rows_of
from shared.ae_dictionary import load_ae_dictionary
from shared.events import (
    AdverseEventReported,
    DoseDecisionMade,
    Envelope,
    EventCorrected,
    EventCorrectedPayload,
    LabGraded,
    LabResultReported,
)
from tests.integration.dsmb_scenario import (
    S1,
    clinical_after_cutoff,
    clinical_before_cutoff,
    derived_clock,
    grade_all,
)

DICTIONARY = load_ae_dictionary()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Envelope]]:
    with derived_clock(monkeypatch) as clock:
        yield grade_all(clinical_before_cutoff(), {}, clock)


def only(events: list[Envelope], kind: type, **where: object) -> Envelope:
    matches = [
        e
        for e in events
        if isinstance(e, kind) and all(getattr(e.payload, k) == v for k, v in where.items())
    ]
    assert len(matches) == 1, f"{len(matches)} {kind.__name__} matching {where}"
    return matches[0]


def test_an_adverse_event_is_a_fact_with_nci_spelling_and_soc(events: list[Envelope]) -> None:
    colitis = only(events, AdverseEventReported, term="Colitis")
    [(table, row)] = rows_of(colitis, DICTIONARY)
    assert table is rm.adverse_events
    assert row["version_id"] == row["fact_id"] == colitis.event_id
    assert row["soc"] == "Gastrointestinal disorders"
    assert (row["grade"], row["serious"], row["immune_related"]) == (4, True, True)
    assert row["related_drugs"] == "toripalimab"
    assert row["recorded_at"] == colitis.recorded_at


def test_a_correction_is_a_new_version_of_the_fact_it_corrects(events: list[Envelope]) -> None:
    original = only(events, AdverseEventReported, term="Pneumonitis")
    correction = clinical_after_cutoff(events)[0]
    [(table, row)] = rows_of(correction, DICTIONARY)
    assert table is rm.adverse_events
    assert row["fact_id"] == original.event_id
    assert row["version_id"] == correction.event_id
    assert row["grade"] == 3
    assert row["recorded_at"] == correction.recorded_at


def test_a_retraction_names_the_event_it_withdraws(events: list[Envelope]) -> None:
    retraction = clinical_after_cutoff(events)[1]
    [(table, row)] = rows_of(retraction, DICTIONARY)
    assert table is rm.retractions
    assert row["retracted_event_id"] == retraction.payload.retracted_event_id
    assert row["reason"] == "sample haemolysed"


def test_a_lab_result_reaches_the_read_models_as_its_grades(events: list[Envelope]) -> None:
    labs = [e for e in events if isinstance(e, LabResultReported)]
    assert labs and all(rows_of(lab, DICTIONARY) == [] for lab in labs)
    c2_anc = next(e for e in labs if e.source.message_id == "anc-c2")
    grades = [e for e in events if isinstance(e, LabGraded) and e.causation_id == c2_anc.event_id]
    [(table, row)] = rows_of(grades[0], DICTIONARY)
    assert table is rm.lab_grades
    assert row["lab_event_id"] == c2_anc.event_id
    assert (row["term"], row["grade"]) == ("Neutrophil count decreased", 3)
    assert row["collected_at"] == c2_anc.occurred_at
    assert row["value_si"] == pytest.approx(0.9)


def test_a_lab_correction_states_no_row_itself(events: list[Envelope]) -> None:
    lab = next(e for e in events if isinstance(e, LabResultReported))
    correction = EventCorrected(
        event_id=uuid.uuid4(),
        study_id=lab.study_id,
        site_id=lab.site_id,
        subject_id=lab.subject_id,
        occurred_at=lab.occurred_at,
        recorded_at=lab.recorded_at,
        source=lab.source,
        payload=EventCorrectedPayload(
            corrected_event_id=lab.event_id, reason="typo", corrected_payload=lab.payload
        ),
    )
    assert rows_of(correction, DICTIONARY) == []


def test_a_decision_gives_one_row_per_drug_tied_to_its_cause(events: list[Envelope]) -> None:
    hold = only(events, DoseDecisionMade, rule_id="D1-ANC-HOLD")
    rows = rows_of(hold, DICTIONARY)
    assert {table for table, _ in rows} == {rm.dose_decisions}
    assert sorted(row["part"] for _, row in rows) == ["cisplatin", "nab-paclitaxel"]
    assert {row["version_id"] for _, row in rows} == {hold.event_id}
    assert {row["cause_id"] for _, row in rows} == {hold.causation_id}
    assert {row["action"] for _, row in rows} == {"hold"}
    assert {row["subject_id"] for _, row in rows} == {S1}


def test_projection_is_deterministic_so_replaying_an_event_is_idempotent(
    events: list[Envelope],
) -> None:
    for event in events:
        assert rows_of(event, DICTIONARY) == rows_of(event, DICTIONARY)
    tables = {table.name for event in events for table, _ in rows_of(event, DICTIONARY)}
    assert tables == {
        "dsmb_subjects",
        "dsmb_doses",
        "dsmb_adverse_events",
        "dsmb_lab_grades",
        "dsmb_dose_decisions",
        "dsmb_alerts",
    }
