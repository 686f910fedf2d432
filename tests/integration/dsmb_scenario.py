"""A small hand-checked DSMB scenario: three subjects, what the grader derives from their events,
and a correction and a retraction recorded after the first cut-off.

Subjects (2026, cycle 21 days):
- GZ01-001 (cisplatin): baseline ANC 3.0 on 1 Mar; C1 on 2 Mar (toripalimab, nab-paclitaxel,
  cisplatin) and nab-paclitaxel C1D8 on 9 Mar; ANC 0.9 at C2D1 on 23 Mar (grade 3: D1-ANC-HOLD
  holds nab-paclitaxel and cisplatin); pneumonitis grade 2, immune-related, related to
  toripalimab, onset 25 Mar (IRAE-PNEUMONITIS-WITHHOLD holds toripalimab).
- GZ01-002 (carboplatin): C1 on 6 Mar, C1D8 on 13 Mar; colitis grade 4, immune-related, serious,
  related to toripalimab, onset 20 Mar (toripalimab discontinued by IRAE-COLITIS-DISCONTINUE and
  IRAE-ANY-G4-DISCONTINUE). Its first critical alert is acknowledged 30 minutes after it was raised.
- GZ01-003: enrolled, never dosed.
After the cut-off of 31 Mar: on 2 Apr the pneumonitis is corrected to grade 3 (toripalimab
discontinued instead of held); on 3 Apr the C2D1 ANC sample is retracted (rejected sample).
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from services.ctcae_grader.ledger import SubjectLedger
from services.ingest.domain import RetractionIn, retraction_event
from shared import events as events_module
from shared.events import (
    AdverseEventPayload,
    AlertAcknowledged,
    AlertAcknowledgedPayload,
    AlertRaised,
    Envelope,
    EventCorrected,
    EventCorrectedPayload,
    Source,
)
from shared.protocol import study_protocol
from shared.reference_ranges import load_reference_ranges
from tests.unit.factories import STUDY, ae, dose, enrolment, lab

S1, S2, S3 = "GZ01-001", "GZ01-002", "GZ01-003"
FIRST_CUTOFF = datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
SECOND_CUTOFF = datetime(2026, 4, 30, 23, 59, 59, 999999, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def recorded(event: Envelope, when: str) -> Envelope:
    return event.model_copy(update={"recorded_at": at(when)})


def pneumonitis(grade: int) -> AdverseEventPayload:
    return AdverseEventPayload(
        term="Pneumonitis",
        grade=grade,
        immune_related=True,
        related_drugs=("toripalimab",),
        onset_date="2026-03-25",
    )


def clinical_before_cutoff() -> list[Envelope]:
    """The sites' events recorded up to the first cut-off, in the order they were recorded."""
    anc = {"reference_low": 1.8, "reference_high": 6.3}
    return [
        recorded(enrolment(S1, enrolled_on="2026-03-01"), "2026-03-01T09:00:00+00:00"),
        recorded(
            enrolment(
                S2,
                enrolled_on="2026-03-05",
                sex="M",
                platinum="carboplatin",
                source_message_id="e2",
            ),
            "2026-03-05T09:00:00+00:00",
        ),
        recorded(
            enrolment(S3, enrolled_on="2026-03-20", source_message_id="e3"),
            "2026-03-20T09:00:00+00:00",
        ),
        recorded(
            lab(
                "ANC",
                3.0,
                subject_id=S1,
                cycle=1,
                day=1,
                source_message_id="anc-base",
                collected_at=at("2026-03-01T08:00:00+08:00"),
                **anc,
            ),
            "2026-03-01T10:00:00+00:00",
        ),
        *(
            recorded(dose(drug, 1, day, on, subject_id=subject), f"{on}T12:00:00+00:00")
            for subject, drugs, on, day in [
                (S1, ("toripalimab", "nab-paclitaxel", "cisplatin"), "2026-03-02", 1),
                (S1, ("nab-paclitaxel",), "2026-03-09", 8),
                (S2, ("toripalimab", "nab-paclitaxel", "carboplatin"), "2026-03-06", 1),
                (S2, ("nab-paclitaxel",), "2026-03-13", 8),
            ]
            for drug in drugs
        ),
        recorded(
            ae(
                subject_id=S2,
                term="Colitis",
                grade=4,
                immune_related=True,
                serious=True,
                related_drugs=["toripalimab"],
                onset_date="2026-03-20",
                site_aware_at=at("2026-03-20T09:00:00+00:00"),
                source_message_id="colitis",
            ),
            "2026-03-20T12:00:00+00:00",
        ),
        recorded(
            lab(
                "ANC",
                0.9,
                subject_id=S1,
                cycle=2,
                day=1,
                source_message_id="anc-c2",
                collected_at=at("2026-03-23T07:30:00+08:00"),
                **anc,
            ),
            "2026-03-23T06:00:00+00:00",
        ),
        recorded(
            ae(
                subject_id=S1,
                term="Pneumonitis",
                grade=2,
                immune_related=True,
                serious=False,
                related_drugs=["toripalimab"],
                onset_date="2026-03-25",
                site_aware_at=None,
                source_message_id="pneumonitis",
            ),
            "2026-03-26T08:00:00+00:00",
        ),
    ]


