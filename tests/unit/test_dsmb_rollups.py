"""The DSMB tables are pure functions of a snapshot: each is checked here on facts small enough
to count by hand (the PostgreSQL as-of selection is tested in tests/integration)."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.dsmb.rollups import (
    CutoffError,
    Row,
    Snapshot,
    ae_table,
    alert_summary,
    all_rollups,
    disposition,
    dose_modifications,
    exposure,
    lab_shifts,
    off_treatment,
    parse_cutoff,
    relative_dose_intensity,
    serious_and_fatal,
    toxicity_count,
    toxicity_monitoring,
)
from shared.ae_dictionary import load_ae_dictionary
from shared.protocol import study_protocol
from shared.stopping_rule import MonitoringStatus

PROTOCOL = study_protocol("NCT05173246")
CUTOFF = datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
JAN_1 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
BLOOD = "Blood and lymphatic system disorders"
GI = "Gastrointestinal disorders"


def fact(subject: str, **columns: Any) -> Row:
    fact_id = uuid.uuid4()
    return {
        "version_id": fact_id,
        "fact_id": fact_id,
        "recorded_at": JAN_1,
        "subject_id": subject,
    } | columns


def dose(subject: str, drug: str, cycle: int, day: int, on: datetime, amount: float) -> Row:
    return fact(subject, drug=drug, cycle=cycle, day=day, administered_at=on, dose=amount)


def adverse_event(
    subject: str,
    term: str,
    soc: str,
    grade: int,
    onset: date = date(2026, 1, 10),
    serious: bool = False,
    immune_related: bool = False,
    related_drugs: str = "",
) -> Row:
    return fact(
        subject,
        term=term,
        soc=soc,
        grade=grade,
        serious=serious,
        immune_related=immune_related,
        related_drugs=related_drugs,
        onset_date=onset,
    )


def decision(
    subject: str,
    drug: str,
    action: str,
    rule_id: str,
    on: datetime = JAN_1,
    cause_id: uuid.UUID | None = None,
) -> Row:
    return fact(
        subject, part=drug, action=action, rule_id=rule_id, decided_for=on, cause_id=cause_id
    )


def day(n: int) -> datetime:
    """Study day n counted from 1 Jan 2026 (day 1)."""
    return JAN_1 + timedelta(days=n - 1)


# ---------------------------------------------------------------------------------------------
# The cut-off
# ---------------------------------------------------------------------------------------------


def test_a_cutoff_date_includes_everything_recorded_on_that_day_in_utc() -> None:
    assert parse_cutoff("2026-03-31") == CUTOFF


def test_a_cutoff_instant_with_an_offset_is_taken_in_utc() -> None:
    assert parse_cutoff("2026-03-31T12:00:00+08:00") == datetime(2026, 3, 31, 4, tzinfo=UTC)


def test_a_cutoff_instant_without_an_offset_is_refused() -> None:
    with pytest.raises(CutoffError, match="no UTC offset"):
        parse_cutoff("2026-03-31T12:00:00")


def test_a_cutoff_that_is_not_a_date_is_refused_with_what_was_given() -> None:
    with pytest.raises(CutoffError, match="'31/03/2026' is neither"):
        parse_cutoff("31/03/2026")


# ---------------------------------------------------------------------------------------------
# Disposition
# ---------------------------------------------------------------------------------------------


def disposition_snapshot() -> Snapshot:
    """S1 stops both drugs it received (cisplatin last); S2 stops only one of two; S3 dies;
    S4 is never dosed."""
    return Snapshot(
        cutoff=CUTOFF,
        subjects=[fact(s, enrolled_on=date(2026, 1, 1)) for s in ("S1", "S2", "S3", "S4")],
        doses=[
            dose("S1", "toripalimab", 1, 1, day(1), 240),
            dose("S1", "cisplatin", 1, 1, day(1), 75),
            dose("S2", "toripalimab", 1, 1, day(1), 240),
            dose("S2", "nab-paclitaxel", 1, 1, day(1), 220),
            dose("S3", "toripalimab", 1, 1, day(1), 240),
        ],
        decisions=[
            decision("S1", "toripalimab", "discontinue", "IRAE-COLITIS-DISCONTINUE", day(10)),
            decision("S1", "cisplatin", "discontinue", "CISPLATIN-CRCL-STOP", day(20)),
            decision("S1", "nab-paclitaxel", "discontinue", "NOT-RECEIVED", day(30)),
            decision("S2", "toripalimab", "discontinue", "IRAE-COLITIS-DISCONTINUE", day(10)),
            decision("S2", "nab-paclitaxel", "hold", "D1-ANC-HOLD", day(10)),
        ],
        adverse_events=[adverse_event("S3", "Sepsis", "Infections and infestations", 5)],
    )


def test_off_treatment_is_death_or_every_received_drug_discontinued_with_the_last_rule() -> None:
    assert off_treatment(disposition_snapshot()) == {
        "S1": "CISPLATIN-CRCL-STOP",
        "S3": "death",
    }


def test_disposition_counts_enrolled_treated_on_and_off_treatment_with_reasons() -> None:
    assert disposition(disposition_snapshot()).rows == [
        ["Enrolled", 4],
        ["Treated (at least one dose)", 3],
        ["On treatment", 1],
        ["Off all study treatment", 2],
        ["  reason: CISPLATIN-CRCL-STOP", 1],
        ["  reason: death", 1],
    ]


def test_the_first_discontinuation_of_a_drug_is_the_one_that_stopped_it() -> None:
    snapshot = disposition_snapshot()
    later = decision("S1", "cisplatin", "discontinue", "LATER-RULE", day(40))
    snapshot.decisions.append(later)
    assert off_treatment(snapshot)["S1"] == "CISPLATIN-CRCL-STOP"


# ---------------------------------------------------------------------------------------------
# Exposure
# ---------------------------------------------------------------------------------------------


def test_rdi_of_full_doses_on_schedule_is_one() -> None:
    doses = [
        dose("S1", "nab-paclitaxel", 1, 1, day(1), 220),
        dose("S1", "nab-paclitaxel", 1, 8, day(8), 220),
        dose("S1", "nab-paclitaxel", 2, 1, day(22), 220),
        dose("S1", "nab-paclitaxel", 2, 8, day(29), 220),
    ]
    assert relative_dose_intensity(doses, 220, per_cycle=2, cycle_days=21) == pytest.approx(1.0)


def test_rdi_counts_a_reduced_dose_against_the_full_planned_dose() -> None:
    doses = [
        dose("S1", "nab-paclitaxel", 1, 1, day(1), 220),
        dose("S1", "nab-paclitaxel", 1, 8, day(8), 220),
        dose("S1", "nab-paclitaxel", 2, 1, day(22), 180),
        dose("S1", "nab-paclitaxel", 2, 8, day(29), 180),
    ]
    # 800 mg/m2 given of 2 cycles x 2 x 220 = 880 planned
    assert relative_dose_intensity(doses, 220, 2, 21) == pytest.approx(800 / 880)


def test_rdi_takes_a_cycle_started_by_its_day_8_dose_when_day_1_was_skipped() -> None:
    doses = [
        dose("S1", "nab-paclitaxel", 1, 1, day(1), 220),
        dose("S1", "nab-paclitaxel", 1, 8, day(8), 220),
        dose("S1", "nab-paclitaxel", 2, 8, day(29), 220),
    ]
    # cycle 2 started on day 22 (its day 8 is day 29): 2 cycles planned, 3 of 4 doses given
    assert relative_dose_intensity(doses, 220, 2, 21) == pytest.approx(0.75)


def test_rdi_falls_when_a_cycle_is_delayed() -> None:
    doses = [
        dose("S1", "toripalimab", 1, 1, day(1), 240),
        dose("S1", "toripalimab", 2, 1, day(29), 240),  # a week late
    ]
    # 28 days + the 21 of the last cycle = 49 days = 7/3 cycles
    assert relative_dose_intensity(doses, 240, 1, 21) == pytest.approx(480 / (240 * 7 / 3))


def test_exposure_gives_subjects_administrations_cycles_and_rdi_per_drug() -> None:
    snapshot = Snapshot(
        cutoff=CUTOFF,
        doses=[
            dose("S1", "toripalimab", 1, 1, day(1), 240),
            dose("S1", "toripalimab", 2, 1, day(22), 240),
            dose("S1", "toripalimab", 3, 1, day(43), 240),
            dose("S2", "toripalimab", 1, 1, day(1), 240),
            dose("S2", "toripalimab", 2, 1, day(29), 240),
        ],
    )
    rows = {row[0]: row for row in exposure(snapshot, PROTOCOL).rows}
    # S1: RDI 100%; S2: 480 / (240 x 49/21) = 85.7%
    assert rows["toripalimab"] == ["toripalimab", 2, 5, "2.5 (2-3)", "92.9% (85.7-100.0)", 0]
    assert rows["carboplatin"] == ["carboplatin", 0, 0, "", "", ""]


def test_a_subject_below_85_percent_rdi_is_counted() -> None:
    snapshot = Snapshot(
        cutoff=CUTOFF,
        doses=[
            dose("S1", "cisplatin", 1, 1, day(1), 75),
            dose("S1", "cisplatin", 2, 1, day(22), 50),
        ],
    )
    rows = {row[0]: row for row in exposure(snapshot, PROTOCOL).rows}
    assert rows["cisplatin"][4:] == ["83.3% (83.3-83.3)", 1]


# ---------------------------------------------------------------------------------------------
# Adverse events
# ---------------------------------------------------------------------------------------------


def test_ae_table_counts_each_subject_once_at_the_worst_grade_per_term_and_soc() -> None:
    aes = [
        adverse_event("S1", "Anemia", BLOOD, 2),
        adverse_event("S1", "Anemia", BLOOD, 3),
        adverse_event("S2", "Anemia", BLOOD, 1),
        adverse_event("S1", "Febrile neutropenia", BLOOD, 3),
        adverse_event("S2", "Nausea", GI, 2),
    ]
    table = ae_table("ae", "AEs", aes, population=3)
    assert table.rows == [
        ["Any adverse event", "2 (66.7%)", 0, 1, 1, 0, 0, "1 (33.3%)"],
        [BLOOD, "2 (66.7%)", 1, 0, 1, 0, 0, "1 (33.3%)"],
        ["  Anemia", "2 (66.7%)", 1, 0, 1, 0, 0, "1 (33.3%)"],
        ["  Febrile neutropenia", "1 (33.3%)", 0, 0, 1, 0, 0, "1 (33.3%)"],
        [GI, "1 (33.3%)", 0, 1, 0, 0, 0, "0 (0.0%)"],
        ["  Nausea", "1 (33.3%)", 0, 1, 0, 0, 0, "0 (0.0%)"],
    ]


def test_ae_table_with_no_treated_subject_gives_counts_without_percentages() -> None:
    table = ae_table("ae", "AEs", [adverse_event("S1", "Nausea", GI, 1)], population=0)
    assert table.rows[0] == ["Any adverse event", "1", 1, 0, 0, 0, 0, "0"]


def test_the_ae_tables_leave_out_untreated_subjects_and_split_related_immune_serious() -> None:
    snapshot = Snapshot(
        cutoff=CUTOFF,
        doses=[dose(s, "toripalimab", 1, 1, day(1), 240) for s in ("S1", "S2")],
        adverse_events=[
            adverse_event("S1", "Colitis", GI, 3, immune_related=True, related_drugs="toripalimab"),
            adverse_event("S2", "Nausea", GI, 2, serious=True, related_drugs="cisplatin"),
            adverse_event("S2", "Diarrhea", GI, 1),
            adverse_event("S9", "Nausea", GI, 4),  # never dosed: not in the safety population
        ],
    )
    tables = {t.name: t for t in all_rollups(snapshot, PROTOCOL, load_ae_dictionary())}
    first_row = {name: tables[name].rows[0] for name in tables if name.startswith("ae_")}
    assert first_row == {
        "ae_by_soc": ["Any adverse event", "2 (100.0%)", 0, 1, 1, 0, 0, "1 (50.0%)"],
        "ae_related": ["Any adverse event", "2 (100.0%)", 0, 1, 1, 0, 0, "1 (50.0%)"],
        "ae_immune_related": ["Any adverse event", "1 (50.0%)", 0, 0, 1, 0, 0, "1 (50.0%)"],
        "ae_serious": ["Any adverse event", "1 (50.0%)", 0, 1, 0, 0, 0, "0 (0.0%)"],
    }
    assert [row[0] for row in tables["ae_by_soc"].rows] == [
        "Any adverse event",
        GI,
        "  Colitis",
        "  Diarrhea",
        "  Nausea",
    ]


def test_the_sae_listing_has_serious_events_and_deaths_by_subject_and_onset() -> None:
    snapshot = Snapshot(
        cutoff=CUTOFF,
        adverse_events=[
            adverse_event("S2", "Sepsis", "Infections and infestations", 5, date(2026, 2, 1)),
            adverse_event("S1", "Colitis", GI, 3, date(2026, 1, 20), True, True, "toripalimab"),
            adverse_event("S1", "Nausea", GI, 2, date(2026, 1, 5)),
        ],
    )
    table = serious_and_fatal(snapshot)
    assert table.rows == [
        ["S1", "Colitis", 3, "yes", "toripalimab", "2026-01-20"],
        ["S2", "Sepsis", 5, "no", "not related", "2026-02-01"],
    ]
    assert table.note == "1 death(s) (grade 5), 1 subject(s) with an SAE."


# ---------------------------------------------------------------------------------------------
# Labs
# ---------------------------------------------------------------------------------------------

ALT = "Alanine aminotransferase increased"


def alt(subject: str, at: datetime, grade: int | None) -> Row:
    return fact(subject, term=ALT, collected_at=at, grade=grade)


def test_lab_shift_is_the_last_grade_up_to_first_dose_against_the_worst_after_it() -> None:
    snapshot = Snapshot(
        cutoff=CUTOFF,
        doses=[dose(s, "toripalimab", 1, 1, day(1), 240) for s in ("S1", "S2", "S3")],
        lab_grades=[
            alt("S1", day(1) - timedelta(days=2), 0),
            alt("S1", day(1), 1),  # at the first dose itself: still baseline, the last one
            alt("S1", day(15), 3),
            alt("S1", day(30), 2),
            alt("S1", day(31), None),  # grade undecided: left out
            alt("S2", day(8), 0),  # no baseline
            alt("S3", day(1) - timedelta(hours=1), 2),  # no post-baseline result
            alt("S9", day(8), 4),  # never dosed
        ],
    )
    assert lab_shifts(snapshot).rows == [
        [ALT, 1, 0, 0, 0, 1, 0, 0],
        [ALT, 2, 0, 0, 0, 0, 0, 1],
        [ALT, "missing", 1, 0, 0, 0, 0, 0],
    ]


# ---------------------------------------------------------------------------------------------
# Dose modifications and alerts
# ---------------------------------------------------------------------------------------------


def test_dose_modifications_count_decisions_and_subjects_per_drug_action_and_rule() -> None:
    snapshot = Snapshot(
        cutoff=CUTOFF,
        decisions=[
            decision("S1", "nab-paclitaxel", "hold", "D1-ANC-HOLD", day(22)),
            decision("S1", "nab-paclitaxel", "hold", "D1-ANC-HOLD", day(29)),
            decision("S2", "nab-paclitaxel", "hold", "D1-ANC-HOLD", day(22)),
            decision("S1", "nab-paclitaxel", "reduce", "ANC-G4-REDUCE", day(36)),
            decision("S1", "nab-paclitaxel", "resume", "D1-ANC-HOLD", day(36)),
            decision("S1", "toripalimab", "discontinue", "IRAE-COLITIS-DISCONTINUE", day(40)),
            decision("S2", "toripalimab", "proceed", "NOTHING", day(22)),
        ],
    )
    assert dose_modifications(snapshot).rows == [
        ["nab-paclitaxel", "hold", "D1-ANC-HOLD", 3, 2],
        ["nab-paclitaxel", "reduce", "ANC-G4-REDUCE", 1, 1],
        ["toripalimab", "discontinue", "IRAE-COLITIS-DISCONTINUE", 1, 1],
    ]


def test_alerts_by_severity_with_minutes_to_the_first_acknowledgement() -> None:
    raised = {name: uuid.uuid4() for name in ("c1", "c2", "h1")}

    def alert(name: str, severity: str) -> Row:
        return fact("S1", alert_id=raised[name], severity=severity, recorded_at=JAN_1)

    def ack(name: str, minutes: int) -> Row:
        return fact("S1", alert_id=raised[name], recorded_at=JAN_1 + timedelta(minutes=minutes))

    snapshot = Snapshot(
        cutoff=CUTOFF,
        alerts=[alert("c1", "critical"), alert("c2", "critical"), alert("h1", "high")],
        acknowledgements=[ack("c1", 45), ack("c1", 30), ack("h1", 90)],
    )
    assert alert_summary(snapshot).rows == [
        ["critical", 2, 1, 1, "30.0", "30.0"],
        ["high", 1, 1, 0, "90.0", "90.0"],
    ]


# ---------------------------------------------------------------------------------------------
# Toxicity monitoring (protocol: 42-day window from the first dose)
# ---------------------------------------------------------------------------------------------


def first_dose(subject: str, on: datetime = JAN_1) -> Row:
    return dose(subject, "toripalimab", 1, 1, on, 240)


def test_the_toxicity_event_is_a_related_death_non_haematological_g4_or_irae_stop() -> None:
    on_day = {n: day(n).date() for n in (10, 43, 44)}
    colitis = adverse_event("T6", "Colitis", GI, 3, on_day[10], immune_related=True)
    nausea = adverse_event("T7", "Nausea", GI, 3, on_day[10])
    snapshot = Snapshot(
        cutoff=CUTOFF,
        doses=[first_dose(f"T{n}") for n in range(1, 10)]
        + [first_dose("T10", day(74)), first_dose("T11", day(74))],
        adverse_events=[
            adverse_event("T1", "Colitis", GI, 4, on_day[10]),  # event
            adverse_event("T2", "Neutrophil count decreased", "Investigations", 4, on_day[10]),
            adverse_event("T3", "Febrile neutropenia", BLOOD, 4, on_day[10]),
            adverse_event("T4", "Sepsis", "Infections", 5, on_day[10], related_drugs="cisplatin"),
            adverse_event("T5", "Sepsis", "Infections", 5, on_day[10]),  # not related
            colitis,
            nausea,
            adverse_event("T8", "Colitis", GI, 4, on_day[44]),  # the day after the window
            adverse_event("T9", "Colitis", GI, 4, on_day[43]),  # the window's last day
            adverse_event("T10", "Colitis", GI, 4, day(80).date()),  # window not over: event
        ],
        decisions=[
            decision("T6", "toripalimab", "discontinue", "IRAE", day(12), colitis["fact_id"]),
            decision("T7", "toripalimab", "discontinue", "OTHER", day(12), nausea["fact_id"]),
        ],
    )
    count = toxicity_count(snapshot, PROTOCOL)
    assert count is not None
    assert count.subjects_with_event == ("T1", "T10", "T4", "T6", "T9")
    # T1..T9 are past their 42 days at the cut-off; T11 is not and had no event
    assert (count.events, count.evaluable) == (5, 10)
    rule = PROTOCOL.toxicity_monitoring.rule()  # type: ignore[union-attr]
    assert count.posterior_probability == pytest.approx(rule.posterior_probability(5, 10))
    assert count.status is MonitoringStatus.CONTINUE  # the boundary at n = 10 is 6


def test_a_subject_becomes_evaluable_exactly_when_the_window_closes() -> None:
    window = timedelta(days=42)
    closing = Snapshot(cutoff=JAN_1 + window, doses=[first_dose("S1")])
    still_open = Snapshot(cutoff=JAN_1 + window - timedelta(microseconds=1), doses=closing.doses)
    assert toxicity_count(closing, PROTOCOL).evaluable == 1  # type: ignore[union-attr]
    assert toxicity_count(still_open, PROTOCOL).evaluable == 0  # type: ignore[union-attr]


def test_three_events_in_the_first_three_subjects_cross_the_stop_boundary() -> None:
    subjects = ("S1", "S2", "S3")
    snapshot = Snapshot(
        cutoff=CUTOFF,
        doses=[first_dose(s) for s in subjects],
        adverse_events=[adverse_event(s, "Colitis", GI, 4) for s in subjects],
    )
    table = toxicity_monitoring(snapshot, PROTOCOL)
    assert table is not None
    evaluable, events, boundary, _, status, ids = table.rows[0]
    assert (evaluable, events, boundary, status, ids) == (
        3,
        3,
        3,
        "stop boundary crossed",
        "S1, S2, S3",
    )


def test_with_no_evaluable_subject_the_status_is_continue_and_no_boundary_applies() -> None:
    snapshot = Snapshot(cutoff=JAN_1, doses=[first_dose("S1")])
    table = toxicity_monitoring(snapshot, PROTOCOL)
    assert table is not None
    assert table.rows[0] == [0, 0, "", "0.000", "continue", ""]
