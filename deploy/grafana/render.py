"""Dashboard pictures without Grafana: each panel of a dashboard's JSON is queried from Prometheus
(/api/v1/query_range, or /api/v1/query for instant table targets) and drawn with matplotlib where
Grafana would put it (gridPos), one line per series, labelled by the target's legendFormat.

    .venv/bin/python deploy/grafana/render.py --prometheus http://127.0.0.1:9090 --minutes 30 \\
        --out docs/operate

writes docs/operate/pipeline.png and safety.png from deploy/grafana/dashboards/*.json. Grafana is
packaged neither for Debian nor for PyPI, so the screenshots in docs/operate and the live test
(tests/ops/test_live_prometheus.py) use this. It draws the panel types the dashboards use (row,
timeseries, stat, table) in Grafana's dark theme; it is not a Grafana.
"""

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"

# Grafana's dark theme and its classic series palette.
BACKGROUND, PANEL, BORDER, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e"
PALETTE = (
    "#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0",
    "#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c", "#6d1f62", "#584477",
)  # fmt: skip
NAMED_COLOURS = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#5794f2",
    "purple": "#b877d9",
}
GRID_COLUMNS = 24
GRAFANA_VARIABLE = re.compile(r"\$\{?(__[a-z_]+)\}?")
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Query:
    """One target of one panel, as Grafana would send it."""

    panel: str
    ref_id: str
    expr: str
    instant: bool
    legend: str


@dataclass
class Series:
    labels: dict[str, str]
    times: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def panels(dashboard: dict) -> list[dict]:
    """Every panel in reading order, with those inside collapsed rows."""
    found: list[dict] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return sorted(found, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))


def queries(dashboard: dict) -> list[Query]:
    """Every query of every panel (rows have none)."""
    return [
        Query(
            panel=panel["title"],
            ref_id=target["refId"],
            expr=target["expr"],
            instant=bool(target.get("instant")) and not target.get("range"),
            legend=target.get("legendFormat", ""),
        )
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def expand(expr: str, rate_interval: str = "1m", interval: str = "15s", range_: str = "1h") -> str:
    """`expr` with Grafana's built-in variables replaced as Grafana would; any other variable
    is an error (the dashboards define no template variables)."""
    values = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": range_,
    }

    def value_of(match: re.Match) -> str:
        if match.group(1) not in values:
            raise ValueError(f"unknown Grafana variable {match.group(0)} in {expr}")
        return values[match.group(1)]

    expanded = GRAFANA_VARIABLE.sub(value_of, expr)
    if "$" in expanded:
        raise ValueError(f"unexpanded variable in {expr}")
    return expanded


def legend(fmt: str, labels: dict[str, str]) -> str:
    """A series' name as Grafana shows it: the legendFormat filled in, else its labels."""
    if fmt and fmt != "__auto":
        return LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), fmt).strip()
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in shown.items()) + "}"


def duration(seconds: float) -> str:
    """Prometheus duration syntax, whole seconds."""
    return f"{max(1, round(seconds))}s"


class Prometheus:
    """The two query endpoints of Prometheus' HTTP API."""

    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url = url.rstrip("/")
        self.client = client

    def _get(self, path: str, params: dict[str, str]) -> list[dict]:
        response = self.client.get(f"{self.url}{path}", params=params)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{params.get('query')}: {body.get('error', response.text)}")
        return body["data"]["result"]

    def instant(self, expr: str, at: datetime) -> list[Series]:
        result = self._get("/api/v1/query", {"query": expr, "time": str(at.timestamp())})
        return [
            Series(r["metric"], [datetime.fromtimestamp(r["value"][0], UTC)], [_float(r["value"])])
            for r in result
        ]

    def range(self, expr: str, start: datetime, end: datetime, step_s: float) -> list[Series]:
        params = {
            "query": expr,
            "start": str(start.timestamp()),
            "end": str(end.timestamp()),
            "step": duration(step_s),
        }
        return [
            Series(
                r["metric"],
                [datetime.fromtimestamp(t, UTC) for t, _ in r["values"]],
                [_float(v) for v in r["values"]],
            )
            for r in self._get("/api/v1/query_range", params)
        ]


def _float(sample: list) -> float:
    value = float(sample[1])
    return value if math.isfinite(value) else math.nan  # +Inf quantiles: no bucket high enough


@dataclass
class Frame:
    """Where a panel goes on the figure, in figure fractions."""

    left: float
    bottom: float
    width: float
    height: float


