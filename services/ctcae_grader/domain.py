"""The grader's pure core: one clinical event in, the derived events out. No I/O.

Every derived event's id comes from the event that caused it and the rule, so a redelivered input
produces the same outputs and downstream consumers drop the repeats.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from services.ctcae_grader.rules import (
    AE_GRADE_ALERT_MIN,
    IRAE_GRADE_ALERT_MIN,
    LAB_GRADE_ALERT_MIN,
    SAE_REPORTING_HOURS,
)
from services.ctcae_grader.rules_engine import DrugChange, RuleOutcome, apply_rules
from services.ctcae_grader.state import PatientState, apply
from shared.ae_dictionary import IraeCategory, load_ae_dictionary
from shared.ctcae import References, TermGrade, grade_reported
from shared.events import (
    SEVERITY_RANK,
    AdverseEventPayload,
    AdverseEventReported,
    AlertRaised,
    AlertRaisedPayload,
    DoseAction,
    DoseDecisionMade,
    DoseDecisionPayload,
    DrugAction,
    Envelope,
    LabGraded,
    LabGradedPayload,
    LabResultReported,
    SafetySignalDetected,
    SafetySignalPayload,
    Severity,
    Visit,
    content_fingerprint,
    derive_id,
)
from shared.labs import LabTest, convert, display_result
from shared.protocol import LabCondition, Protocol, conditions_of, study_protocol
from shared.reference_ranges import ReferenceRangeTable


@dataclass
class Assessment:
    assessments: list[Envelope] = field(default_factory=list)  # LabGraded, DoseDecisionMade
    alerts: list[AlertRaised] = field(default_factory=list)


def step(
    protocol: Protocol,
    state: PatientState | None,
    event: Envelope,
    ranges: ReferenceRangeTable | None = None,
) -> tuple[PatientState, Assessment]:
    """The subject's state after `event`, and everything the event implies: grades, the protocol's
    dose decisions, alerts. The same state and event always give the same outputs (same ids)."""
    refs: References | None = None
    graded: list[LabGraded] = []
    if isinstance(event, LabResultReported):
        # As sent with the result, else the configured table's: what the grade is read
        # against is what the protocol's rules read (a limit in multiples of the ULN).
        refs = lab_references(event, state or PatientState(subject_id=event.subject_id), ranges)
    cycle_days, histories = protocol.regimen.cycle_length_days, lab_histories(protocol)
    references = None if refs is None else (refs.lln, refs.uln)
    state = apply(state, event, cycle_days, histories, references)
    if refs is not None:  # (a lab result)
        graded = grade_lab_event(event, refs)
        state = state.with_grades({g.payload.term: g.payload.grade for g in graded})
    state, outcomes = apply_rules(protocol, state, event)
    decisions = [decision_event(event, outcome) for outcome in outcomes if outcome.changes]
    signals = [signal_event(event, outcome) for outcome in outcomes if outcome.signal]
    alerts = [rule_alert(event, outcome, graded) for outcome in outcomes if not outcome.resumed]
    if isinstance(event, AdverseEventReported):
        # SAE and death alerts always (they carry the reporting deadline); others when no rule did.
        ae_alerts = adverse_event_alerts(event)
        reporting = [a for a in ae_alerts if a.payload.due_at is not None]
        alerts = reporting + (alerts or [a for a in ae_alerts if a.payload.due_at is None])
    new_severe = [
        g for g in graded if _alarming(g) and state.newly_severe(g.payload.term, _floor(g))
    ]
    if isinstance(event, LabResultReported) and not alerts:
        # A grade >= 3 no rule acted on: alerted once, again only if it gets worse.
        alerts = [_grade_alert(event, grade) for grade in new_severe]
    state = state.with_severe_grades({g.payload.term: _floor(g) for g in graded})
    return state, Assessment(assessments=[*graded, *decisions, *signals], alerts=alerts)


_HISTORIES: dict[int, tuple[Protocol, frozenset[LabTest]]] = {}


def lab_histories(protocol: Protocol) -> frozenset[LabTest]:
    """The tests whose earlier results a rule of `protocol` reads (a limit met for more than
    some days): the state keeps a history of those only. Cached per protocol object."""
    cached = _HISTORIES.get(id(protocol))
    if cached is None or cached[0] is not protocol:
        tests = frozenset(
            condition.lab
            for rule in protocol.rules
            for condition in conditions_of(rule)
            if isinstance(condition, LabCondition) and condition.for_more_than_days is not None
        )
        cached = _HISTORIES[id(protocol)] = (protocol, tests)
    return cached[1]


def _floor(graded: LabGraded) -> int:
    return graded.payload.minimum_grade


def assess(
    event: Envelope,
    state: PatientState | None = None,
    ranges: ReferenceRangeTable | None = None,
    protocol: Protocol | None = None,
) -> Assessment:
    """What `event` implies for a subject in `state` (the study's protocol by default)."""
    return step(protocol or study_protocol(event.study_id), state, event, ranges)[1]


def raise_alert(
    cause: Envelope,
    rule_id: str,
    severity: Severity,
    title: str,
    detail: str,
    due_at: datetime | None = None,
) -> AlertRaised:
    alert_id = derive_id("alert", rule_id, str(cause.event_id))
    payload = AlertRaisedPayload(
        alert_id=alert_id,
        rule_id=rule_id,
        severity=severity,
        title=title,
        detail=detail,
        trigger_event_id=cause.event_id,
        due_at=due_at,
    )
    return cause.derived(AlertRaised, payload, rule_id)


def grade_lab_event(event: LabResultReported, refs: References) -> list[LabGraded]:
    """The result's grades against `refs` (lab_references: what the rules read too)."""
    lab = event.payload
    reported = lab.reported
    graded = []
    for result in grade_reported(lab.test, reported.value, reported.unit, lab.comparator, refs):
        payload = graded_payload(event, result, refs)
        # The graded value is part of the id: a corrected result's grade is a new event.
        basis = content_fingerprint(
            [payload.graded_value, payload.graded_unit, payload.grade, payload.minimum_grade]
        )
        graded.append(event.derived(LabGraded, payload, result.term, basis))
    return graded


def lab_references(
    event: LabResultReported, state: PatientState, ranges: ReferenceRangeTable | None
) -> References:
    """LLN/ULN as sent with the result, else from the configured table (and then said so);
    the subject's baseline where the test has a baseline criterion. All in the reported unit."""
    lab = event.payload
    reported = lab.reported
    lln, uln, source = reported.lln, reported.uln, ""
    if lln is None and uln is None and ranges is not None:
        age = state.age_on(event.occurred_at.date())
        configured = ranges.lookup(lab.test, state.site_id or event.site_id, state.sex, age)
        if configured is not None:
            (lln, uln), source = configured.in_unit(reported.unit), configured.describe()
    baseline = None
    if lab.test is LabTest.CREATININE and state.baseline_creatinine_umol_l is not None:
        baseline = convert(
            LabTest.CREATININE, state.baseline_creatinine_umol_l, "umol/L", reported.unit
        )
    return References(lln=lln, uln=uln, baseline=baseline, fasting=lab.fasting, source=source)


def graded_payload(
    event: LabResultReported, result: TermGrade, refs: References
) -> LabGradedPayload:
    lab = event.payload
    uln = refs.uln
    return LabGradedPayload(
        lab_event_id=event.event_id,
        test=lab.test,
        visit=lab.visit,
        value_si=lab.si.value,
        unit_si=lab.si.unit,
        graded_value=result.value,
        graded_unit=result.unit,
        term=result.term,
        meddra_code=result.criteria.meddra_code,
        direction=result.criteria.direction,
        grade=result.grade,
        minimum_grade=result.minimum_grade,
        criterion=result.criterion,
        reason=result.reason,
        value_per_uln=lab.reported.value / uln if uln else None,
    )


def decision_event(cause: Envelope, outcome: RuleOutcome) -> DoseDecisionMade:
    rule = outcome.rule
    actions = tuple(
        DrugAction(drug=c.drug, action=c.action, from_level=c.from_level, to_level=c.to_level)
        for c in outcome.changes
    )
    verb = "resolved" if outcome.resumed else "applies"
    reason = f"{rule.description} ({verb}): " + ", ".join(
        f"{c.action.value} {c.drug.value}{_level_text(c)}" for c in outcome.changes
    )
    payload = DoseDecisionPayload(
        rule_id=rule.id,
        actions=actions,
        visit=_visit_of(cause),
        reason=reason,
        source=f"{rule.source} [{rule.status.value}]",
        trigger_event_ids=tuple(UUID(e) for e in dict.fromkeys(outcome.evidence)),
    )
    return cause.derived(DoseDecisionMade, payload, rule.id, "resume" if outcome.resumed else "")


def signal_event(cause: Envelope, outcome: RuleOutcome) -> SafetySignalDetected:
    rule = outcome.rule
    payload = SafetySignalPayload(
        signal=outcome.signal or rule.id,
        reason=f"{rule.description}. Source: {rule.source} [{rule.status.value}]",
        trigger_event_ids=tuple(UUID(e) for e in dict.fromkeys(outcome.evidence)),
    )
    return cause.derived(SafetySignalDetected, payload, rule.id)


def _level_text(change: DrugChange) -> str:
    if change.action is DoseAction.REDUCE:
        return f" (dose level {change.from_level} -> {change.to_level})"
    if change.action is DoseAction.DISCONTINUE and change.from_level:
        return f" (no dose level below {change.from_level})"
    return ""


def _visit_of(event: Envelope) -> Visit | None:
    return getattr(event.payload, "visit", None)


def rule_alert(cause: Envelope, outcome: RuleOutcome, graded: list[LabGraded]) -> AlertRaised:
    rule = outcome.rule
    # A grade >= 3 behind a decision is seen at least as a grade alert would be.
    worst = max((g.payload.minimum_grade for g in graded), default=0)
    floor = Severity.CRITICAL if worst >= 4 else Severity.HIGH if worst >= 3 else rule.severity
    severity = min(rule.severity, floor, key=SEVERITY_RANK.__getitem__)
    visit = _visit_of(cause)
    what = (
        display_result(
            cause.payload.test, cause.payload.reported.value, cause.payload.reported.unit
        )
        if isinstance(cause, LabResultReported)
        else ""
    )
    actions = ", ".join(f"{c.action.value} {c.drug.value}" for c in outcome.changes)
    title = (
        f"{cause.subject_id}{f' {visit.label}' if visit else ''}: {what + ' - ' if what else ''}"
    )
    title += actions or rule.description
    grades = "; ".join(f"{g.payload.term} grade {_grade_shown(g)}" for g in graded)
    detail = (
        f"{rule.description}. {grades + '. ' if grades else ''}Source: {rule.source} "
        f"[{rule.status.value}]"
    )
    return raise_alert(cause, rule.id, severity, title, detail)


def _grade_shown(graded: LabGraded) -> str:
    g = graded.payload
    return str(g.grade) if g.grade is not None else f">={g.minimum_grade}"


def _alarming(graded: LabGraded) -> bool:
    return graded.payload.minimum_grade >= LAB_GRADE_ALERT_MIN


def _grade_alert(event: LabResultReported, graded: LabGraded) -> AlertRaised:
    g = graded.payload
    severity = Severity.CRITICAL if g.minimum_grade >= 4 else Severity.HIGH
    visit = f" {g.visit.label}" if g.visit else ""
    grade = g.grade if g.grade is not None else f">={g.minimum_grade}"
    title = f"{event.subject_id}{visit}: {g.term} grade {grade}"
    return raise_alert(event, f"LAB-GRADE{min(g.minimum_grade, 4)}", severity, title, g.reason)


@dataclass(frozen=True)
class AeAlertRule:
    rule_id: str
    severity: Severity
    label: str
    detail: str
    reporting_clock: bool = False  # carries the 24-hour expedited-reporting deadline


def ae_alert_rule(ae: AdverseEventPayload, category: IraeCategory | None) -> AeAlertRule | None:
    """The one alert an adverse event deserves, most urgent first."""
    if ae.grade == 5:
        return AeAlertRule(
            "AE-DEATH",
            Severity.CRITICAL,
            "death",
            "Fatal adverse event: expedited report due within 24 h",
            True,
        )
    if ae.serious:
        return AeAlertRule(
            "AE-SAE",
            Severity.CRITICAL,
            "serious",
            "Serious adverse event: expedited report due within 24 h of the site's awareness",
            True,
        )
    if ae.immune_related and ae.grade >= IRAE_GRADE_ALERT_MIN:
        return AeAlertRule(
            "AE-IRAE",
            Severity.HIGH,
            "immune-related",
            "Immune-related AE grade >= 2: review toripalimab withholding",
        )
    possible_irae = f"possible immune-related: {category.value}" if category else ""
    if ae.grade >= AE_GRADE_ALERT_MIN:
        return AeAlertRule(
            "AE-GRADE3PLUS", Severity.HIGH, possible_irae, "Adverse event grade >= 3"
        )
    if category is not None and ae.grade >= IRAE_GRADE_ALERT_MIN:
        return AeAlertRule(
            "AE-POSSIBLE-IRAE",
            Severity.MEDIUM,
            possible_irae,
            f"{ae.term} is a recognised immune-related AE of anti-PD-1 therapy "
            f"({category.value}) and the site did not mark it immune-related: "
            "review the attribution",
        )
    return None


def adverse_event_alerts(event: AdverseEventReported) -> list[AlertRaised]:
    ae = event.payload
    entry = load_ae_dictionary().lookup(ae.term)
    rule = ae_alert_rule(ae, entry.irae_category if entry else None)
    if rule is None:
        return []
    what = f"{event.subject_id}: {ae.term} grade {ae.grade}"
    title = f"{what} ({rule.label})" if rule.label else what
    # The expedited-reporting clock starts when the site learned of the event.
    due = (ae.site_aware_at or event.recorded_at) + timedelta(hours=SAE_REPORTING_HOURS)
    return [
        raise_alert(
            event,
            rule.rule_id,
            rule.severity,
            title,
            rule.detail,
            due if rule.reporting_clock else None,
        )
    ]
