"""What the operations tests share: where the Prometheus and Grafana files are, the Debian
Prometheus binaries, the metric catalogue of shared/metrics.py and a reader of PromQL good enough
for the expressions of our dashboards and rules (metric names, label matchers, by/without)."""

import importlib.util
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
# Labels Prometheus gives every scraped series (the `service` of a scrape job, see
# deploy/prometheus/prometheus.yml; consumer metrics export their own).
TARGET_LABELS = frozenset({"job", "instance", "service"})


def tool(name: str) -> str:
    """The path of promtool or prometheus; fail (never skip) saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: scripts/test installs Debian's prometheus package "
            "(apt-get install -y --no-install-recommends prometheus)"
        )
    return path


def load_renderer() -> ModuleType:
    """deploy/grafana/render.py, a script rather than a package module."""
    spec = importlib.util.spec_from_file_location("grafana_render", GRAFANA_DIR / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARD_FILES}


@dataclass(frozen=True)
class Rule:
    group: str
    alert: str
    expr: str
    annotations: dict[str, str]


def alert_rules() -> list[Rule]:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [
        Rule(group["name"], rule["alert"], rule["expr"], rule.get("annotations", {}))
        for group in document["groups"]
        for rule in group["rules"]
    ]


def catalogue() -> dict[str, frozenset[str]]:
    """Every series name safetymon exports (a counter's _total, a histogram's _bucket, _sum
    and _count), with the label names it carries."""
    names: dict[str, frozenset[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = frozenset(metric._labelnames)
        if metric._type == "counter":
            names[f"{metric._name}_total"] = labels
        elif metric._type == "histogram":
            names[f"{metric._name}_bucket"] = labels | {"le"}
            names[f"{metric._name}_sum"] = labels
            names[f"{metric._name}_count"] = labels
        else:
            names[metric._name] = labels
    return names


def exported_metrics() -> set[str]:
    """The catalogue's metrics by their family name (a histogram once)."""
    return {
        metric._name + ("_total" if metric._type == "counter" else "")
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }


# --- PromQL, as far as these expressions need -----------------------------------------------
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
METRIC = re.compile(r"\b(safetymon_[a-z_]+|up)\b(?!\s*\()")
SELECTOR = re.compile(r"\b(safetymon_[a-z_]+|up)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(by|without|on|ignoring)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """Series names in `expr` (label values and legend strings aside)."""
    return set(METRIC.findall(STRING.sub('""', expr)))


def family(name: str) -> str:
    """A histogram series' family (its _bucket/_sum/_count stripped); other names unchanged."""
    return re.sub(r"_(bucket|sum|count)$", "", name)


def matchers(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher in `expr`."""
    return [
        (metric, label, op, value)
        for metric, body in SELECTOR.findall(expr)
        for label, op, value in MATCHER.findall(body)
    ]


def groupings(expr: str) -> list[tuple[str, list[str], set[str]]]:
    """(keyword, labels, metrics it applies to) of every by/without/on/ignoring clause: for an
    aggregation, the metrics of its argument, in either form (`sum by (l) (x)`, `sum (x) by
    (l)`); for a binary operator's on/ignoring, those of the whole expression."""
    bare = STRING.sub('""', expr)
    found = []
    for match in GROUPING.finditer(bare):
        keyword, labels = match.group(1), [x.strip() for x in match.group(2).split(",") if x]
        if keyword in ("on", "ignoring"):
            scope = bare
        elif bare[: match.start()].rstrip().endswith(")"):
            scope = _group_ending_at(bare, bare[: match.start()].rstrip())
        else:
            scope = _group_starting_after(bare, match.end())
        found.append((keyword, labels, metric_names(scope)))
    return found


def _group_starting_after(text: str, position: int) -> str:
    opening = text.index("(", position)
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[opening : index + 1]
    raise ValueError(f"unbalanced parentheses in {text}")


def _group_ending_at(text: str, before: str) -> str:
    closing = len(before) - 1
    depth = 0
    for index in range(closing, -1, -1):
        depth += {")": 1, "(": -1}.get(text[index], 0)
        if depth == 0:
            return text[index : closing + 1]
    raise ValueError(f"unbalanced parentheses in {text}")
