"""Patient state: a pure fold over the subject's events.

What enrolment said (site, sex, age, body size, baseline creatinine, liver metastases, platinum
agent), where the subject is in treatment (cycle and day from dose administrations), the latest
result and grade of every lab, the latest report of every adverse event, and what the protocol
rules have put in force: rules active, holds and dose level per drug, discontinued drugs, delays.
Nothing here is durable: it is rebuilt from the event log at start-up, and the same events
always give the same state. A state pickles compactly (`pickle.dumps(state)`): the subject ledger
keeps the states of subjects not in use pickled, in its scratch file
(services/ctcae_grader/ledger.py).
"""

from collections.abc import Container, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, tzinfo
from functools import cache
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from shared.events import (
    AdverseEventReported,
    DoseAdministered,
    Drug,
    Envelope,
    LabResultReported,
    Platinum,
    Sex,
    SubjectEnrolled,
    Visit,
)
from shared.labs import LabTest

LAB_HISTORY = 20  # results kept per test: enough for "below a limit for more than 7 days"


_EMPTY: Mapping[Any, Any] = MappingProxyType({})


def _empty() -> Mapping[Any, Any]:
    return _EMPTY  # one for every state: a fresh state holds no mapping of its own


@cache
def _visit(cycle: int, day: int) -> Visit:
    """One Visit object per visit: results of the same visit share it (Visit is frozen)."""
    return Visit(cycle=cycle, day=day)


def _with(mapping: Mapping, key: object, value: object) -> Mapping:
    return MappingProxyType({**mapping, key: value})


def _without(mapping: Mapping, key: object) -> Mapping:
    return MappingProxyType({k: v for k, v in mapping.items() if k != key})


@dataclass(frozen=True, slots=True)
class LatestLab:
    value: float
    unit: str
    lln: float | None
    uln: float | None
    comparator: str | None
    visit: Visit | None
    collected_at: datetime
    event_id: str

    def __reduce__(self) -> tuple[Any, ...]:
        # Numbers pickle fastest: the visit as two (a pickled pydantic model is ten times the
        # size), the time as microseconds of its wall clock and the number of its zone in this
        # process (pickling a datetime, and more so its zone, takes longer than all the rest).
        visit = None if self.visit is None else (self.visit.cycle, self.visit.day)
        at = self.collected_at
        # (The second of two same wall times, at the end of summer time, goes as it is.)
        wall = at if at.fold else (at.replace(tzinfo=None) - _EPOCH) // _MICROSECOND
        values = (self.value, self.unit, self.lln, self.uln, self.comparator, visit)
        return _latest_lab, (*values, wall, _zone(at.tzinfo), self.event_id)


@dataclass(frozen=True, slots=True)
class LatestAe:
    grade: int
    immune_related: bool
    serious: bool
    onset: date
    event_id: str


