"""Patient state as a pure fold over the subject's clinical events.

The grader needs, per subject, what enrolment said (site, sex, age, baseline creatinine, platinum
agent): reference ranges, the creatinine baseline criterion and per-drug decisions depend on it.
The state is never stored on its own; it is rebuilt from the event log at start-up.
"""

from dataclasses import dataclass, replace
from datetime import date

from shared.events import Envelope, Platinum, Sex, SubjectEnrolled


@dataclass(frozen=True, slots=True)
class PatientState:
    subject_id: str
    site_id: str | None = None
    sex: Sex | None = None
    age_at_enrolment: int | None = None
    enrolled_on: date | None = None
    baseline_creatinine_umol_l: float | None = None
    platinum: Platinum | None = None
    liver_metastases: bool | None = None

    def age_on(self, day: date) -> float | None:
        if self.age_at_enrolment is None or self.enrolled_on is None:
            return None
        return self.age_at_enrolment + max(0, (day - self.enrolled_on).days) / 365.25


def apply(state: PatientState | None, event: Envelope) -> PatientState:
    """The state after `event`. Events that do not change it return it unchanged."""
    current = state or PatientState(subject_id=event.subject_id)
    if isinstance(event, SubjectEnrolled):
        p = event.payload
        return replace(
            current,
            site_id=event.site_id,
            sex=p.sex,
            age_at_enrolment=p.age_years,
            enrolled_on=p.enrolled_on,
            baseline_creatinine_umol_l=p.baseline_creatinine_umol_l,
            platinum=p.platinum,
            liver_metastases=p.liver_metastases,
        )
    return current


class PatientStates:
    """Every subject's state, folded event by event."""

    def __init__(self) -> None:
        self._states: dict[str, PatientState] = {}

    def apply(self, event: Envelope) -> PatientState:
        state = apply(self._states.get(event.subject_id), event)
        self._states[event.subject_id] = state
        return state

    def get(self, subject_id: str) -> PatientState:
        return self._states.get(subject_id) or PatientState(subject_id=subject_id)

    def __len__(self) -> int:
        return len(self._states)
