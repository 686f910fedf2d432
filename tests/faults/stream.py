"""The event stream of a fault test and what it must produce, computed without the services.

The stream is the demo cohort (services/demo/cohort.py: enrolment, day-1 and day-8 lab panels,
doses, adverse events, in the order the sites send them) with extra day-1 neutropenia and
thrombocytopenia written in for a seeded share of subject-cycles, so the alert service sees a
steady flow of alerts. The expected alerts come from the grader's pure core
(services/ctcae_grader/ledger.py) fed the same events in the same per-subject order: alert ids are
derived from the causing event and the rule, so the services must store exactly these ids. The
expected emails are the alert service's notification ids (the Message-ID of each email): one per
alert and recipient, and one escalation per alert whose reporting deadline has passed (the
cohort's dates are in the past and the fault tests set the other escalation limits out of reach).
"""

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.ctcae_grader.ledger import SubjectLedger
from services.demo import cohort as demo
from services.demo.cohort import STUDY, Submission, cohort_events
from shared.events import AlertRaised, Envelope, EventRetracted, derive_id
from shared.protocol import study_protocol
from shared.reference_ranges import load_reference_ranges

RECIPIENTS = ("safety-desk@example.org", "medical-monitor@example.org")
ESCALATION_RECIPIENTS = ("escalation@example.org",)


@dataclass(frozen=True)
class Group:
    """Consecutive submissions of one subject to one endpoint: one batch request."""

    subject_id: str
    endpoint: str
    bodies: tuple[dict, ...]
    event_ids: tuple[str, ...]


@dataclass(frozen=True)
class Expected:
    events: int
    event_ids: frozenset[str]
    alert_ids: frozenset[uuid.UUID]
    alert_rules: dict[uuid.UUID, str]
    # ids of the grades, dose decisions and signals the grader must publish
    assessment_ids: frozenset[str]
    # Message-ID of every email the alert service must send, with the alert it is about
    emails: dict[str, uuid.UUID]


def build_stream(seed: int, subjects: int, cycles: int, toxicity: float) -> list[Submission]:
    """The demo cohort of `subjects` over `cycles` cycles, with day-1 toxicity written in for
    about `toxicity` of the subject-cycles after the first; all of it fixed by `seed`."""
    rng = random.Random(seed)
    cohort = demo._subjects(subjects, rng)
    demo._write_in_cases(cohort)
    for subject in cohort:
        demo.write_in_toxicity(subject, cycles, toxicity, rng)
    submissions = [s for subject in cohort for s in demo._subject_history(subject, cycles, rng)]
    return sorted(submissions, key=lambda s: s.at)


def event_of(submission: Submission) -> Envelope:
    (event,) = cohort_events([submission])
    return event


def groups_of(stream: list[Submission]) -> list[Group]:
    """The stream as batch requests, in stream order (a subject's batches in its order)."""
    groups: list[Group] = []
    run: list[Submission] = []

    def close() -> None:
        if run:
            groups.append(
                Group(
                    run[0].body["subject_id"],
                    run[0].endpoint,
                    tuple(s.body for s in run),
                    tuple(str(event_of(s).event_id) for s in run),
                )
            )

    for submission in stream:
        if run and (
            submission.endpoint != run[0].endpoint
            or submission.body["subject_id"] != run[0].body["subject_id"]
        ):
            close()
            run = []
        run.append(submission)
    close()
    return groups


def notification_id(alert_id: uuid.UUID, state: str, to: str) -> str:
    """The alert service's id of a notification (services/alerts/store.py, _queue), which is
    also its email's Message-ID."""
    return str(derive_id("notification", str(alert_id), state, "email", to))


def expected_outcome(stream: list[Submission]) -> Expected:
    protocol = study_protocol(STUDY)
    ranges = load_reference_ranges(None)
    ledgers: dict[str, SubjectLedger] = {}
    raised: dict[uuid.UUID, AlertRaised] = {}
    retracted: set[uuid.UUID] = set()
    event_ids, assessment_ids = set(), set()
    for submission in stream:
        event = event_of(submission)
        event_ids.add(str(event.event_id))
        ledger = ledgers.setdefault(event.subject_id, SubjectLedger())
        outputs = ledger.record(protocol, event, ranges)
        assessment_ids.update(str(a.event_id) for a in outputs.assessments)
        for output in outputs.alerts:
            if isinstance(output, AlertRaised):
                raised[output.payload.alert_id] = output
            elif isinstance(output, EventRetracted):
                retracted.add(output.payload.retracted_event_id)
    assert not retracted, "the fault stream has no corrections: nothing should be retracted"
    now = datetime.now(UTC)
    emails: dict[str, uuid.UUID] = {}
    for alert_id, alert in raised.items():
        for to in RECIPIENTS:
            emails[notification_id(alert_id, "raised", to)] = alert_id
        if alert.payload.due_at is not None and alert.payload.due_at <= now:
            for to in ESCALATION_RECIPIENTS:
                emails[notification_id(alert_id, "escalated-1", to)] = alert_id
    return Expected(
        events=len(stream),
        event_ids=frozenset(event_ids),
        alert_ids=frozenset(raised),
        alert_rules={a: e.payload.rule_id for a, e in raised.items()},
        assessment_ids=frozenset(assessment_ids),
        emails=emails,
    )
