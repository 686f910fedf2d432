"""bench/bench_sdtm_import.py run small through the live pipeline, so the benchmark cannot rot:
it exits 0, imports and grades every row, and prints every figure. Timings are printed, never
asserted."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_import_benchmark_runs_small_and_prints_its_figures(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    figures_path = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "bench/bench_sdtm_import.py", "--rows", "300", "--json", figures_path],
        cwd=ROOT,
        env=os.environ | {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for line in (
        r"accepted / rejected +300 / 0",
        r"safetymon import lb\.csv +[\d,]+ rows/s \(\d+\.\d s; x\d+\.\d\d of the baseline\)",
        r"imported and graded +[\d,]+ rows/s \(\d+\.\d s; 300 results graded\)",
        r"baseline: JSON /v1/labs/batch +[\d,]+ rows/s",
    ):
        assert re.search(line, done.stdout), line
    figures = json.loads(figures_path.read_text())
    assert figures["graded_results"] == figures["accepted"] == 300
