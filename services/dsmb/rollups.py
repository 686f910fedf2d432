"""The DSMB's tables, as of a data cut-off.

`load_snapshot` reads the facts in force at the cut-off (readmodels.visible: each fact's latest
version recorded by then, retractions recorded by then applied); the functions below are pure
and turn a snapshot into the tables. Percentages are of the safety population: subjects with at
least one dose recorded by the cut-off.
"""

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dsmb import readmodels as rm
from shared.ae_dictionary import AeDictionary
from shared.protocol import Protocol
from shared.stopping_rule import MonitoringStatus

Row = dict[str, Any]
GRADES = (1, 2, 3, 4, 5)
LAB_GRADES = (0, 1, 2, 3, 4)
MISSING = "missing"
DEATH = "death"
ALT_TERM = "Alanine aminotransferase increased"
BILIRUBIN_TERM = "Blood bilirubin increased"
MODIFICATIONS = ("hold", "reduce", "discontinue")


class CutoffError(ValueError):
    """A cut-off that cannot be read as an instant; the message says why."""


def parse_cutoff(text: str) -> datetime:
    """A data cut-off: an ISO date is the end of that day in UTC (everything recorded on it
    counts); a date-time must carry its UTC offset (a bare one would mean a different instant
    at each site)."""
    try:
        return datetime.combine(date.fromisoformat(text), time.max, tzinfo=UTC)
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise CutoffError(f"'{text}' is neither an ISO date nor an ISO date-time") from None
    if instant.tzinfo is None:
        raise CutoffError(f"'{text}' has no UTC offset (add Z or +08:00, or give a date)")
    try:
        return instant.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00+01:00" is before the first instant Python has
        raise CutoffError(f"'{text}' is out of range: not an instant in UTC") from None


@dataclass(frozen=True)
class Snapshot:
    """The facts in force at `cutoff`, one list of rows per read model."""

    cutoff: datetime
    subjects: list[Row] = field(default_factory=list)
    doses: list[Row] = field(default_factory=list)
    adverse_events: list[Row] = field(default_factory=list)
    lab_grades: list[Row] = field(default_factory=list)
    decisions: list[Row] = field(default_factory=list)
    alerts: list[Row] = field(default_factory=list)
    acknowledgements: list[Row] = field(default_factory=list)


async def load_snapshot(engine: AsyncEngine, cutoff: datetime) -> Snapshot:
    async with engine.connect() as connection:

        async def rows(table: Any) -> list[Row]:
            result = await connection.execute(rm.visible(table, cutoff))
            keys = list(result.keys())  # once per table, not once per row
            return [dict(zip(keys, row, strict=True)) for row in result]

        return Snapshot(
            cutoff=cutoff,
            subjects=await rows(rm.subjects),
            doses=await rows(rm.doses),
            adverse_events=await rows(rm.adverse_events),
            lab_grades=await rows(rm.lab_grades),
            decisions=await rows(rm.dose_decisions),
            alerts=await rows(rm.alerts),
            acknowledgements=await rows(rm.acknowledgements),
        )


