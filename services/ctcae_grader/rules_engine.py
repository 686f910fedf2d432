"""The protocol's dose rules applied to a subject's state. Pure: no I/O.

A rule fires when its condition becomes true (it was not already in force), so a repeated low
count raises nothing new: one open condition, one decision, one alert. A rule with `resume_when`
stays in force until that condition holds, then the drugs it held (and no other rule holds) are
resumed; a rule without it is re-armed as soon as its condition no longer holds. A discontinued
drug stays discontinued; a reduction below the last dose level discontinues.
"""

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from services.ctcae_grader.state import LatestLab, PatientState
from shared.dosing import calvert_dose_mg, cockcroft_gault
from shared.events import (
    AdverseEventReported,
    DoseAction,
    DoseAdministered,
    Drug,
    Envelope,
    LabResultReported,
)
from shared.labs import LabTest, convert
from shared.protocol import (
    AeCondition,
    AllOf,
    AnyOf,
    CarboplatinDoseCondition,
    ClearanceCondition,
    Condition,
    LabCondition,
    LabGradeCondition,
    NextCycle,
    Protocol,
    Rule,
    RuleInForceCondition,
    conditions_of,
)

_TOLERANCE = 1e-9  # float noise from a unit conversion must not move a value off a limit


@dataclass(frozen=True, slots=True)
class DrugChange:
    drug: Drug
    action: DoseAction
    from_level: int | None = None
    to_level: int | None = None


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """A rule that fired (or, with `resumed`, a rule whose resume condition was met)."""

    rule: Rule
    changes: tuple[DrugChange, ...]
    resumed: bool = False
    evidence: tuple[str, ...] = ()  # event ids the condition rests on
    signal: str | None = None  # a safety signal the rule detected


def apply_rules(
    protocol: Protocol, state: PatientState, event: Envelope
) -> tuple[PatientState, list[RuleOutcome]]:
    """Evaluate the rules against the state after `event`; return the new state and what fired.

    A rule in force is always evaluated (it may lift or resume). One not in force did not hold
    when last evaluated, so it can only start to hold if the event changed something its
    condition reads (`_triggers`); the others are skipped, which leaves the outcome unchanged
    and spares most of the work (a lab result concerns a few of the protocol's rules). A rule
    just resumed may still meet its condition, so it is evaluated at the next event regardless."""
    rules, resumed = _rules_to_evaluate(protocol, state, _changed_by(event)), set()
    outcomes = []
    for rule in rules:
        state, outcome = _apply_rule(protocol, state, rule, event)
        if outcome is not None:
            outcomes.append(outcome)
            if outcome.resumed:
                resumed.add(rule.id)
    return state.rechecking(frozenset(resumed)), outcomes


# A tuple, not `AnyOf | AllOf`: holds() is hot, and a union is built anew at each evaluation.
GROUPS = (AnyOf, AllOf)
ANY_EVENT = "any event"  # a condition that may change with time alone


def _changed_by(event: Envelope) -> frozenset[str] | None:
    """What of the state (state.apply) an event can change; None: anything (an enrolment)."""
    if isinstance(event, LabResultReported):
        return frozenset({ANY_EVENT, f"lab:{event.payload.test}", "grades"})
    if isinstance(event, AdverseEventReported):
        return frozenset({ANY_EVENT, "adverse events"})
    if isinstance(event, DoseAdministered):
        return frozenset({ANY_EVENT, "dose"})  # the cycle; the dose itself (carboplatin check)
    return None


def _rules_to_evaluate(
    protocol: Protocol, state: PatientState, changed: frozenset[str] | None
) -> list[Rule]:
    """The protocol's rules in force, to recheck, or triggered by what changed, in order (a
    rule's firing changes only its own standing, so this is fixed for the whole event)."""
    if changed is None:
        return list(protocol.rules)
    by_trigger = _trigger_index(protocol)[1]
    wanted = {rule_id for trigger in changed for rule_id in by_trigger.get(trigger, ())}
    wanted.update(state.active_rules, state.recheck)
    return [rule for rule in protocol.rules if rule.id in wanted] if wanted else []


