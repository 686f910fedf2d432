"""A subject driven through hold -> recovery -> resume -> reduce -> discontinue by the protocol
rules, live through the real broker; and the same events replayed from scratch give exactly the
same decisions and alerts (same ids)."""

import asyncio
import json

import pytest

from services.ctcae_grader.app import create_app
from services.ctcae_grader.domain import step
from shared.events import AlertRaised, DoseDecisionMade, LabResultReported
from shared.protocol import study_protocol
from shared.settings import Settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS
from tests.support import events_of, produce, produce_events, read_topic, running
from tests.unit.factories import dose, enrolment, lab

pytestmark = pytest.mark.integration
SUBJECT = "GZ01-050"


def anc(value: float, cycle: int, day: int, on: str, attempt: int = 0) -> LabResultReported:
    return lab(
        "ANC",
        value,
        subject_id=SUBJECT,
        cycle=cycle,
        day=day,
        collected_at=f"{on}T07:30:00+08:00",
        source_message_id=f"{SUBJECT}-C{cycle}D{day}-{attempt}-ANC",
    )


def day1_doses(cycle: int, on: str) -> list:
    return [
        dose(drug, cycle, 1, on, SUBJECT)
        for drug in ("toripalimab", "nab-paclitaxel", "carboplatin")
    ]


def treatment_history() -> list:
    return [
        enrolment(SUBJECT, platinum="carboplatin", liver_metastases=False),
        anc(3.0, 1, 1, "2025-03-03"),
        *day1_doses(1, "2025-03-03"),
        anc(1.6, 1, 8, "2025-03-10"),
        dose("nab-paclitaxel", 1, 8, "2025-03-10", SUBJECT),
        anc(0.9, 2, 1, "2025-03-24"),  # hold nab-paclitaxel and carboplatin
        anc(1.2, 2, 1, "2025-03-27", attempt=1),  # still low: nothing new
        anc(1.8, 2, 1, "2025-03-31", attempt=2),
        *day1_doses(2, "2025-03-31"),  # resume
        anc(0.7, 2, 8, "2025-04-07"),  # day-8 reduction: nab-paclitaxel level 0 -> 1
        anc(2.5, 3, 1, "2025-04-21"),
        *day1_doses(3, "2025-04-21"),
        anc(0.8, 3, 8, "2025-04-28"),  # level 1 -> 2
        anc(2.4, 4, 1, "2025-05-12"),
        *day1_doses(4, "2025-05-12"),
        anc(0.6, 4, 8, "2025-05-19"),  # no level below 2: discontinue nab-paclitaxel
    ]


def summary(decision: DoseDecisionMade) -> tuple:
    p = decision.payload
    return p.rule_id, tuple(
        (a.drug.value, a.action.value, a.from_level, a.to_level) for a in p.actions
    )


async def test_hold_recovery_resume_reduce_discontinue_live_and_on_replay(
    settings: Settings,
) -> None:
    boot = settings.kafka_bootstrap_servers
    history = treatment_history()
    async with running(create_app(settings)):
        await produce_events(boot, settings.topic(CLINICAL_EVENTS), history)
        assessed = await read_topic(
            boot,
            settings.topic(ASSESSMENTS),
            lambda r: sum(dict(x.headers)["event_type"] == b"DoseDecisionMade" for x in r) >= 5,
            timeout_s=30,
        )
        raised = await read_topic(boot, settings.topic(ALERTS), lambda r: len(r) >= 4)

    live_decisions = [e for e in events_of(assessed) if isinstance(e, DoseDecisionMade)]
    assert [summary(d) for d in live_decisions] == [
        ("D1-ANC-HOLD", (("nab-paclitaxel", "hold", 0, 0), ("carboplatin", "hold", 0, 0))),
        ("D1-ANC-HOLD", (("nab-paclitaxel", "resume", 0, 0), ("carboplatin", "resume", 0, 0))),
        ("D8-NP-REDUCE", (("nab-paclitaxel", "reduce", 0, 1),)),
        ("D8-NP-REDUCE", (("nab-paclitaxel", "reduce", 1, 2),)),
        ("D8-NP-REDUCE", (("nab-paclitaxel", "discontinue", 2, None),)),
    ]
    live_alerts = [e for e in events_of(raised) if isinstance(e, AlertRaised)]
    assert [a.payload.rule_id for a in live_alerts] == [
        "D1-ANC-HOLD",
        "D8-NP-REDUCE",
        "D8-NP-REDUCE",
        "D8-NP-REDUCE",
    ]

    # Replay the subject's events, as the log holds them, from an empty state.
    clinical = await read_topic(
        boot, settings.topic(CLINICAL_EVENTS), lambda r: len(r) >= len(history)
    )
    protocol, state, replayed = study_protocol(settings.study_id), None, []
    for event in events_of(clinical):
        state, outcome = step(protocol, state, event)
        replayed += [*outcome.assessments, *outcome.alerts]
    replayed_ids = {e.event_id for e in replayed if isinstance(e, DoseDecisionMade | AlertRaised)}
    assert replayed_ids == {e.event_id for e in [*live_decisions, *live_alerts]}


async def test_rules_explain_replays_the_subject_from_the_log(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from shared.kafka import ensure_topics

    await ensure_topics(settings)
    await produce_events(
        settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS), treatment_history()[:8]
    )  # up to the day-1 hold
    exit_code, told = await explain_with_the_cli(settings, monkeypatch, capsys, SUBJECT)
    assert exit_code == 0
    assert told["drugs"]["nab-paclitaxel"]["status"] == "held"
    assert told["drugs"]["carboplatin"]["held_by"][0]["rule"] == "D1-ANC-HOLD"


async def test_rules_explain_grades_with_the_configured_ranges_and_passes_over_poison(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """An AST of 400 U/L sent without a reference range is read against the configured table
    (ULN 35 U/L for a woman: above 10 x ULN), as the grader reads it; a message that is not an
    event, keyed by the subject, is passed over as the grader passed over it."""
    from shared.kafka import ensure_topics

    subject = "GZ01-051"
    history = [
        enrolment(subject, sex="F", liver_metastases=False),
        *[dose(drug, 1, 1, "2025-03-03", subject) for drug in ("toripalimab", "nab-paclitaxel")],
        lab(
            "AST",
            400,
            "U/L",
            subject_id=subject,
            cycle=1,
            day=8,
            collected_at="2025-03-10T07:30:00+08:00",
            reference_low=None,
            reference_high=None,
            source_message_id=f"{subject}-C1D8-AST",
        ),
    ]
    await ensure_topics(settings)
    topic = settings.topic(CLINICAL_EVENTS)
    await produce(settings.kafka_bootstrap_servers, topic, [(subject.encode(), b"not an event")])
    await produce_events(settings.kafka_bootstrap_servers, topic, history)
    exit_code, told = await explain_with_the_cli(settings, monkeypatch, capsys, subject)
    assert exit_code == 0
    held_by = [h["rule"] for h in told["drugs"]["nab-paclitaxel"]["held_by"]]
    assert "NP-HEPATIC-STOP" in held_by


async def explain_with_the_cli(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    subject: str,
) -> tuple[int, dict]:
    """`safetymon rules explain SUBJECT` on the test's topics: its exit code and what it printed."""
    from services.cli import main
    from shared.settings import get_settings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("TOPIC_NAMESPACE", settings.topic_namespace)
    get_settings.cache_clear()
    try:
        exit_code = await asyncio.to_thread(main, ["rules", "explain", subject])
    finally:
        get_settings.cache_clear()
    return exit_code, json.loads(capsys.readouterr().out)