class RollupTable(BaseModel):
    """One table of the report: what the API returns and the report prints and writes as CSV."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


def _count_pct(n: int, population: int) -> str:
    return f"{n} ({100 * n / population:.1f}%)" if population else str(n)


def treated_subjects(snapshot: Snapshot) -> set[str]:
    return {dose["subject_id"] for dose in snapshot.doses}


def first_doses(snapshot: Snapshot) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for dose in snapshot.doses:
        subject, at = dose["subject_id"], dose["administered_at"]
        if subject not in first or at < first[subject]:
            first[subject] = at
    return first


# ---------------------------------------------------------------------------------------------
# Disposition
# ---------------------------------------------------------------------------------------------


def off_treatment(snapshot: Snapshot) -> dict[str, str]:
    """Subjects no longer on any study drug, with the reason: death (a grade 5 AE), else the rule
    of the discontinuation that stopped the last drug they were receiving."""
    received: dict[str, set[str]] = defaultdict(set)
    for dose in snapshot.doses:
        received[dose["subject_id"]].add(dose["drug"])
    stopped: dict[str, dict[str, Row]] = defaultdict(dict)
    for decision in sorted(snapshot.decisions, key=lambda d: d["decided_for"]):
        if decision["action"] == "discontinue":
            stopped[decision["subject_id"]].setdefault(decision["part"], decision)
    reasons = {}
    for subject, drugs in received.items():
        if drugs and drugs <= stopped[subject].keys():
            last = max((stopped[subject][drug] for drug in drugs), key=lambda d: d["decided_for"])
            reasons[subject] = last["rule_id"]
    for ae in snapshot.adverse_events:
        if ae["grade"] == 5 and ae["subject_id"] in received:
            reasons[ae["subject_id"]] = DEATH
    return reasons


def disposition(snapshot: Snapshot) -> RollupTable:
    enrolled = {subject["subject_id"] for subject in snapshot.subjects}
    treated = treated_subjects(snapshot) & enrolled
    off = {s: r for s, r in off_treatment(snapshot).items() if s in treated}
    rows = [
        ["Enrolled", len(enrolled)],
        ["Treated (at least one dose)", len(treated)],
        ["On treatment", len(treated) - len(off)],
        ["Off all study treatment", len(off)],
    ]
    by_reason: dict[str, int] = defaultdict(int)
    for reason in off.values():
        by_reason[reason] += 1
    rows += [[f"  reason: {reason}", n] for reason, n in sorted(by_reason.items())]
    return RollupTable(
        name="disposition",
        title="Subject disposition",
        columns=["", "Subjects"],
        rows=rows,
        note="Off treatment: died, or every drug the subject received permanently "
        "discontinued (reason: the rule that stopped the last one).",
    )


# ---------------------------------------------------------------------------------------------
# Exposure
# ---------------------------------------------------------------------------------------------


def relative_dose_intensity(
    doses: list[Row], planned_dose: float, per_cycle: int, cycle_days: int
) -> float:
    """Dose given / dose planned over the subject's time on the drug: from the first dose to the
    end of the last cycle started (per_cycle administrations of planned_dose each cycle). A
    cycle starts on its day 1: a day-8 dose is (day - 1) days after its cycle's start."""
    starts = [(d["administered_at"] - timedelta(days=d["day"] - 1)).date() for d in doses]
    cycles = ((max(starts) - min(starts)).days + cycle_days) / cycle_days
    return sum(d["dose"] for d in doses) / (planned_dose * per_cycle * cycles)


def _planned(protocol: Protocol) -> str:
    return ", ".join(
        f"{drug} {p.dose:g} {p.unit} day {'+'.join(map(str, p.days))}"
        for drug, p in protocol.regimen.drugs.items()
    )


def _median_range_pct(values: list[float]) -> str:
    median, low, high = (100 * v for v in (statistics.median(values), min(values), max(values)))
    return f"{median:.1f}% ({low:.1f}-{high:.1f})"


def exposure(snapshot: Snapshot, protocol: Protocol) -> RollupTable:
    regimen = protocol.regimen
    by_drug: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for dose in snapshot.doses:
        by_drug[dose["drug"]][dose["subject_id"]].append(dose)
    rows = []
    for drug, planned in regimen.drugs.items():
        per_subject = by_drug.get(str(drug), {})
        if not per_subject:
            rows.append([str(drug), 0, 0, "", "", ""])
            continue
        cycles = [len({d["cycle"] for d in doses}) for doses in per_subject.values()]
        rdis = [
            relative_dose_intensity(
                doses, planned.dose, len(planned.days), regimen.cycle_length_days
            )
            for doses in per_subject.values()
        ]
        rows.append(
            [
                str(drug),
                len(per_subject),
                sum(len(doses) for doses in per_subject.values()),
                f"{statistics.median(cycles):g} ({min(cycles)}-{max(cycles)})",
                _median_range_pct(rdis),
                sum(rdi < 0.85 for rdi in rdis),
            ]
        )
    return RollupTable(
        name="exposure",
        title="Exposure and relative dose intensity (RDI) per drug",
        columns=[
            "Drug",
            "Subjects dosed",
            "Administrations",
            "Cycles started, median (range)",
            "RDI, median (range)",
            "Subjects with RDI < 85%",
        ],
        rows=rows,
        note=f"RDI: dose given / planned dose ({_planned(protocol)}, every "
        f"{regimen.cycle_length_days} days) from the first dose to the end of the last cycle "
        "started. The planned dose is the full dose, so a protocol dose reduction lowers RDI.",
    )