_TRIGGER_INDEX: dict[int, tuple[Protocol, dict[str, tuple[str, ...]]]] = {}


def _trigger_index(protocol: Protocol) -> tuple[Protocol, dict[str, tuple[str, ...]]]:
    """Per trigger (see _changed_by), the ids of the rules whose condition reads it; cached per
    protocol object (by identity: hashing the protocol costs more than evaluating it)."""
    cached = _TRIGGER_INDEX.get(id(protocol))
    if cached is not None and cached[0] is protocol:
        return cached
    index: dict[str, list[str]] = {}
    for rule in protocol.rules:
        for trigger in set(_reads(rule.when)):
            index.setdefault(trigger, []).append(rule.id)
    entry = (protocol, {trigger: tuple(ids) for trigger, ids in index.items()})
    _TRIGGER_INDEX[id(protocol)] = entry
    return entry


def _reads(condition: Condition) -> Iterator[str]:
    if isinstance(condition, GROUPS):
        for part in condition.any if isinstance(condition, AnyOf) else condition.all:
            yield from _reads(part)
    elif isinstance(condition, LabCondition):
        yield f"lab:{condition.lab}"
    elif isinstance(condition, LabGradeCondition):
        yield "grades"
    elif isinstance(condition, AeCondition):
        yield "adverse events"
    elif isinstance(condition, ClearanceCondition):
        yield f"lab:{LabTest.CREATININE}"
    elif isinstance(condition, CarboplatinDoseCondition | NextCycle):
        yield "dose"
    else:  # rule in force for some time, or a kind of condition added later: always evaluated
        yield ANY_EVENT


def _apply_rule(
    protocol: Protocol, state: PatientState, rule: Rule, event: Envelope
) -> tuple[PatientState, RuleOutcome | None]:
    in_force = rule.id in state.active_rules
    holds_now = holds(rule.when, state, event, protocol=protocol)
    if not in_force:
        if not holds_now:
            return state, None
        return _fire(protocol, state, rule, event)
    if rule.resume_when is None:
        if not holds_now:
            return state.deactivated(rule.id), None
        fired_on = state.fired_visits.get(rule.id, 0)
        if (
            _per_visit(rule)
            and isinstance(event, LabResultReported)
            and (fired_on and _visit_cycle(event) > fired_on)
        ):
            # Met again on a sample of a later cycle: a new occurrence, not the same one.
            return _fire(protocol, state.deactivated(rule.id), rule, event)
        return state, None
    if holds(rule.resume_when, state, event, state.active_rules[rule.id], protocol, resume=True):
        return _resume(state, rule, event)
    return state, None


def _fire(
    protocol: Protocol, state: PatientState, rule: Rule, event: Envelope
) -> tuple[PatientState, RuleOutcome | None]:
    changes = []
    for drug, action in protocol.drugs_of(rule, state.platinum_drug()):
        if drug in state.discontinued or not _receives(protocol, state, drug):
            continue
        state, change = _change(protocol, state, rule, drug, action)
        if change is not None:
            changes.append(change)
    state = state.activated(rule.id, event.occurred_at, _visit_cycle(event))
    if not changes and rule.signal is None:
        return state, None
    proof = tuple(evidence(rule.when, state, event))
    return state, RuleOutcome(rule, tuple(changes), evidence=proof, signal=rule.signal)


def _per_visit(rule: Rule) -> bool:
    """A rule read from visit-day samples (day 8 of each cycle): each visit is an occurrence."""
    return any(
        isinstance(c, LabCondition) and c.visit_days is not None for c in conditions_of(rule)
    )


def _visit_cycle(event: Envelope) -> int:
    visit = getattr(event.payload, "visit", None)
    return visit.cycle if visit is not None else 0


def _receives(protocol: Protocol, state: PatientState, drug: Drug) -> bool:
    """False for the platinum agent the subject was not assigned (True while it is unknown)."""
    platinum = state.platinum_drug()
    return platinum is None or drug not in protocol.regimen.platinum or drug == platinum


