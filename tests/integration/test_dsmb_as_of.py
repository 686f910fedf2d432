"""DSMB rollups on PostgreSQL, on the hand-checked scenario of dsmb_scenario.py: the exact
numbers of every table at the cut-off of 31 March 2026, that they do not move when a correction
and a retraction are recorded afterwards, and what they become at the next cut-off.

The grader's own pure core derives the grades, decisions and alerts; the projector writes them
to a scratch PostgreSQL database; the rollups read them back through the as-of filter.
"""

import asyncio
import csv
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scipy.integrate import quad
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.db import create_engine, upgrade_schema
from services.demo.databases import scratch_database
from services.dsmb.projector import Projector
from services.dsmb.readmodels import READ_MODELS, create_current_views
from services.dsmb.report import write_report
from services.dsmb.rollups import RollupTable, all_rollups, load_snapshot
from shared.ae_dictionary import load_ae_dictionary
from shared.events import AlertRaised, Envelope
from shared.protocol import study_protocol
from tests.integration import dsmb_scenario as scenario

pytestmark = pytest.mark.integration
PROTOCOL = study_protocol("NCT05173246")
DICTIONARY = load_ae_dictionary()


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    async with scratch_database(postgres_url, "safetymon_dsmb") as url:
        await asyncio.to_thread(upgrade_schema, url)
        engine = create_engine(url)
        yield engine
        await engine.dispose()


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Envelope], list[Envelope]]:
    """(every event recorded by the first cut-off, every event recorded after it)."""
    with scenario.derived_clock(monkeypatch) as clock:
        ledgers: dict = {}
        clinical = scenario.clinical_before_cutoff()
        before = scenario.grade_all(clinical, ledgers, clock)
        sae_alert = next(
            e for e in before if isinstance(e, AlertRaised) and e.payload.rule_id == "AE-SAE"
        )
        before.append(scenario.acknowledgement(sae_alert, minutes=30))
        after = scenario.grade_all(scenario.clinical_after_cutoff(clinical), ledgers, clock)
    return before, after


async def tables_at(engine: AsyncEngine, cutoff) -> dict[str, RollupTable]:
    snapshot = await load_snapshot(engine, cutoff)
    return {t.name: t for t in all_rollups(snapshot, PROTOCOL, DICTIONARY)}


def rows(tables: dict[str, RollupTable], name: str) -> list[list]:
    return tables[name].rows


