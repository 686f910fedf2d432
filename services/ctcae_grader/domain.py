"""The grader's pure core: one clinical event in, the derived events out. No I/O.

Every derived event's id comes from the event that caused it and the rule, so a redelivered input
produces the same outputs and downstream consumers drop the repeats.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from services.ctcae_grader.rules import (
    AE_GRADE_ALERT_MIN,
    DAY1_HOLD_RULES,
    IRAE_GRADE_ALERT_MIN,
    LAB_GRADE_ALERT_MIN,
    SAE_REPORTING_HOURS,
    Day1HoldRule,
)
from services.ctcae_grader.state import PatientState
from shared.ae_dictionary import IraeCategory, load_ae_dictionary
from shared.ctcae import References, TermGrade, grade_reported
from shared.events import (
    AdverseEventPayload,
    AdverseEventReported,
    AlertRaised,
    AlertRaisedPayload,
    DoseDecisionMade,
    DoseDecisionPayload,
    Drug,
    DrugAction,
    Envelope,
    LabGraded,
    LabGradedPayload,
    LabResultReported,
    Platinum,
    Severity,
    derive_id,
)
from shared.labs import LabTest, convert, display_result, display_unit
from shared.reference_ranges import ReferenceRangeTable


@dataclass
class Assessment:
    assessments: list[Envelope] = field(default_factory=list)  # LabGraded, DoseDecisionMade
    alerts: list[AlertRaised] = field(default_factory=list)


def assess(
    event: Envelope,
    state: PatientState | None = None,
    ranges: ReferenceRangeTable | None = None,
) -> Assessment:
    """Everything one clinical event implies, given the subject's state before it."""
    state = state or PatientState(subject_id=event.subject_id)
    if isinstance(event, LabResultReported):
        return assess_lab(event, state, ranges)
    if isinstance(event, AdverseEventReported):
        return Assessment(alerts=adverse_event_alerts(event))
    return Assessment()  # enrolment and doses feed patient state; nothing to grade


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


def assess_lab(
    event: LabResultReported, state: PatientState, ranges: ReferenceRangeTable | None = None
) -> Assessment:
    lab = event.payload
    reported = lab.reported
    refs = lab_references(event, state, ranges)
    graded = [
        event.derived(LabGraded, graded_payload(event, result), result.term)
        for result in grade_reported(lab.test, reported.value, reported.unit, lab.comparator, refs)
    ]
    decisions = [
        _hold_decision(event, rule, state) for rule in DAY1_HOLD_RULES if _rule_applies(event, rule)
    ]
    alerts = [_decision_alert(event, decision, graded) for decision in decisions]
    if not alerts:
        alerts = [_grade_alert(event, grade) for grade in graded if _alarming(grade)]
    return Assessment(assessments=[*graded, *decisions], alerts=alerts)


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


def graded_payload(event: LabResultReported, result: TermGrade) -> LabGradedPayload:
    lab = event.payload
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
    )


def _rule_applies(event: LabResultReported, rule: Day1HoldRule) -> bool:
    lab = event.payload
    return (
        lab.test is rule.test
        and lab.visit is not None
        and lab.visit.day == 1
        and Decimal(str(lab.si.value)) < rule.minimum
    )


def regimen_drugs(drugs: tuple[Drug, ...], state: PatientState) -> tuple[Drug, ...]:
    """The drugs of a rule this subject actually receives: only their own platinum agent."""
    if state.platinum is None:
        return drugs  # platinum choice unknown (no enrolment seen): name both
    other = Drug.CARBOPLATIN if state.platinum is Platinum.CISPLATIN else Drug.CISPLATIN
    return tuple(drug for drug in drugs if drug is not other)


def _hold_decision(
    event: LabResultReported, rule: Day1HoldRule, state: PatientState
) -> DoseDecisionMade:
    lab = event.payload
    visit = lab.visit.label if lab.visit else "?"
    drugs = regimen_drugs(rule.drugs, state)
    reason = (
        f"{visit} {display_result(lab.test, lab.si.value, lab.si.unit)} is below the day-1 "
        f"retreatment minimum {rule.minimum} {display_unit(lab.si.unit)}: {rule.action.value} "
        f"{', '.join(d.value for d in drugs)} until recovery"
    )
    payload = DoseDecisionPayload(
        rule_id=rule.rule_id,
        actions=tuple(DrugAction(drug=drug, action=rule.action) for drug in drugs),
        visit=lab.visit,
        reason=reason,
        source=rule.source,
        trigger_event_ids=(event.event_id,),
    )
    return event.derived(DoseDecisionMade, payload, rule.rule_id)


def _grade_text(graded: list[LabGraded]) -> str:
    return ", ".join(
        f"{g.payload.term} grade {g.payload.grade if g.payload.grade is not None else '?'}"
        for g in graded
    )


def _decision_alert(
    event: LabResultReported, decision: DoseDecisionMade, graded: list[LabGraded]
) -> AlertRaised:
    d = decision.payload
    rule = next(r for r in DAY1_HOLD_RULES if r.rule_id == d.rule_id)
    severity = (
        Severity.CRITICAL if any(g.payload.minimum_grade >= 4 for g in graded) else (rule.severity)
    )
    lab = event.payload
    title = (
        f"{event.subject_id} {d.visit.label if d.visit else ''}: "
        f"{display_result(lab.test, lab.si.value, lab.si.unit)} - hold chemotherapy"
    )
    return raise_alert(
        event,
        d.rule_id,
        severity,
        title,
        f"{d.reason}. {_grade_text(graded)}. Source: {d.source}",
    )


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