def _change(
    protocol: Protocol, state: PatientState, rule: Rule, drug: Drug, action: DoseAction
) -> tuple[PatientState, DrugChange | None]:
    level = state.dose_level(drug)
    if action is DoseAction.HOLD:
        return state.held(drug, rule.id), DrugChange(drug, action, level, level)
    if action is DoseAction.DISCONTINUE:
        return state.stopped(drug), DrugChange(drug, action, level, None)
    if action is DoseAction.REDUCE:
        levels = protocol.regimen.drugs[drug].dose_levels
        if level + 1 >= len(levels):  # no lower level left
            return state.stopped(drug), DrugChange(drug, DoseAction.DISCONTINUE, level, None)
        return state.at_level(drug, level + 1), DrugChange(drug, action, level, level + 1)
    return state, None  # "resume" and "proceed" are outcomes, not rule actions


def _resume(state: PatientState, rule: Rule, event: Envelope) -> tuple[PatientState, RuleOutcome]:
    changes = []
    for drug, rules in list(state.holds.items()):
        if rule.id not in rules:
            continue
        state = state.released(drug, rule.id)
        if not state.is_held(drug) and drug not in state.discontinued:
            level = state.dose_level(drug)
            changes.append(DrugChange(drug, DoseAction.RESUME, level, level))
    state = state.deactivated(rule.id)
    assert rule.resume_when is not None
    proof = tuple(evidence(rule.resume_when, state, event))
    return state, RuleOutcome(rule, tuple(changes), resumed=True, evidence=proof)


# ---------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------


def holds(
    condition: Condition,
    state: PatientState,
    event: Envelope,
    fired_in: int = 0,
    protocol: Protocol | None = None,
    resume: bool = False,
) -> bool:
    """Whether `condition` holds. As a resume condition (`resume`), an adverse-event condition
    needs every reported term of its list within range, not just one of them."""
    if isinstance(condition, GROUPS):
        if not _liver_ok(condition.liver_metastases, state):
            return False
        parts = condition.any if isinstance(condition, AnyOf) else condition.all
        combine = any if isinstance(condition, AnyOf) else all
        return combine(holds(part, state, event, fired_in, protocol, resume) for part in parts)
    if isinstance(condition, LabCondition):
        lab = state.labs.get(condition.lab)
        if lab is None or not _liver_ok(condition.liver_metastases, state):
            return False
        if condition.for_more_than_days is not None:
            return _held_for(condition, state.lab_history.get(condition.lab, (lab,)))
        if (
            condition.visit_days is not None
            and lab.visit is not None
            and (lab.visit.cycle < state.cycle)
        ):
            return False  # a visit-day sample of a cycle already behind the subject
        return _lab_holds(condition, lab)
    if isinstance(condition, RuleInForceCondition):
        since = state.active_since.get(condition.rule_in_force)
        return since is not None and (event.occurred_at - since) > timedelta(
            days=condition.longer_than_days
        )
    if isinstance(condition, CarboplatinDoseCondition):
        return protocol is not None and _carboplatin_dose_off(condition, protocol, state, event)
    if isinstance(condition, LabGradeCondition):
        grade = state.lab_grades.get(condition.term)
        return grade is not None and condition.min_grade <= grade <= condition.max_grade
    if isinstance(condition, AeCondition):
        return _ae_holds(condition, state, event, every=resume)
    if isinstance(condition, NextCycle):
        return state.cycle > fired_in
    if isinstance(condition, ClearanceCondition):
        return _clearance_holds(condition, state)
    raise TypeError(f"unknown condition {condition!r}")


def _liver_ok(required: bool | None, state: PatientState) -> bool:
    # An unknown liver-metastasis status matches neither variant: never assumed.
    return required is None or state.liver_metastases is required