# Expected at the first cut-off (31 March): 3 enrolled, 2 treated (the safety population).
DISPOSITION_MARCH = [
    ["Enrolled", 3],
    ["Treated (at least one dose)", 2],
    ["On treatment", 2],  # GZ01-002 stopped toripalimab only: chemotherapy goes on
    ["Off all study treatment", 0],
]
# One cycle each (day 1, and day 8 of nab-paclitaxel): dose given = dose planned for one cycle.
EXPOSURE = [
    ["toripalimab", 2, 2, "1 (1-1)", "100.0% (100.0-100.0)", 0],
    ["nab-paclitaxel", 2, 4, "1 (1-1)", "100.0% (100.0-100.0)", 0],
    ["cisplatin", 1, 1, "1 (1-1)", "100.0% (100.0-100.0)", 0],
    ["carboplatin", 1, 1, "1 (1-1)", "100.0% (100.0-100.0)", 0],
]
RESPIRATORY = "Respiratory, thoracic and mediastinal disorders"
# Columns: any grade, G1..G5, grade >= 3; percentages of 2 treated subjects.
AES_MARCH = [
    ["Any adverse event", "2 (100.0%)", 0, 1, 0, 1, 0, "1 (50.0%)"],
    ["Gastrointestinal disorders", "1 (50.0%)", 0, 0, 0, 1, 0, "1 (50.0%)"],
    ["  Colitis", "1 (50.0%)", 0, 0, 0, 1, 0, "1 (50.0%)"],
    [RESPIRATORY, "1 (50.0%)", 0, 1, 0, 0, 0, "0 (0.0%)"],
    ["  Pneumonitis", "1 (50.0%)", 0, 1, 0, 0, 0, "0 (0.0%)"],
]
SERIOUS = [
    ["Any adverse event", "1 (50.0%)", 0, 0, 0, 1, 0, "1 (50.0%)"],
    ["Gastrointestinal disorders", "1 (50.0%)", 0, 0, 0, 1, 0, "1 (50.0%)"],
    ["  Colitis", "1 (50.0%)", 0, 0, 0, 1, 0, "1 (50.0%)"],
]
# Baseline ANC 3.0 (grade 0) -> 0.9 at C2D1 (grade 3): one subject in the 0 -> 3 cell.
SHIFTS_MARCH = [["Neutrophil count decreased", 0, 0, 0, 0, 1, 0, 0]]
MODIFICATIONS_MARCH = [
    ["cisplatin", "hold", "D1-ANC-HOLD", 1, 1],
    ["nab-paclitaxel", "hold", "D1-ANC-HOLD", 1, 1],
    ["toripalimab", "hold", "IRAE-PNEUMONITIS-WITHHOLD", 1, 1],
    ["toripalimab", "discontinue", "IRAE-COLITIS-DISCONTINUE", 1, 1],
]
# Critical: the colitis SAE (acknowledged after 30 min) and its discontinuation; high: the ANC
# hold and the pneumonitis hold.
ALERTS_MARCH = [["critical", 2, 1, 1, "30.0", "30.0"], ["high", 2, 0, 2, "", ""]]


def posterior_above(rate: float, a: float, b: float) -> float:
    """P(p > rate) under Beta(a, b), by integrating the density (independent of scipy.stats)."""
    norm = math.gamma(a + b) / (math.gamma(a) * math.gamma(b))
    return quad(lambda p: norm * p ** (a - 1) * (1 - p) ** (b - 1), rate, 1)[0]


async def test_every_table_at_the_cutoff_has_the_hand_checked_numbers(engine, streams) -> None:
    before, _ = streams
    await Projector(engine, DICTIONARY).project(before)

    tables = await tables_at(engine, scenario.FIRST_CUTOFF)

    assert rows(tables, "disposition") == DISPOSITION_MARCH
    assert rows(tables, "exposure") == EXPOSURE
    assert rows(tables, "ae_by_soc") == AES_MARCH
    assert rows(tables, "ae_related") == AES_MARCH  # both related to toripalimab
    assert rows(tables, "ae_immune_related") == AES_MARCH  # both flagged immune-related
    assert rows(tables, "ae_serious") == SERIOUS
    assert rows(tables, "sae_deaths") == [
        ["GZ01-002", "Colitis", 4, "yes", "toripalimab", "2026-03-20"]
    ]
    assert rows(tables, "lab_shifts") == SHIFTS_MARCH
    assert rows(tables, "dose_modifications") == MODIFICATIONS_MARCH
    assert rows(tables, "alerts") == ALERTS_MARCH
    # Toxicity: GZ01-002 (grade 4 colitis, discontinued for it) is the only evaluable subject
    # (GZ01-001's 42-day window runs to 13 April). Posterior Beta(0.6 + 1, 1.4 + 0).
    probability = posterior_above(0.30, 1.6, 1.4)
    assert round(probability, 3) == 0.789
    assert rows(tables, "toxicity_monitoring") == [
        [1, 1, "", f"{probability:.3f}", "continue", "GZ01-002"]
    ]


