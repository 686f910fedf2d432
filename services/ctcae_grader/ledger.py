"""A subject's clinical events and what they currently imply, kept so that a correction or a
retraction can re-evaluate the subject from scratch. Pure: no I/O.

A corrected event keeps its place and id with the corrected payload; a retracted one is dropped.
The subject is then replayed through the protocol from an empty state: outputs that no longer
follow are retracted with an event saying why, new ones are published, and ones that still hold
keep their ids and are left alone (a decision or alert id comes from its cause and rule; a grade's
id also from the graded value, so a corrected value's grade is a new event).
"""

from dataclasses import dataclass, field
from uuid import UUID

from pydantic import ValidationError

from services.ctcae_grader.domain import Assessment, step
from services.ctcae_grader.state import PatientState
from shared.events import (
    AlertRaised,
    Envelope,
    EventCorrected,
    EventRetracted,
    EventRetractedPayload,
    Source,
    derive_id,
)
from shared.protocol import Protocol
from shared.reference_ranges import ReferenceRangeTable


class RevisionRefused(LookupError):
    """A correction or retraction that cannot be applied (no such event, or a payload that
    does not fit it); the message says which."""


@dataclass
class Outputs:
    assessments: list[Envelope] = field(default_factory=list)  # grades, decisions, signals
    alerts: list[Envelope] = field(default_factory=list)  # AlertRaised, or their retractions


@dataclass
class SubjectLedger:
    events: list[Envelope] = field(default_factory=list)  # effective clinical events, in order
    state: PatientState | None = None
    live: dict[UUID, Envelope] = field(default_factory=dict)  # outputs that currently hold
    # Every event id applied, revisions included: the log is at-least-once (a client resends
    # what got no answer, though Kafka may have written it), so a second copy changes nothing.
    applied: set[UUID] = field(default_factory=set)

    def clone(self) -> "SubjectLedger":
        """A copy to work on: kept only once its outputs are durable."""
        return SubjectLedger(list(self.events), self.state, dict(self.live), set(self.applied))

    def record(
        self, protocol: Protocol, event: Envelope, ranges: ReferenceRangeTable | None
    ) -> Outputs:
        """A new clinical fact: applied on top of the current state, once."""
        if event.event_id in self.applied:
            return Outputs()
        outputs = self._apply(protocol, event, ranges)
        self.applied.add(event.event_id)  # after: a refused revision may come again, refused again
        return outputs

    def _apply(
        self, protocol: Protocol, event: Envelope, ranges: ReferenceRangeTable | None
    ) -> Outputs:
        if isinstance(event, EventCorrected | EventRetracted):
            return self.revise(protocol, event, ranges)
        self.state, assessment = step(protocol, self.state, event, ranges)
        self.events.append(event)
        return self._remember(assessment)

    def revise(
        self,
        protocol: Protocol,
        revision: EventCorrected | EventRetracted,
        ranges: ReferenceRangeTable | None,
    ) -> Outputs:
        events = revised_events(self.events, revision)
        state, now = replay(protocol, events, ranges)
        gone = [old for old_id, old in self.live.items() if old_id not in now]
        new = [output for output_id, output in now.items() if output_id not in self.live]
        self.events, self.state, self.live = events, state, now
        outputs = Outputs()
        for output, published in [
            *((n, n) for n in new),
            *((g, retraction(revision, g)) for g in gone),
        ]:
            # An alert's retraction goes where the alert went, for the alert service to close it.
            (outputs.alerts if isinstance(output, AlertRaised) else outputs.assessments).append(
                published
            )
        return outputs

    def _remember(self, assessment: Assessment) -> Outputs:
        for output in [*assessment.assessments, *assessment.alerts]:
            self.live[output.event_id] = output
        return Outputs(list(assessment.assessments), list(assessment.alerts))


def revised_events(
    events: list[Envelope], revision: EventCorrected | EventRetracted
) -> list[Envelope]:
    target = (
        revision.payload.corrected_event_id
        if isinstance(revision, EventCorrected)
        else revision.payload.retracted_event_id
    )
    index = next((i for i, e in enumerate(events) if e.event_id == target), None)
    if index is None:
        raise RevisionRefused(f"{revision.event_type} of {target}: no such event for this subject")
    if isinstance(revision, EventRetracted):
        return events[:index] + events[index + 1 :]
    old = events[index]
    try:
        corrected = type(old).model_validate(
            old.model_dump() | {"payload": revision.payload.corrected_payload.model_dump()}
        )
    except ValidationError as error:
        raise RevisionRefused(
            f"the corrected payload does not fit {old.event_type} {target}: {error}"
        ) from None
    return [*events[:index], corrected, *events[index + 1 :]]


def replay(
    protocol: Protocol, events: list[Envelope], ranges: ReferenceRangeTable | None
) -> tuple[PatientState | None, dict[UUID, Envelope]]:
    state, outputs = None, {}
    for event in events:
        state, assessment = step(protocol, state, event, ranges)
        for output in [*assessment.assessments, *assessment.alerts]:
            outputs[output.event_id] = output
    return state, outputs


def retraction(revision: EventCorrected | EventRetracted, output: Envelope) -> EventRetracted:
    """An output that no longer follows from the subject's events, retracted with the reason."""
    p = revision.payload
    target = p.corrected_event_id if isinstance(revision, EventCorrected) else p.retracted_event_id
    what = f"{revision.event_type} of {target}"
    return EventRetracted(
        event_id=derive_id("retracted", str(output.event_id), str(revision.event_id)),
        study_id=output.study_id,
        site_id=output.site_id,
        subject_id=output.subject_id,
        occurred_at=revision.occurred_at,
        recorded_at=revision.recorded_at,
        causation_id=revision.event_id,
        correlation_id=output.correlation_id,
        source=Source(system="safetymon", message_id=str(revision.event_id)),
        payload=EventRetractedPayload(
            retracted_event_id=output.event_id,
            reason=f"{output.event_type} no longer holds after {what}: {p.reason}",
        ),
    )
