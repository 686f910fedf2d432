"""Publishing what an adapter converted: every request through the same Publisher as the JSON
API. A unit (an HL7 message, a FHIR resource or transaction, a batch entry, an SDTM row) is
published whole or not at all; units stand alone, so one bad row does not hold back the rest."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.ingest.interop.common import Conversion, Problem
from services.ingest.publisher import Publisher
from shared.events import Envelope


@dataclass
class Outcome:
    """What became of a set of units: the events published, and per refused unit its problems;
    `skipped` lists what was deliberately left out (tests the study does not monitor)."""

    events: list[Envelope] = field(default_factory=list)
    refused: dict[int, list[Problem]] = field(default_factory=dict)
    skipped: dict[int, list[Problem]] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        return [problem for problems in self.refused.values() for problem in problems]


def _refusals(publisher: Publisher, conversion: Conversion) -> tuple[list[Envelope], list[Problem]]:
    events, problems = [], list(conversion.problems)
    for where, request in conversion.requests:
        event, refusals = publisher.events_of(request)
        for refusal in refusals:
            path = ".".join(str(part) for part in refusal.location)
            problems.append(Problem(f"{where} ({path})" if path else where, refusal.reason))
        if event is not None:
            events.append(event)
    return events, problems


def accept(publisher: Publisher, units: Sequence[tuple[int, Conversion]]) -> Outcome:
    """The events of every unit without a problem; the problems of the others."""
    outcome = Outcome()
    for key, conversion in units:
        events, problems = _refusals(publisher, conversion)
        if conversion.skipped:
            outcome.skipped[key] = conversion.skipped
        if problems:
            outcome.refused[key] = problems
        else:
            outcome.events += events
    return outcome


async def accept_and_publish(
    publisher: Publisher, units: Sequence[tuple[int, Conversion]], endpoint: str
) -> Outcome:
    """`accept`, then publish the accepted events (raises EventLogUnavailable if Kafka does
    not acknowledge them: then nothing is promised and the sender resends)."""
    outcome = accept(publisher, units)
    if outcome.events:
        await publisher.publish(outcome.events, endpoint)
    return outcome