async def test_later_corrections_leave_the_cutoff_report_unchanged(engine, streams) -> None:
    before, after = streams
    projector = Projector(engine, DICTIONARY)
    await projector.project(before)
    at_the_cutoff = await tables_at(engine, scenario.FIRST_CUTOFF)

    await projector.project(after)  # pneumonitis corrected to grade 3; the C2D1 ANC retracted

    assert await tables_at(engine, scenario.FIRST_CUTOFF) == at_the_cutoff
    april = await tables_at(engine, scenario.SECOND_CUTOFF)
    assert rows(april, "ae_by_soc") == [
        ["Any adverse event", "2 (100.0%)", 0, 0, 1, 1, 0, "2 (100.0%)"],
        ["Gastrointestinal disorders", "1 (50.0%)", 0, 0, 0, 1, 0, "1 (50.0%)"],
        ["  Colitis", "1 (50.0%)", 0, 0, 0, 1, 0, "1 (50.0%)"],
        [RESPIRATORY, "1 (50.0%)", 0, 0, 1, 0, 0, "1 (50.0%)"],
        ["  Pneumonitis", "1 (50.0%)", 0, 0, 1, 0, 0, "1 (50.0%)"],
    ]
    # The retracted sample leaves a baseline with nothing after it.
    assert rows(april, "lab_shifts") == [["Neutrophil count decreased", 0, 0, 0, 0, 0, 0, 1]]
    # The ANC holds went with their sample, the pneumonitis hold became a discontinuation.
    assert rows(april, "dose_modifications") == [
        ["toripalimab", "discontinue", "IRAE-COLITIS-DISCONTINUE", 1, 1],
        ["toripalimab", "discontinue", "IRAE-PNEUMONITIS-DISCONTINUE", 1, 1],
    ]
    assert rows(april, "alerts") == [["critical", 3, 1, 2, "30.0", "30.0"]]
    assert rows(april, "disposition") == DISPOSITION_MARCH
    # Both windows have passed and both subjects had the event: 2 of 2, Beta(2.6, 1.4).
    probability = posterior_above(0.30, 2.6, 1.4)
    assert rows(april, "toxicity_monitoring") == [
        [2, 2, "", f"{probability:.3f}", "continue", "GZ01-001, GZ01-002"]
    ]


async def test_projecting_the_same_events_again_changes_nothing(engine, streams) -> None:
    before, after = streams
    projector = Projector(engine, DICTIONARY)
    await projector.project(before + after)
    first = await row_counts(engine)

    await projector.project(after + before)

    assert await row_counts(engine) == first
    # The sample with its grade, hold and alert (4); the pneumonitis hold and its alert (2).
    assert first["dsmb_retractions"] == 6
    assert sum(first.values()) > 30


async def test_current_views_show_the_corrected_version(engine, streams) -> None:
    before, after = streams
    await Projector(engine, DICTIONARY).project(before + after)
    await create_current_views(engine)

    async with engine.connect() as connection:
        grades = (
            await connection.execute(
                text("SELECT subject_id, term, grade FROM dsmb_adverse_events_current ORDER BY 1")
            )
        ).all()

    assert [tuple(row) for row in grades] == [
        ("GZ01-001", "Pneumonitis", 3),
        ("GZ01-002", "Colitis", 4),
    ]


async def test_the_report_writes_every_table_as_csv_and_the_plots(
    engine, streams, tmp_path: Path
) -> None:
    before, _ = streams
    await Projector(engine, DICTIONARY).project(before)
    snapshot = await load_snapshot(engine, scenario.FIRST_CUTOFF)

    report = write_report(snapshot, PROTOCOL, DICTIONARY, tmp_path)

    html = report.html.read_text()
    for table in report.tables:
        with (tmp_path / f"{table.name}.csv").open(newline="") as file:
            written = list(csv.reader(file))
        assert written[0] == table.columns
        assert written[1:] == [[str(cell) for cell in row] for row in table.rows]
        assert table.title in html
    for image in ("edish.png", "swimmer.png", "toxicity_boundary.png"):
        assert (tmp_path / image).stat().st_size > 10_000
        assert f'src="{image}"' in html
    assert "2026-03-31T23:59:59.999999+00:00" in html


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            table.name: (
                await connection.execute(select(func.count()).select_from(table))
            ).scalar_one()
            for table in READ_MODELS
        }