# ---------------------------------------------------------------------------------------------
# Adverse events
# ---------------------------------------------------------------------------------------------


def worst_grades(aes: Iterable[Row]) -> dict[tuple[str, str], dict[str, int]]:
    """(SOC, term) -> subject -> worst grade."""
    worst: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for ae in aes:
        by_subject = worst[(ae["soc"], ae["term"])]
        by_subject[ae["subject_id"]] = max(ae["grade"], by_subject.get(ae["subject_id"], 0))
    return worst


def ae_table(name: str, title: str, aes: list[Row], population: int, note: str = "") -> RollupTable:
    """Subjects by SOC and term, counted once at their worst grade; a SOC row counts subjects
    with any of its terms (at their worst grade in the SOC)."""
    worst = worst_grades(aes)
    by_soc: dict[str, dict[str, int]] = defaultdict(dict)
    for (soc, _), subjects in worst.items():
        for subject, grade in subjects.items():
            by_soc[soc][subject] = max(grade, by_soc[soc].get(subject, 0))

    def counts(label: str, subjects: dict[str, int]) -> list[Any]:
        grades = list(subjects.values())
        return [
            label,
            _count_pct(len(grades), population),
            *(sum(g == k for g in grades) for k in GRADES),
            _count_pct(sum(g >= 3 for g in grades), population),
        ]

    rows = []
    for soc in sorted(by_soc):
        rows.append(counts(soc, by_soc[soc]))
        for (term_soc, term), subjects in sorted(worst.items()):
            if term_soc == soc:
                rows.append(counts(f"  {term}", subjects))
    overall: dict[str, int] = {}
    for subjects in by_soc.values():
        for subject, grade in subjects.items():
            overall[subject] = max(grade, overall.get(subject, 0))
    rows.insert(0, counts("Any adverse event", overall))
    return RollupTable(
        name=name,
        title=title,
        columns=[
            "System organ class / term",
            "Any grade",
            "G1",
            "G2",
            "G3",
            "G4",
            "G5",
            "Grade >= 3",
        ],
        rows=rows,
        note=note or f"Subjects (% of {population} treated) at their worst CTCAE v4.03 grade.",
    )


def in_safety_population(snapshot: Snapshot, aes: Iterable[Row]) -> list[Row]:
    treated = treated_subjects(snapshot)
    return [ae for ae in aes if ae["subject_id"] in treated]


def serious_and_fatal(snapshot: Snapshot) -> RollupTable:
    rows = [
        [
            ae["subject_id"],
            ae["term"],
            ae["grade"],
            "yes" if ae["serious"] else "no",
            ae["related_drugs"] or "not related",
            ae["onset_date"].isoformat(),
        ]
        for ae in sorted(snapshot.adverse_events, key=lambda a: (a["subject_id"], a["onset_date"]))
        if ae["serious"] or ae["grade"] == 5
    ]
    return RollupTable(
        name="sae_deaths",
        title="Serious adverse events and deaths (listing)",
        columns=["Subject", "Term", "Grade", "Serious", "Related to", "Onset"],
        rows=rows,
        note=f"{sum(r[2] == 5 for r in rows)} death(s) (grade 5), "
        f"{len({r[0] for r in rows if r[3] == 'yes'})} subject(s) with an SAE.",
    )


# ---------------------------------------------------------------------------------------------
# Labs
# ---------------------------------------------------------------------------------------------


def lab_shifts(snapshot: Snapshot) -> RollupTable:
    """Per lab term: baseline grade (the last result collected up to the first dose) against the
    worst grade collected after it, in treated subjects; results whose grade could not be
    decided are left out."""
    first = first_doses(snapshot)
    baseline: dict[tuple[str, str], tuple[datetime, int]] = {}
    worst: dict[tuple[str, str], int] = {}
    for lab in snapshot.lab_grades:
        subject, grade = lab["subject_id"], lab["grade"]
        if subject not in first or grade is None:
            continue
        key, at = (lab["term"], subject), lab["collected_at"]
        if at <= first[subject]:
            if key not in baseline or at >= baseline[key][0]:
                baseline[key] = (at, grade)
        else:
            worst[key] = max(grade, worst.get(key, 0))
    shifts: dict[str, dict[tuple[Any, Any], int]] = defaultdict(lambda: defaultdict(int))
    for key in baseline.keys() | worst.keys():
        base = baseline[key][1] if key in baseline else MISSING
        shifts[key[0]][(base, worst.get(key, MISSING))] += 1
    rows = []
    for term in sorted(shifts):
        for base in (*LAB_GRADES, MISSING):
            cells = [shifts[term].get((base, post), 0) for post in (*LAB_GRADES, MISSING)]
            if any(cells):
                rows.append([term, base, *cells])
    return RollupTable(
        name="lab_shifts",
        title="Lab shift tables: baseline grade -> worst post-baseline grade (subjects)",
        columns=["Lab term", "Baseline", *(f"Worst {g}" for g in LAB_GRADES), "No post-baseline"],
        rows=rows,
    )


