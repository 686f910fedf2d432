"""bench/bench_dsmb_report.py run small against the test PostgreSQL, so the benchmark cannot rot:
it exits 0 and prints every figure. Its timings are printed, never asserted."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_dsmb_report.py"
SECONDS = r"\d+\.\d\d s"
EXPECTED_LINES = [
    rf"projection \(Projector\.project\) +{SECONDS} +[\d,]+ events/s, [\d,]+ rows/s",
    rf"SQL only: SELECT \* fetched by asyncpg +{SECONDS} +\d+\.\d\dx raw read",
    rf"raw read: SELECT \* of fact tables +{SECONDS} +\(baseline\)",
    rf"load_snapshot at the cut-off +{SECONDS} +\d+\.\d\dx raw read",
    rf"all_rollups +{SECONDS} +12 tables",
    rf"write_report \(rollups\+CSV\+plots\+HTML\) +{SECONDS} +16 files",
    rf"report: load_snapshot \+ write_report +{SECONDS} +\d+\.\d\dx raw read",
    rf"safetymon dsmb-report \(own process\) +{SECONDS} +exit 0",
]


def test_the_benchmark_runs_small_and_prints_its_figures(postgres_url: str, tmp_path: Path) -> None:
    figures_path = tmp_path / "figures.json"
    command = [sys.executable, str(BENCH), "--subjects", "50", "--repeats", "1"]
    command += ["--database-url", postgres_url, "--json", str(figures_path)]

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "43 subjects:" in out and "50 subjects:" in out
    for pattern in EXPECTED_LINES:
        assert len(re.findall(pattern, out)) == 2, pattern  # once per cohort
    assert re.search(r"report for 43 subjects: \d+\.\d s \(target seconds\)", out)
    assert re.search(r"report for 50 subjects: \d+\.\d s \(target < 60 s\)", out)
    figures = json.loads(figures_path.read_text())
    assert [f["subjects"] for f in figures] == [43, 50]
    for f in figures:
        assert f["command_exit"] == 0
        assert 0 < f["snapshot_rows"] <= f["raw_rows"] <= f["rows"] < f["events"]
        assert f["tables"] == 12 and f["files"] == 16