class Renderer:
    """Draws one dashboard onto one figure, panel by panel."""

    def __init__(
        self,
        dashboard: dict,
        prometheus: Prometheus,
        start: datetime,
        end: datetime,
        scrape_s: float = 15.0,
    ) -> None:
        self.dashboard = dashboard
        self.prometheus = prometheus
        self.start, self.end = start, end
        span_s = (end - start).total_seconds()
        self.step_s = max(1.0, span_s / 400)  # ~400 points a line, as Grafana asks for
        # As Grafana computes it: max(4 x scrape interval, step + scrape interval), the scrape
        # interval being the datasource's timeInterval (15 s; a live test's Prometheus: 1 s).
        self.rate_interval = duration(max(4 * scrape_s, self.step_s + scrape_s))
        self.range_ = duration(span_s)

    def figure(self, width_in: float = 20.0) -> Figure:
        laid_out = panels(self.dashboard)
        rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in laid_out)
        self.unit_w = width_in / GRID_COLUMNS
        self.unit_h = self.unit_w * 0.55  # Grafana's cells are about 38 px high, 75 px wide
        header_in = 0.7
        height_in = rows * self.unit_h + header_in
        fig = Figure(figsize=(width_in, height_in), dpi=100, facecolor=BACKGROUND)
        self.fig, self.height_in, self.width_in = fig, height_in, width_in
        self.top_in = header_in
        fig.text(
            0.008,
            1 - 0.4 / height_in,
            f"{self.dashboard['title']}    "
            f"{self.start:%Y-%m-%d %H:%M:%S} to {self.end:%H:%M:%S} UTC",
            color=TEXT,
            fontsize=15,
            fontweight="bold",
            va="center",
        )
        for panel in laid_out:
            self.draw(panel)
        return fig

    def frame(self, grid: dict, margin_in: float = 0.05) -> Frame:
        left_in = grid["x"] * self.unit_w + margin_in
        top_in = self.top_in + grid["y"] * self.unit_h + margin_in
        width_in = grid["w"] * self.unit_w - 2 * margin_in
        height_in = grid["h"] * self.unit_h - 2 * margin_in
        return Frame(
            left_in / self.width_in,
            1 - (top_in + height_in) / self.height_in,
            width_in / self.width_in,
            height_in / self.height_in,
        )

    def draw(self, panel: dict) -> None:
        frame = self.frame(panel["gridPos"])
        if panel["type"] == "row":
            self.fig.text(
                frame.left,
                frame.bottom + frame.height / 2,
                panel["title"],
                color=TEXT,
                fontsize=13,
                fontweight="bold",
                va="center",
            )
            return
        self.fig.add_artist(
            Rectangle(
                (frame.left, frame.bottom),
                frame.width,
                frame.height,
                transform=self.fig.transFigure,
                facecolor=PANEL,
                edgecolor=BORDER,
                linewidth=1,
                zorder=-1,  # behind the panel's axes (figure artists draw in zorder)
            )
        )
        title_h = 0.3 / self.height_in
        self.fig.text(
            frame.left + 0.004,
            frame.bottom + frame.height - title_h / 2,
            panel["title"],
            color=TEXT,
            fontsize=10.5,
            fontweight="bold",
            va="center",
        )
        body = Frame(frame.left, frame.bottom, frame.width, frame.height - title_h)
        draw = {"timeseries": self.timeseries, "stat": self.stat, "table": self.table}
        draw[panel["type"]](panel, body)

    def fetch(self, panel: dict) -> list[tuple[str, Series]]:
        """(legend, series) of every target of the panel."""
        found = []
        for target in panel["targets"]:
            expr = expand(target["expr"], self.rate_interval, duration(self.step_s), self.range_)
            if target.get("instant") and not target.get("range"):
                series = self.prometheus.instant(expr, self.end)
            else:
                series = self.prometheus.range(expr, self.start, self.end, self.step_s)
            for one in series:
                found.append((legend(target.get("legendFormat", ""), one.labels), one))
        return found

    def timeseries(self, panel: dict, body: Frame) -> None:
        series = sorted(self.fetch(panel), key=lambda item: item[0])
        legend_w = body.width * 0.3
        pad_l, pad_b = 0.55 / self.width_in, 0.32 / self.height_in
        ax = self.fig.add_axes(
            (
                body.left + pad_l,
                body.bottom + pad_b,
                body.width - legend_w - pad_l - 0.01,
                body.height - pad_b - 0.08 / self.height_in,
            )
        )
        style_axes(ax, panel["fieldConfig"]["defaults"].get("unit", "short"))
        ax.set_xlim(self.start, self.end)
        if not series:
            no_data(ax)
            return
        # Stacked panels are drawn unstacked: each line stays readable on its own.
        for index, (name, one) in enumerate(series):
            colour = PALETTE[index % len(PALETTE)]
            ax.plot(one.times, one.values, color=colour, linewidth=1.6, label=name)
        if panel["fieldConfig"]["defaults"].get("min") == 0:
            ax.set_ylim(bottom=0)
        handles, names = ax.get_legend_handles_labels()
        crowded = len(names) > 14  # two narrower columns, as many rows as fit
        ax.legend(
            handles,
            [f"{n}  ({_last(s.values)})" for n, (_, s) in zip(names, series, strict=True)],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
            fontsize=6.5 if crowded else 8,
            ncol=2 if crowded else 1,
            columnspacing=0.8,
            labelcolor=TEXT,
            handlelength=1.2,
        )

    def stat(self, panel: dict, body: Frame) -> None:
        series = self.fetch(panel)
        defaults = panel["fieldConfig"]["defaults"]
        if not series:
            ax = self.fig.add_axes((body.left, body.bottom, body.width, body.height))
            ax.set_axis_off()
            no_data(ax)
            return
        width = body.width / len(series)
        for index, (name, one) in enumerate(series):
            value = next((v for v in reversed(one.values) if not math.isnan(v)), math.nan)
            text, colour = stat_text(value, defaults)
            ax = self.fig.add_axes(
                (body.left + index * width + 0.002, body.bottom + 0.002, width - 0.004, body.height)
            )
            ax.set_axis_off()
            ax.add_patch(Rectangle((0, 0), 1, 0.95, facecolor=colour, alpha=0.85))
            ax.text(0.5, 0.55, text, color="white", fontsize=22, fontweight="bold", ha="center")
            ax.text(0.5, 0.18, name, color="white", fontsize=9, ha="center")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)

    def table(self, panel: dict, body: Frame) -> None:
        series = self.fetch(panel)
        ax = self.fig.add_axes((body.left + 0.005, body.bottom, body.width - 0.01, body.height))
        ax.set_axis_off()
        if not series:
            no_data(ax)
            return
        organize = [t for t in panel.get("transformations", []) if t["id"] == "organize"]
        order = organize[0]["options"].get("indexByName", {}) if organize else {}
        columns = sorted(
            {k for _, s in series for k in s.labels} - {"__name__"},
            key=lambda c: (order.get(c, 99), c),
        )
        rows = sorted(series, key=lambda item: -_sortable(item[1].values[-1]))
        fit = max(1, int(body.height * self.height_in / 0.24) - 1)
        cells = [[s.labels.get(c, "") for c in columns] + [_number(s.values[-1])] for _, s in rows]
        if len(cells) > fit:
            cells = [*cells[: fit - 1], ["..."] * len(columns) + [f"{len(cells) - fit + 1} more"]]
        table = ax.table(
            cellText=cells,
            colLabels=[*columns, "Value"],
            loc="upper center",
            cellLoc="left",
            colLoc="left",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8.5)
        for (row, _), cell in table.get_celld().items():
            cell.set_facecolor(PANEL if row else BORDER)
            cell.set_edgecolor(BORDER)
            cell.get_text().set_color(TEXT)
            cell.set_height(0.22 / (body.height * self.height_in))


