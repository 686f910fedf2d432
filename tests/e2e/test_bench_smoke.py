"""`make bench` cannot rot: bench/run.py runs the grading-core and grader-through-Kafka
benchmarks at their smoke size against the test broker and writes every figure; a run of one
benchmark keeps the other's latest figures in latest.json. (The latency,
rebuild and memory benchmarks have smoke tests of their own, which also check what they
measured.) Timings are printed, never asserted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_runner_runs_each_benchmark_small_and_writes_its_figures(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": postgres_url}
    done = run_smoke(env, tmp_path, "core", "grader")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    combined = json.loads((tmp_path / "latest.json").read_text())
    assert combined["failed"] == [] and combined["smoke"] is True
    by_name = {b["benchmark"]: b for b in combined["benchmarks"]}
    assert set(by_name) == {"grading core", "grader through Kafka"}
    for document in by_name.values():
        for figure in document["figures"]:
            assert math.isfinite(figure["value"]) and figure["value"] > 0, figure
    grader = {f["metric"]: f for f in by_name["grader through Kafka"]["figures"]}
    raw = grader["raw aiokafka consume -> produce -> commit"]
    assert raw["value"] == max(raw["notes"]["first_and_last_run"])  # run first and last
    through_kafka = grader["grader service through Kafka"]
    assert through_kafka["baseline"] == "raw pass-through" and through_kafka["ratio"] > 0
    assert through_kafka["notes"]["assessments_out"] > 0
    codec = grader["the same, each event decoded and encoded again"]
    assert codec["baseline"] == "raw pass-through" and codec["ratio"] > 0
    scaled = grader["two graders sharing the topic's partitions"]
    assert scaled["baseline"] == "one grader" and scaled["ratio"] > 0
    assert scaled["notes"]["assessments_out"] == through_kafka["notes"]["assessments_out"]
    assert "grader through Kafka" in done.stdout and "target >= 0.5x baseline" in done.stdout

    # One benchmark again: latest.json keeps the other's figures, each with its own time.
    again = run_smoke(env, tmp_path, "core")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    merged = json.loads((tmp_path / "latest.json").read_text())
    assert merged["kept_from_earlier_runs"] == ["grader"]
    kept = {b["benchmark"]: b for b in merged["benchmarks"]}
    assert (
        kept["grader through Kafka"]["measured_at"]
        == by_name["grader through Kafka"]["measured_at"]
    )
    assert kept["grading core"]["measured_at"] >= by_name["grading core"]["measured_at"]
    assert all(b["commit"] for b in merged["benchmarks"])


def run_smoke(env: dict[str, str], out: Path, *names: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "bench/run.py", "--smoke", "--only", *names, "--out", str(out)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