@dataclass(frozen=True, slots=True)
class PatientState:
    subject_id: str
    site_id: str | None = None
    sex: Sex | None = None
    age_at_enrolment: int | None = None
    enrolled_on: date | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    baseline_creatinine_umol_l: float | None = None
    platinum: Platinum | None = None
    liver_metastases: bool | None = None
    # treatment
    cycle: int = 0  # the latest cycle with a day-1 dose
    cycle_started_on: date | None = None
    delays: int = 0  # day-1 doses given later than the planned cycle length
    # results
    labs: Mapping[LabTest, LatestLab] = field(default_factory=_empty)
    # The latest results of the tests kept with a history (apply's `histories`), oldest first.
    lab_history: Mapping[LabTest, tuple[LatestLab, ...]] = field(default_factory=_empty)
    lab_grades: Mapping[str, int | None] = field(default_factory=_empty)  # CTCAE lab term -> grade
    # Lab terms currently at grade >= 3, with the grade already alerted (one alert per episode).
    severe_grades: Mapping[str, int] = field(default_factory=_empty)
    adverse_events: Mapping[str, LatestAe] = field(
        default_factory=_empty
    )  # AE term -> latest report
    # Immune-related events: (term, onset) -> worst grade reported. A follow-up report of the same
    # event (same term and onset) updates it; it is not a recurrence.
    irae_events: Mapping[tuple[str, date], int] = field(default_factory=_empty)
    # protocol decisions in force
    active_rules: Mapping[str, int] = field(default_factory=_empty)  # rule id -> cycle it fired in
    active_since: Mapping[str, datetime] = field(default_factory=_empty)  # rule id -> when
    fired_visits: Mapping[str, int] = field(default_factory=_empty)  # rule id -> sample's cycle
    holds: Mapping[Drug, frozenset[str]] = field(default_factory=_empty)  # drug -> rules holding it
    dose_levels: Mapping[Drug, int] = field(default_factory=_empty)  # drug -> level (0 = full dose)
    discontinued: frozenset[Drug] = frozenset()
    # Rules resumed by the latest event: evaluated at the next event whatever it is (their
    # condition may still hold; the engine otherwise skips a rule no input of which changed).
    recheck: frozenset[str] = frozenset()

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle: the mappings go as dicts, and come back read-only.
        values = _state_values(self)
        return _patient_state, tuple([dict(v) if type(v) is _PROXY else v for v in values])

    def changed(self, **changes: Any) -> "PatientState":
        """A copy with `changes` (dataclasses.replace does the same at twice the cost, and the
        grader makes a few copies per event)."""
        values = list(_state_values(self))
        for name, value in changes.items():
            values[_FIELD_INDEX[name]] = value
        return PatientState(*values)

    def age_on(self, day: date) -> float | None:
        if self.age_at_enrolment is None or self.enrolled_on is None:
            return None
        return self.age_at_enrolment + max(0, (day - self.enrolled_on).days) / 365.25

    def platinum_drug(self) -> Drug | None:
        return None if self.platinum is None else Drug(self.platinum.value)

    def dose_level(self, drug: Drug) -> int:
        return self.dose_levels.get(drug, 0)

    def is_held(self, drug: Drug) -> bool:
        return bool(self.holds.get(drug))

    # --- what the protocol rules change (used by the rules engine) -----------------------------

    def activated(self, rule_id: str, at: datetime, visit_cycle: int = 0) -> "PatientState":
        return self.changed(
            active_rules=_with(self.active_rules, rule_id, self.cycle),
            active_since=_with(self.active_since, rule_id, at),
            fired_visits=_with(self.fired_visits, rule_id, visit_cycle),
        )

    def deactivated(self, rule_id: str) -> "PatientState":
        return self.changed(
            active_rules=_without(self.active_rules, rule_id),
            active_since=_without(self.active_since, rule_id),
            fired_visits=_without(self.fired_visits, rule_id),
        )

    def held(self, drug: Drug, rule_id: str) -> "PatientState":
        rules = self.holds.get(drug, frozenset()) | {rule_id}
        return self.changed(holds=_with(self.holds, drug, rules))

    def released(self, drug: Drug, rule_id: str) -> "PatientState":
        rules = self.holds.get(drug, frozenset()) - {rule_id}
        holds = _with(self.holds, drug, rules) if rules else _without(self.holds, drug)
        return self.changed(holds=holds)

    def at_level(self, drug: Drug, level: int) -> "PatientState":
        return self.changed(dose_levels=_with(self.dose_levels, drug, level))

    def stopped(self, drug: Drug) -> "PatientState":
        return self.changed(
            discontinued=self.discontinued | {drug}, holds=_without(self.holds, drug)
        )

    def newly_severe(self, term: str, grade: int) -> bool:
        return grade > self.severe_grades.get(term, 0)

    def with_severe_grades(self, grades: Mapping[str, int]) -> "PatientState":
        """Start, worsen or end each term's grade >= 3 episode."""
        current = self.severe_grades
        if not current and all(grade < 3 for grade in grades.values()):
            return self  # the usual case: nothing severe before or now
        severe = dict(current)
        for term, grade in grades.items():
            if grade >= 3:
                severe[term] = max(grade, severe.get(term, 0))
            else:
                severe.pop(term, None)
        return self if severe == current else self.changed(severe_grades=MappingProxyType(severe))

    def rechecking(self, rule_ids: frozenset[str]) -> "PatientState":
        return self if rule_ids == self.recheck else self.changed(recheck=rule_ids)

    def with_grades(self, grades: Mapping[str, int | None]) -> "PatientState":
        current = self.lab_grades
        if all(term in current and current[term] == grade for term, grade in grades.items()):
            return self
        return self.changed(lab_grades=MappingProxyType({**current, **grades}))


_PROXY = MappingProxyType
_state_values = attrgetter(*(f.name for f in fields(PatientState)))
_FIELD_INDEX = {f.name: i for i, f in enumerate(fields(PatientState))}


_EPOCH, _MICROSECOND = datetime(1970, 1, 1), timedelta(microseconds=1)
_ZONES: list[tzinfo | None] = []  # the zones of pickled results, each numbered once
_ZONE_NUMBERS: dict[tzinfo | None, int] = {}  # (zones are equal by their offset, or name)


def _zone(zone: tzinfo | None) -> int:
    number = _ZONE_NUMBERS.get(zone)
    if number is None:
        number = _ZONE_NUMBERS[zone] = len(_ZONES)
        _ZONES.append(zone)
    return number


