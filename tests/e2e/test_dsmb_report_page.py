"""The DSMB report in a real browser: Debian's headless Chromium, driven by playwright-core
(tests/e2e/browser/report.mjs), renders the report of the hand-checked scenario
(tests/integration/dsmb_scenario.py) as `safetymon dsmb-report` writes it from PostgreSQL. Every
table must be on the page with its rows, every plot must load, nothing may fail; the full-page
screenshot is kept as test-artifacts/dsmb/report.png.
"""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from services.alerts.db import create_engine, upgrade_schema
from services.demo.databases import scratch_database
from services.dsmb.projector import Projector
from services.dsmb.report import report_from_database
from shared.ae_dictionary import load_ae_dictionary
from shared.protocol import study_protocol
from tests.integration import dsmb_scenario as scenario
from tests.support import BROWSER_DIR, CHROMIUM, browser_ready

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dsmb"


async def test_the_report_renders_every_table_and_plot_in_chromium(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser_ready()
    with scenario.derived_clock(monkeypatch) as clock:
        events = scenario.grade_all(scenario.clinical_before_cutoff(), {}, clock)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    async with scratch_database(postgres_url, "safetymon_report") as url:
        await asyncio.to_thread(upgrade_schema, url)
        engine = create_engine(url)
        try:
            await Projector(engine, load_ae_dictionary()).project(events)
        finally:
            await engine.dispose()
        report = await report_from_database(
            url, scenario.FIRST_CUTOFF, study_protocol("NCT05173246"), ARTIFACTS / "report"
        )

    config = {
        "file": str(report.html),
        "screenshot": str(ARTIFACTS / "report.png"),
        "chromium": CHROMIUM,
    }
    browser = await asyncio.create_subprocess_exec(
        "node",
        "report.mjs",
        json.dumps(config),
        cwd=BROWSER_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(browser.communicate(), 90)
    assert browser.returncode == 0, err.decode()
    shown = json.loads(out.decode().strip().splitlines()[-1])

    assert "error" not in shown, shown
    assert shown["title"] == "DSMB report NCT05173246 as of 2026-03-31T23:59:59.999999+00:00"
    assert shown["tables"][: len(report.tables)] == [t.title for t in report.tables]
    for table in report.tables:  # a table with no rows shows one "none" row
        assert shown["tableRows"][table.name] == max(len(table.rows), 1), table.name
    assert [image["alt"] for image in shown["images"]] == [
        "eDISH plot",
        "Swimmer plot",
        "Toxicity boundary plot",
    ]
    for image in shown["images"]:
        assert image["width"] > 300 and image["shown"] > 300, image
    assert shown["consoleErrors"] == shown["pageErrors"] == shown["failedRequests"] == []
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000