def style_axes(ax: Axes, unit: str) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=MUTED, labelsize=8)
    ax.grid(color=BORDER, linewidth=0.6)
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_unit(v, unit)))


def no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "No data", color=MUTED, fontsize=12, ha="center", transform=ax.transAxes)


def format_unit(value: float, unit: str) -> str:
    """An axis value as Grafana writes it for the panel's unit."""
    if unit == "s":
        for limit, divisor, suffix in (
            (1, 0.001, " ms"),
            (120, 1, " s"),
            (7200, 60, " min"),
            (2 * 86400, 3600, " h"),
            (math.inf, 86400, " d"),
        ):
            if abs(value) < limit:
                return f"{value / divisor:.3g}{suffix}"
    suffix = {"ops": "/s", "opm": "/min", "reqps": " req/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


def stat_text(value: float, defaults: dict) -> tuple[str, str]:
    """The text (a value mapping's, or the number) and the colour (of the mapping, else the
    highest threshold step reached) of a stat."""
    colour = NAMED_COLOURS["green"]
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or (not math.isnan(value) and value >= step["value"]):
            colour = NAMED_COLOURS.get(step["color"], step["color"])
    text = _number(value)
    for mapping in defaults.get("mappings", []):
        option = mapping.get("options", {}).get(text)
        if mapping.get("type") == "value" and option:
            text = option.get("text", text)
            colour = NAMED_COLOURS.get(option.get("color", ""), colour)
    return text, colour


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"


def _last(values: list[float]) -> str:
    return _number(next((v for v in reversed(values) if not math.isnan(v)), math.nan))


def _sortable(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def render(
    dashboard_file: Path,
    prometheus_url: str,
    start: datetime,
    end: datetime,
    out: Path,
    scrape_s: float = 15.0,
) -> Path:
    """Draw the dashboard of `dashboard_file` for [start, end] into the PNG `out`."""
    dashboard = json.loads(dashboard_file.read_text())
    with httpx.Client(timeout=30) as client:
        prometheus = Prometheus(prometheus_url, client)
        figure = Renderer(dashboard, prometheus, start, end, scrape_s).figure()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, facecolor=BACKGROUND)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="base URL")
    parser.add_argument("--minutes", type=float, default=60, help="the range, ending now")
    parser.add_argument("--end", help="end of the range (ISO 8601, UTC if no offset)")
    parser.add_argument("--scrape-interval", type=float, default=15, help="seconds")
    parser.add_argument("--out", type=Path, default=Path("docs/operate"), help="directory")
    parser.add_argument(
        "dashboards", nargs="*", type=Path, help="dashboard JSON files (default: all)"
    )
    args = parser.parse_args(argv)
    end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    start = end - timedelta(minutes=args.minutes)
    for dashboard in args.dashboards or sorted(DASHBOARDS.glob("*.json")):
        out = args.out / f"{dashboard.stem}.png"
        render(dashboard, args.prometheus, start, end, out, args.scrape_interval)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