def _lab_holds(condition: LabCondition, lab: LatestLab) -> bool:
    if condition.visit_days is not None and (
        lab.visit is None or lab.visit.day not in condition.visit_days
    ):
        return False
    # A result reported as a bound ("<0.5") meets a limit only if every value it stands for does:
    # both ends of its range are tested.
    values = _range_of(lab.value, lab.comparator)
    for limit, beyond in _limits(condition, lab):
        if limit is None:
            return False  # the reference this limit needs (LLN/ULN) was not given
        if not all(beyond(value, limit) for value in values):
            return False
    return True


def _range_of(value: float, comparator: str | None) -> tuple[float, ...]:
    if comparator is None:
        return (value,)
    nudge = abs(value) * 1e-6 or 1e-9
    if comparator.startswith("<"):
        return (0.0, value if comparator == "<=" else value - nudge)
    return (value if comparator == ">=" else value + nudge, value * 1e6 + 1e6)


def _held_for(condition: LabCondition, history: tuple[LatestLab, ...]) -> bool:
    """The latest results all meet the limits, unbroken, over more than the given days."""
    run = []
    for lab in reversed(history):
        if not _lab_holds(condition, lab):
            break
        run.append(lab)
    if not run:
        return False
    span = run[0].collected_at - run[-1].collected_at
    return span > timedelta(days=condition.for_more_than_days or 0)


def calvert_expected_mg(protocol: Protocol, state: PatientState) -> float | None:
    """The carboplatin dose the subject should get at their dose level, None if unknown."""
    regimen = protocol.regimen.drugs.get(Drug.CARBOPLATIN)
    clearance = creatinine_clearance(state)
    if regimen is None or clearance is None:
        return None
    levels = regimen.dose_levels
    auc = levels[min(state.dose_level(Drug.CARBOPLATIN), len(levels) - 1)]
    return calvert_dose_mg(auc, clearance)


def _carboplatin_dose_off(
    condition: CarboplatinDoseCondition, protocol: Protocol, state: PatientState, event: Envelope
) -> bool:
    if not isinstance(event, DoseAdministered):
        return False
    p = event.payload
    if p.drug != Drug.CARBOPLATIN or p.dose_unit != "mg":
        return False
    expected = calvert_expected_mg(protocol, state)
    if expected is None:
        return False  # clearance unknown: the dose cannot be checked, nothing is assumed
    return abs(p.dose - expected) / expected > condition.carboplatin_dose_off_by_more_than


def below(value: float, limit: float) -> bool:
    return value < limit * (1 - _TOLERANCE)


def at_least(value: float, limit: float) -> bool:
    return value >= limit * (1 - _TOLERANCE)


def above(value: float, limit: float) -> bool:
    return value > limit * (1 + _TOLERANCE)


def at_most(value: float, limit: float) -> bool:
    return value <= limit * (1 + _TOLERANCE)


Comparison = Callable[[float, float], bool]


def _limits(condition: LabCondition, lab: LatestLab) -> Iterator[tuple[float | None, Comparison]]:
    def absolute(limit: float) -> float:
        assert condition.unit is not None
        return _converted(condition.lab, limit, condition.unit, lab.unit)

    def multiple(limit: float, reference: float | None) -> float | None:
        return None if reference is None else limit * reference

    c = condition
    if c.below is not None:
        yield absolute(c.below), below
    if c.at_least is not None:
        yield absolute(c.at_least), at_least
    if c.above is not None:
        yield absolute(c.above), above
    if c.at_most is not None:
        yield absolute(c.at_most), at_most
    if c.above_uln is not None:
        yield multiple(c.above_uln, lab.uln), above
    if c.at_least_uln is not None:
        yield multiple(c.at_least_uln, lab.uln), at_least
    if c.at_most_uln is not None:
        yield multiple(c.at_most_uln, lab.uln), at_most
    if c.below_uln is not None:
        yield multiple(c.below_uln, lab.uln), below
    if c.below_lln is not None:
        yield multiple(c.below_lln, lab.lln), below
    if c.at_least_lln is not None:
        yield multiple(c.at_least_lln, lab.lln), at_least


