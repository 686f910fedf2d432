"""A subject's timeline for the safety desk: labs with their grades, adverse events, doses, dose
decisions, signals and alerts, in clinical-time order. Pure: built from events and alert rows."""

from datetime import datetime
from typing import Any

from shared.events import (
    AdverseEventReported,
    DoseAdministered,
    DoseDecisionMade,
    Envelope,
    EventRetracted,
    LabGraded,
    LabResultReported,
    SafetySignalDetected,
)
from shared.labs import display_result


def timeline(events: list[Envelope], alerts: list[dict]) -> list[dict[str, Any]]:
    """Every item once, oldest first; retracted items are marked, not hidden."""
    events = list({event.event_id: event for event in events}.values())  # a redelivery is one
    retracted = {e.payload.retracted_event_id for e in events if isinstance(e, EventRetracted)}
    grades: dict[str, list[str]] = {}
    for event in events:
        if isinstance(event, LabGraded) and event.payload.grade:
            grades.setdefault(str(event.payload.lab_event_id), []).append(
                f"{event.payload.term} grade {event.payload.grade}"
            )
    items = [_item(event, grades) for event in events]
    items = [item | {"retracted": item["id"] in retracted} for item in items if item]
    items += [_alert_item(alert) for alert in alerts]
    return sorted(items, key=lambda item: (item["at"], item["kind"]))


def _item(event: Envelope, grades: dict[str, list[str]]) -> dict[str, Any] | None:
    base = {"id": event.event_id, "at": event.occurred_at}
    p = event.payload
    if isinstance(event, LabResultReported):
        shown = display_result(p.test, p.reported.value, p.reported.unit)
        what = f"{p.comparator or ''}{shown}" if p.comparator else shown
        return base | {
            "kind": "lab",
            "visit": p.visit.label if p.visit else None,
            "text": what,
            "grades": grades.get(str(event.event_id), []),
        }
    if isinstance(event, AdverseEventReported):
        flags = [
            name
            for name, on in (("serious", p.serious), ("immune-related", p.immune_related))
            if on
        ]
        text = f"{p.term} grade {p.grade}" + (f" ({', '.join(flags)})" if flags else "")
        return base | {"kind": "adverse event", "text": text}
    if isinstance(event, DoseAdministered):
        return base | {
            "kind": "dose",
            "visit": p.visit.label,
            "text": f"{p.drug} {p.dose:g} {p.dose_unit}",
        }
    if isinstance(event, DoseDecisionMade):
        return base | {"kind": "dose decision", "text": p.reason, "rule": p.rule_id}
    if isinstance(event, SafetySignalDetected):
        return base | {"kind": "signal", "text": p.reason, "signal": p.signal}
    return None


def _alert_item(alert: dict) -> dict[str, Any]:
    at: datetime = alert["occurred_at"]
    return {
        "id": alert["alert_id"],
        "at": at,
        "kind": "alert",
        "text": alert["title"],
        "severity": alert["severity"],
        "status": alert["status"],
        "retracted": False,
    }
