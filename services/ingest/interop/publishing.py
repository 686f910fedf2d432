"""Publishing what an adapter converted: every request through the same Publisher as the JSON
API. A unit (an HL7 message, a FHIR resource or transaction, a batch entry, an SDTM row) is
published whole or not at all; units stand alone, so one bad row does not hold back the rest."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.ingest.interop.common import Conversion, Problem
from services.ingest.publisher import FORBIDDEN, Publisher
from services.ingest.senders import Sender
from shared.events import Envelope


@dataclass
class Outcome:
    """What became of a set of units: the events published, and per refused unit its problems;
    `skipped` lists what was deliberately left out (tests the study does not monitor);
    `forbidden` the refused units with an event for a site the sender may not submit for (also
    in `refused`, with only those problems)."""

    events: list[Envelope] = field(default_factory=list)
    refused: dict[int, list[Problem]] = field(default_factory=dict)
    skipped: dict[int, list[Problem]] = field(default_factory=dict)
    forbidden: dict[int, list[Problem]] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        return [problem for problems in self.refused.values() for problem in problems]


def _refusals(
    publisher: Publisher, conversion: Conversion, sender: Sender
) -> tuple[list[Envelope], list[Problem], bool]:
    """The unit's events and problems, and whether it is forbidden to the sender (then its
    problems are only that: nothing is said about the content of another site's data)."""
    events, problems, forbidden = [], list(conversion.problems), []
    for where, request in conversion.requests:
        event, refusals = publisher.events_of(request, sender)
        for refusal in refusals:
            path = ".".join(str(part) for part in refusal.location)
            problem = Problem(f"{where} ({path})" if path else where, refusal.reason)
            (forbidden if refusal.kind == FORBIDDEN else problems).append(problem)
        if event is not None:
            events.append(event)
    if forbidden:
        return [], forbidden, True
    return events, problems, False


def accept(
    publisher: Publisher, units: Sequence[tuple[int, Conversion]], sender: Sender
) -> Outcome:
    """The events of every unit without a problem; the problems of the others."""
    outcome = Outcome()
    for key, conversion in units:
        events, problems, forbidden = _refusals(publisher, conversion, sender)
        if conversion.skipped and not forbidden:
            outcome.skipped[key] = conversion.skipped
        if forbidden:
            outcome.forbidden[key] = problems
        if problems:
            outcome.refused[key] = problems
        else:
            outcome.events += events
    return outcome


async def accept_and_publish(
    publisher: Publisher,
    units: Sequence[tuple[int, Conversion]],
    endpoint: str,
    sender: Sender,
    *,
    forbidden_refuses_all: bool = False,
) -> Outcome:
    """`accept`, then publish the accepted events (raises EventLogUnavailable if Kafka does
    not acknowledge them: then nothing is promised and the sender resends). With
    `forbidden_refuses_all`, one unit for a site the sender may not submit for refuses the
    whole request: nothing is published."""
    outcome = accept(publisher, units, sender)
    if outcome.forbidden and forbidden_refuses_all:
        return outcome
    if outcome.events:
        await publisher.publish(outcome.events, endpoint, sender)
    return outcome