# A rule's limits in the units results come in: few combinations, converted once.
_converted = functools.lru_cache(maxsize=4096)(convert)


def creatinine_clearance(state: PatientState) -> float | None:
    """Cockcroft-Gault from the latest exact creatinine result, else the baseline; None when it
    cannot be computed (age, weight or sex unknown, or the latest result is only a bound)."""
    ends = clearance_range(state)
    return ends[0] if ends and len(ends) == 1 else None


def clearance_range(state: PatientState) -> tuple[float, ...]:
    """The clearance, or for a creatinine reported as a bound (">4.0") the clearances at both
    ends of the range it stands for; () when unknown."""
    latest = state.labs.get(LabTest.CREATININE)
    if latest is not None:
        values = _range_of(latest.value, latest.comparator)
        creatinine_mg_dl = [convert(LabTest.CREATININE, v, latest.unit, "mg/dL") for v in values]
        on = latest.collected_at.date()
    elif state.baseline_creatinine_umol_l is not None and state.enrolled_on is not None:
        baseline = state.baseline_creatinine_umol_l
        creatinine_mg_dl = [convert(LabTest.CREATININE, baseline, "umol/L", "mg/dL")]
        on = state.enrolled_on
    else:
        return ()
    age = state.age_on(on)
    if age is None or state.weight_kg is None or state.sex is None:
        return ()
    weight, sex = state.weight_kg, state.sex
    # A creatinine of 0 (the low end of "<x") stands for a clearance without bound.
    return tuple(
        cockcroft_gault(age, weight, c, sex) if c > 0 else float("inf") for c in creatinine_mg_dl
    )


def _clearance_holds(condition: ClearanceCondition, state: PatientState) -> bool:
    ends = clearance_range(state)
    if not ends:
        return False
    if condition.crcl_below is not None:
        return all(below(c, condition.crcl_below) for c in ends)
    return all(at_least(c, condition.crcl_at_least or 0) for c in ends)


def _ae_holds(
    condition: AeCondition, state: PatientState, event: Envelope, every: bool = False
) -> bool:
    if condition.occurrences_at_least is not None:
        return _recurrences(condition, state) >= condition.occurrences_at_least
    if condition.ae is None:  # any adverse event: the one just reported
        if not isinstance(event, AdverseEventReported):
            return False
        p = event.payload
        reports = [(p.grade, p.immune_related, p.serious)]
    else:
        reports = [
            (ae.grade, ae.immune_related, ae.serious)
            for term in condition.ae
            if (ae := state.adverse_events.get(term)) is not None
        ]
    matches = [
        condition.min_grade <= grade <= condition.max_grade
        and condition.immune_related in (None, immune)
        and condition.serious in (None, serious)
        for grade, immune, serious in reports
    ]
    return bool(matches) and (all(matches) if every else any(matches))


def _recurrences(condition: AeCondition, state: PatientState) -> int:
    """Distinct immune-related events (term and onset) of the listed terms within the grades."""
    terms = condition.ae
    return sum(
        1
        for (term, _onset), grade in state.irae_events.items()
        if (terms is None or term in terms) and condition.min_grade <= grade <= condition.max_grade
    )


def evidence(condition: Condition, state: PatientState, event: Envelope) -> Iterator[str]:
    """The ids of the events a condition rests on (the labs and AEs it read)."""
    if isinstance(condition, GROUPS):
        parts = condition.any if isinstance(condition, AnyOf) else condition.all
        for part in parts:
            if isinstance(condition, AllOf) or holds(part, state, event):
                yield from evidence(part, state, event)
    elif isinstance(condition, LabCondition):
        lab = state.labs.get(condition.lab)
        if lab is not None:
            yield lab.event_id
    elif isinstance(condition, AeCondition):
        if condition.ae is None:
            yield str(event.event_id)
        else:
            yield from (ae.event_id for t in condition.ae if (ae := state.adverse_events.get(t)))
    else:
        yield str(event.event_id)