# ---------------------------------------------------------------------------------------------
# Dose modifications and alerts
# ---------------------------------------------------------------------------------------------


def dose_modifications(snapshot: Snapshot) -> RollupTable:
    decisions: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for decision in snapshot.decisions:
        if decision["action"] in MODIFICATIONS:
            decisions[(decision["part"], decision["action"], decision["rule_id"])].append(decision)
    rows = [
        [drug, action, rule, len(items), len({d["subject_id"] for d in items})]
        for (drug, action, rule), items in sorted(
            decisions.items(), key=lambda kv: (kv[0][0], MODIFICATIONS.index(kv[0][1]), kv[0][2])
        )
    ]
    return RollupTable(
        name="dose_modifications",
        title="Dose holds, reductions and discontinuations per drug and reason",
        columns=["Drug", "Action", "Rule", "Decisions", "Subjects"],
        rows=rows,
    )


def alert_summary(snapshot: Snapshot) -> RollupTable:
    first_ack: dict[Any, datetime] = {}
    for ack in snapshot.acknowledgements:
        at = ack["recorded_at"]
        if ack["alert_id"] not in first_ack or at < first_ack[ack["alert_id"]]:
            first_ack[ack["alert_id"]] = at
    by_severity: dict[str, list[Row]] = defaultdict(list)
    for alert in snapshot.alerts:
        by_severity[alert["severity"]].append(alert)
    rows = []
    for severity in ("critical", "high", "medium", "low", "info"):
        raised = by_severity.get(severity, [])
        if not raised:
            continue
        minutes = [
            (first_ack[a["alert_id"]] - a["recorded_at"]) / timedelta(minutes=1)
            for a in raised
            if a["alert_id"] in first_ack
        ]
        rows.append(
            [
                severity,
                len(raised),
                len(minutes),
                len(raised) - len(minutes),
                f"{statistics.median(minutes):.1f}" if minutes else "",
                f"{max(minutes):.1f}" if minutes else "",
            ]
        )
    return RollupTable(
        name="alerts",
        title="Safety alerts by severity and time to acknowledgement",
        columns=[
            "Severity",
            "Raised",
            "Acknowledged",
            "Unacknowledged at cut-off",
            "Minutes to acknowledge, median",
            "max",
        ],
        rows=rows,
        note="Alerts withdrawn by a correction before the cut-off are not counted.",
    )


# ---------------------------------------------------------------------------------------------
# Toxicity monitoring
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToxicityCount:
    events: int
    evaluable: int
    status: MonitoringStatus
    posterior_probability: float
    subjects_with_event: tuple[str, ...]


