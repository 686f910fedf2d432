"""bench/bench_grader_memory.py run small against the real broker, so the benchmark cannot rot:
it exits 0, its figures are finite, and its check of the grader's state passed. The memory it
measures is printed, never asserted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_grader_memory.py"


def test_the_benchmark_runs_small_and_checks_the_graders_state(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    figures_path = tmp_path / "figures.json"
    command = [sys.executable, str(BENCH), "--smoke", "--json", str(figures_path)]
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "state check: passed" in done.stdout
    document = json.loads(figures_path.read_text())
    assert document["params"]["subjects"] == 500
    figures = document["figures"]
    assert all(math.isfinite(f["value"]) for f in figures)
    resident = figures[0]
    assert resident["unit"] == "MB" and resident["target"] == 300.0
    assert resident["target_is"] == "<=" and resident["baseline_value"] > 0
    notes = resident["notes"]
    assert notes["state_check"] is True and not notes["aborted"]
    assert notes["rebuilt_subjects"] == 500 and notes["graded_probes"] > 0
    assert notes["explained"] and all(e["matches"] for e in notes["explained"])
