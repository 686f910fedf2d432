"""The Prometheus configuration, checked by Prometheus' own promtool (Debian's prometheus package,
which scripts/test installs): the scrape config and the alert rules are valid, and the rules'
unit tests (deploy/prometheus/alerts.test.yml) pass. Also what promtool cannot know: the scrape
targets are our four services on their default ports, and every rule has unit tests where it
fires and where it must not."""

import subprocess

import pytest
import yaml

from shared.settings import Settings
from tests.ops.support import PROMETHEUS_DIR, alert_rules, tool


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("promtool"), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts.test.yml"),
    ],
    ids=" ".join,
)
def test_promtool_accepts(command: tuple[str, ...]) -> None:
    result = promtool(*command)
    assert result.returncode == 0, (
        f"promtool {' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )


def test_the_four_services_are_scraped_on_their_default_ports() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    defaults = Settings.model_fields
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ingest", "grader", "alerts", "dsmb"}
    for name, job in jobs.items():
        # /metrics answers with a redirect to /metrics/.
        assert job["metrics_path"] == "/metrics/", name
        # Consumer metrics carry their own `service` (the consumer group): keep it.
        assert job["honor_labels"] is True, name
        (static,) = job["static_configs"]
        assert static["targets"] == [f"{name}:{defaults[f'{name}_port'].default}"]
        assert static["labels"] == {"service": name}
    assert config["rule_files"] == ["alerts.yml"]


def test_every_rule_has_unit_tests_where_it_fires_and_where_it_does_not() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule.alert]
        assert any(case["exp_alerts"] for case in mine), f"{rule.alert}: never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{rule.alert}: no negative case"


def test_every_rule_has_a_severity_and_a_runbook_section() -> None:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    runbook = (PROMETHEUS_DIR.parents[1] / "docs" / "operate" / "runbook.md").read_text()
    for group in document["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert {"summary", "description", "runbook"} <= rule["annotations"].keys()
            anchor = rule["annotations"]["runbook"].split("#")[1]
            assert anchor == rule["alert"].lower()
            assert f"## {rule['alert']}\n" in runbook, f"{rule['alert']} not in the runbook"