def toxicity_count(snapshot: Snapshot, protocol: Protocol) -> ToxicityCount | None:
    """The protocol's toxicity event per treated subject within its window from the first dose:
    a treatment-related death, a grade 4 non-haematological AE, or a permanent discontinuation
    decided on an AE the site reported as immune-related. Evaluable: the window has passed by
    the cut-off, or the event occurred."""
    monitoring = protocol.toxicity_monitoring
    if monitoring is None:
        return None
    window = timedelta(days=monitoring.window_days)
    first = first_doses(snapshot)
    immune_related_aes = {ae["fact_id"] for ae in snapshot.adverse_events if ae["immune_related"]}

    def within(subject: str, on: date | datetime) -> bool:
        start = first[subject]
        day = on if isinstance(on, date) and not isinstance(on, datetime) else on.date()
        return start.date() <= day <= (start + window).date()

    with_event = set()
    for ae in snapshot.adverse_events:
        subject = ae["subject_id"]
        if subject not in first or not within(subject, ae["onset_date"]):
            continue
        related_death = ae["grade"] == 5 and ae["related_drugs"]
        non_haem_g4 = (
            ae["grade"] == 4
            and ae["soc"] not in monitoring.haematological_socs
            and ae["term"] not in monitoring.haematological_terms
        )
        if related_death or non_haem_g4:
            with_event.add(subject)
    for decision in snapshot.decisions:
        subject = decision["subject_id"]
        if (
            decision["action"] == "discontinue"
            and decision["cause_id"] in immune_related_aes
            and subject in first
            and within(subject, decision["decided_for"])
        ):
            with_event.add(subject)
    evaluable = {s for s, start in first.items() if start + window <= snapshot.cutoff} | with_event
    rule = monitoring.rule()
    n, x = len(evaluable), len(with_event)
    probability = rule.posterior_probability(x, n) if n else 0.0
    return ToxicityCount(
        events=x,
        evaluable=n,
        status=rule.status(x, n) if n else MonitoringStatus.CONTINUE,
        posterior_probability=probability,
        subjects_with_event=tuple(sorted(with_event)),
    )


def toxicity_monitoring(snapshot: Snapshot, protocol: Protocol) -> RollupTable | None:
    count = toxicity_count(snapshot, protocol)
    monitoring = protocol.toxicity_monitoring
    if count is None or monitoring is None:
        return None
    boundary = monitoring.rule().boundary()
    at_n = boundary[count.evaluable - 1] if 0 < count.evaluable <= len(boundary) else None
    return RollupTable(
        name="toxicity_monitoring",
        title="Continuous toxicity monitoring (Bayesian beta-binomial stopping rule)",
        columns=[
            "Evaluable subjects",
            "Subjects with the event",
            "Stop boundary at this n",
            "P(rate > max acceptable)",
            "Status",
            "Subjects with the event (ids)",
        ],
        rows=[
            [
                count.evaluable,
                count.events,
                "" if at_n is None else at_n,
                f"{count.posterior_probability:.3f}",
                count.status.value,
                ", ".join(count.subjects_with_event),
            ]
        ],
        note=f"Event: {monitoring.event.strip()}. Prior Beta({monitoring.prior_a:g}, "
        f"{monitoring.prior_b:g}); stop when P(rate > {monitoring.max_acceptable_rate:g}) > "
        f"{monitoring.posterior_threshold:g}. Source: {monitoring.source} [{monitoring.status}].",
    )


def boundary_table(protocol: Protocol) -> RollupTable | None:
    monitoring = protocol.toxicity_monitoring
    if monitoring is None:
        return None
    boundary = monitoring.rule().boundary()
    return RollupTable(
        name="toxicity_boundary",
        title="Stopping boundary: fewest subjects with the event that stop, by evaluable n",
        columns=["Evaluable n", "Stop at events >="],
        rows=[[n, "" if x is None else x] for n, x in enumerate(boundary, start=1)],
    )


# ---------------------------------------------------------------------------------------------
# All of them
# ---------------------------------------------------------------------------------------------


def all_rollups(
    snapshot: Snapshot, protocol: Protocol, dictionary: AeDictionary
) -> list[RollupTable]:
    population = len(treated_subjects(snapshot))
    aes = in_safety_population(snapshot, snapshot.adverse_events)
    related = [ae for ae in aes if ae["related_drugs"]]
    immune = [ae for ae in aes if ae["immune_related"]]
    serious = [ae for ae in aes if ae["serious"]]
    tables = [
        disposition(snapshot),
        exposure(snapshot, protocol),
        ae_table("ae_by_soc", "Adverse events by system organ class and term", aes, population),
        ae_table(
            "ae_related", "Treatment-related adverse events (any study drug)", related, population
        ),
        ae_table("ae_immune_related", "Immune-related adverse events", immune, population),
        ae_table(
            "ae_serious",
            "Serious adverse events by system organ class and term",
            serious,
            population,
        ),
        serious_and_fatal(snapshot),
        lab_shifts(snapshot),
        dose_modifications(snapshot),
        alert_summary(snapshot),
        toxicity_monitoring(snapshot, protocol),
        boundary_table(protocol),
    ]
    return [table for table in tables if table is not None]
