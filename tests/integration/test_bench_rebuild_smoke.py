"""bench/bench_rebuild.py run small against the test broker and PostgreSQL, so the benchmark
cannot rot: it exits 0, its figures are finite and its check of the rebuilt read models passed.
Its timings are printed, never asserted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_rebuild.py"
METRICS = [
    "raw read (read_to_end, 3 topics)",
    "raw read + decode_event",
    "projection alone (Projector.project)",
    "rebuild (safetymon rebuild)",
]


def test_the_benchmark_runs_small_and_its_rebuild_is_checked(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    figures_path = tmp_path / "figures.json"
    command = [sys.executable, str(BENCH), "--smoke", "--json", str(figures_path)]
    command += ["--database-url", postgres_url]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "check passed:" in done.stdout
    document = json.loads(figures_path.read_text())
    assert document["benchmark"] == "read-model rebuild"
    params = document["params"]
    assert params["check"] == {"passed": True, "problems": []}
    assert params["events"] >= 20_000
    assert all(rows > 0 for rows in params["read_model_rows"].values())
    figures = {f["metric"]: f for f in document["figures"]}
    assert list(figures) == METRICS
    for figure in figures.values():
        assert math.isfinite(figure["value"]) and figure["value"] > 0
        assert figure["baseline_value"] is None or math.isfinite(figure["ratio"])
    rebuild = figures["rebuild (safetymon rebuild)"]
    assert (rebuild["target"], rebuild["unit"]) == (20_000, "events/s")
    assert rebuild["notes"]["check_passed"] is True