def _latest_lab(
    value: float,
    unit: str,
    lln: float | None,
    uln: float | None,
    comparator: str | None,
    visit: tuple[int, int] | None,
    wall: int | datetime,
    zone: int,
    event_id: str,
) -> LatestLab:
    shared = None if visit is None else _visit(*visit)
    at = wall
    if not isinstance(at, datetime):
        at = (_EPOCH + timedelta(microseconds=at)).replace(tzinfo=_ZONES[zone])
    return LatestLab(value, unit, lln, uln, comparator, shared, at, event_id)


def _patient_state(*values: Any) -> PatientState:
    return PatientState(*[_PROXY(v) if type(v) is dict else v for v in values])


def apply(
    state: PatientState | None,
    event: Envelope,
    cycle_length_days: int = 21,
    histories: Container[LabTest] | None = None,
    references: tuple[float | None, float | None] | None = None,
) -> PatientState:
    """The state after the clinical fact `event` (rule outcomes are applied by the engine).
    `histories`: the tests whose earlier results are kept (in `lab_history`), every test when
    None. `references`: the (LLN, ULN) a lab result is read against, the ones sent with it
    when None (the grader passes the configured table's for a result sent without)."""
    current = state or PatientState(subject_id=event.subject_id)
    if isinstance(event, SubjectEnrolled):
        return _enrolled(current, event)
    if isinstance(event, DoseAdministered):
        return _dosed(current, event, cycle_length_days)
    if isinstance(event, LabResultReported):
        kept = histories is None or event.payload.test in histories
        return _lab(current, event, kept, references)
    if isinstance(event, AdverseEventReported):
        return _adverse_event(current, event)
    return current


def _enrolled(state: PatientState, event: SubjectEnrolled) -> PatientState:
    p = event.payload
    return state.changed(
        site_id=event.site_id,
        sex=p.sex,
        age_at_enrolment=p.age_years,
        enrolled_on=p.enrolled_on,
        weight_kg=p.weight_kg,
        height_cm=p.height_cm,
        baseline_creatinine_umol_l=p.baseline_creatinine_umol_l,
        platinum=p.platinum,
        liver_metastases=p.liver_metastases,
    )


def _dosed(state: PatientState, event: DoseAdministered, cycle_length_days: int) -> PatientState:
    visit = event.payload.visit
    if visit.day != 1 or visit.cycle <= state.cycle:
        return state  # a day-8 dose, or another drug of a cycle already started
    given_on = event.payload.administered_at.date()
    delays = state.delays
    started = state.cycle_started_on
    if started is not None and (given_on - started).days > cycle_length_days:
        delays += 1
    return state.changed(cycle=visit.cycle, cycle_started_on=given_on, delays=delays)


def _lab(
    state: PatientState,
    event: LabResultReported,
    with_history: bool,
    references: tuple[float | None, float | None] | None,
) -> PatientState:
    p = event.payload
    lln, uln = (p.reported.lln, p.reported.uln) if references is None else references
    latest = LatestLab(
        value=p.reported.value,
        unit=p.reported.unit,
        lln=lln,
        uln=uln,
        comparator=p.comparator,
        visit=None if p.visit is None else _visit(p.visit.cycle, p.visit.day),
        collected_at=event.occurred_at,
        event_id=str(event.event_id),
    )
    if not with_history:
        return state.changed(labs=_with(state.labs, p.test, latest))
    history = (*state.lab_history.get(p.test, ())[-(LAB_HISTORY - 1) :], latest)
    return state.changed(
        labs=_with(state.labs, p.test, latest),
        lab_history=_with(state.lab_history, p.test, history),
    )


def _adverse_event(state: PatientState, event: AdverseEventReported) -> PatientState:
    p = event.payload
    latest = LatestAe(p.grade, p.immune_related, p.serious, p.onset_date, str(event.event_id))
    events = state.irae_events
    if p.immune_related:
        key = (p.term, p.onset_date)
        events = _with(events, key, max(p.grade, events.get(key, 0)))
    return state.changed(
        adverse_events=_with(state.adverse_events, p.term, latest), irae_events=events
    )


class PatientStates:
    """Every subject's state."""

    def __init__(self) -> None:
        self._states: dict[str, PatientState] = {}

    def get(self, subject_id: str) -> PatientState:
        return self._states.get(subject_id) or PatientState(subject_id=subject_id)

    def put(self, state: PatientState) -> None:
        self._states[state.subject_id] = state

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, subject_id: str) -> bool:
        return subject_id in self._states
