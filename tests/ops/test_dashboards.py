"""The Grafana dashboards and the alert rules against what the services really export: every
panel is valid Grafana dashboard JSON (schema 39) on the provisioned Prometheus datasource; every
metric a dashboard query or a rule expression names is in the catalogue of shared/metrics.py, and
every label it matches on or groups by is one that metric has (or one Prometheus adds: job,
instance, service); every metric of the catalogue is on some dashboard. Whether the queries return
data from the running services is tests/ops/test_live_prometheus.py's part."""

import pytest
import yaml

from tests.ops.support import (
    GRAFANA_DIR,
    TARGET_LABELS,
    alert_rules,
    catalogue,
    dashboards,
    exported_metrics,
    family,
    groupings,
    load_renderer,
    matchers,
    metric_names,
)

render = load_renderer()
PANEL_TYPES = {"row", "timeseries", "stat", "table"}


def all_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every dashboard query and every rule expression."""
    found = [
        (f"{name}: {query.panel} [{query.ref_id}]", query.expr)
        for name, dashboard in dashboards().items()
        for query in render.queries(dashboard)
    ]
    found += [(f"alerts.yml: {rule.alert}", rule.expr) for rule in alert_rules()]
    return found


EXPRESSIONS = all_expressions()
EXPRESSION_IDS = [where for where, _ in EXPRESSIONS]


def provisioned_datasource_uids() -> set[str]:
    path = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
    return {source["uid"] for source in yaml.safe_load(path.read_text())["datasources"]}


def test_both_dashboards_exist() -> None:
    assert set(dashboards()) == {"pipeline", "safety"}


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_the_dashboard_is_grafana_dashboard_json(name: str) -> None:
    dashboard = dashboards()[name]
    assert dashboard["uid"] == f"safetymon-{name}"
    assert dashboard["title"] and dashboard["schemaVersion"] >= 36
    laid_out = render.panels(dashboard)
    assert len({panel["id"] for panel in laid_out}) == len(laid_out), "panel ids repeat"
    taken: set[tuple[int, int]] = set()
    for panel in laid_out:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            assert "targets" not in panel
            continue
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(set(ref_ids)) == len(ref_ids), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_panel_and_query_uses_the_provisioned_datasource(name: str) -> None:
    uids = provisioned_datasource_uids()
    for panel in render.panels(dashboards()[name]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["datasource"]["uid"] in uids
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, f"{panel['title']} {target['refId']}"


def test_the_dashboards_are_provisioned_from_the_directory_grafana_reads() -> None:
    path = GRAFANA_DIR / "provisioning" / "dashboards" / "safetymon.yml"
    (provider,) = yaml.safe_load(path.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=EXPRESSION_IDS)
def test_every_metric_queried_is_in_the_catalogue(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr}"
    unknown = names - catalogue().keys() - {"up"}
    assert not unknown, f"{where}: {sorted(unknown)} not exported (shared/metrics.py)"


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=EXPRESSION_IDS)
def test_every_label_used_is_one_its_metric_has(where: str, expr: str) -> None:
    known = catalogue() | {"up": frozenset()}
    for metric, label, _, _ in matchers(expr):
        assert label in known[metric] | TARGET_LABELS, f"{where}: {metric} has no label {label}"
    for keyword, labels, metrics in groupings(expr):
        assert metrics, f"{where}: {keyword} ({labels}) applies to no metric"
        for label in labels:
            for metric in metrics:
                assert label in known[metric] | TARGET_LABELS, (
                    f"{where}: {keyword} ({label}) but {metric} has no label {label}"
                )


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=EXPRESSION_IDS)
def test_quantiles_are_taken_over_buckets_grouped_by_le(where: str, expr: str) -> None:
    if "histogram_quantile" not in expr:
        return
    assert all(name.endswith("_bucket") for name in metric_names(expr)), where
    assert any("le" in labels for keyword, labels, _ in groupings(expr) if keyword == "by"), where


def test_every_metric_of_the_catalogue_is_on_a_dashboard() -> None:
    shown = {
        family(name)
        for name, dashboard in dashboards().items()
        for query in render.queries(dashboard)
        for name in metric_names(query.expr)
    }
    assert exported_metrics() - shown == set()


def test_queries_use_only_grafanas_builtin_variables() -> None:
    """The live test and the renderer replace these; a template variable would need a value."""
    for name, dashboard in dashboards().items():
        assert dashboard["templating"]["list"] == [], name
        for query in render.queries(dashboard):
            expanded = render.expand(query.expr)
            assert "$" not in expanded, f"{name}: {query.panel}"


def test_the_promql_reader_finds_names_labels_and_scopes() -> None:
    """The reader the checks above rely on, on forms the dashboards use."""
    expr = (
        "histogram_quantile(0.5, sum by (le, severity) (rate(x_bucket[1h]))) + sum(rate("
        'safetymon_labs_graded_total{grade=~"3|4", term!="up"}[5m])) by (term) and on(job) up'
    )
    assert metric_names(expr) == {"safetymon_labs_graded_total", "up"}
    assert matchers(expr) == [
        ("safetymon_labs_graded_total", "grade", "=~", "3|4"),
        ("safetymon_labs_graded_total", "term", "!=", "up"),
    ]
    assert [(keyword, labels, metrics) for keyword, labels, metrics in groupings(expr)] == [
        ("by", ["le", "severity"], set()),
        ("by", ["term"], {"safetymon_labs_graded_total"}),
        ("on", ["job"], {"safetymon_labs_graded_total", "up"}),
    ]