def clinical_after_cutoff(before: list[Envelope]) -> list[Envelope]:
    pneumonitis_id = next(e.event_id for e in before if e.source.message_id == "pneumonitis")
    anc_c2_id = next(e.event_id for e in before if e.source.message_id == "anc-c2")
    correction = EventCorrected(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, "correction-pneumonitis"),
        study_id=STUDY,
        site_id="GZ01",
        subject_id=S1,
        occurred_at=at("2026-04-02T08:00:00+00:00"),
        recorded_at=at("2026-04-02T08:00:00+00:00"),
        source=Source(system="edc", message_id="pneumonitis-v2"),
        payload=EventCorrectedPayload(
            corrected_event_id=pneumonitis_id,
            reason="CT reviewed: grade 3",
            corrected_payload=pneumonitis(3),
        ),
    )
    retraction = retraction_event(
        RetractionIn(
            subject_id=S1,
            site_id="GZ01",
            retracted_event_id=anc_c2_id,
            reason="sample haemolysed",
            source_message_id="anc-c2-retracted",
        ),
        STUDY,
    )
    return [correction, recorded(retraction, "2026-04-03T08:00:00+00:00")]


@contextmanager
def derived_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """Derived events are stamped with the clock: set `clock[0]` before each step."""
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    monkeypatch.setattr(events_module, "utc_now", lambda: clock[0])
    yield clock


def grade_all(
    clinical: list[Envelope], ledgers: dict[str, SubjectLedger], clock: list[datetime]
) -> list[Envelope]:
    """The clinical events and everything the grader derives from them, each derived event
    recorded one second after its cause."""
    protocol, ranges = study_protocol(STUDY), load_reference_ranges(None)
    out: list[Envelope] = []
    for event in clinical:
        clock[0] = event.recorded_at + timedelta(seconds=1)
        outputs = ledgers.setdefault(event.subject_id, SubjectLedger()).record(
            protocol, event, ranges
        )
        out += [event, *outputs.assessments, *outputs.alerts]
    return out


def acknowledgement(alert: AlertRaised, minutes: float) -> AlertAcknowledged:
    return AlertAcknowledged(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"ack-{alert.payload.alert_id}"),
        study_id=alert.study_id,
        site_id=alert.site_id,
        subject_id=alert.subject_id,
        occurred_at=alert.recorded_at + timedelta(minutes=minutes),
        recorded_at=alert.recorded_at + timedelta(minutes=minutes),
        source=Source(system="safety-desk", message_id=f"ack-{alert.payload.alert_id}"),
        payload=AlertAcknowledgedPayload(
            alert_id=alert.payload.alert_id, acknowledged_by="safety-physician-01"
        ),
    )
