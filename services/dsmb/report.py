"""`safetymon dsmb-report`: the rollups at a cut-off as an HTML report (Jinja2), every table
also as CSV, and three plots (matplotlib): eDISH, swimmer, toxicity boundary."""

import asyncio
import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

from services.alerts.db import create_engine
from services.dsmb.rollups import (
    RollupTable,
    Snapshot,
    all_rollups,
    first_doses,
    load_snapshot,
    off_treatment,
    toxicity_count,
)
from shared.ae_dictionary import AeDictionary, load_ae_dictionary
from shared.labs import LabTest
from shared.protocol import Protocol

# eDISH reference lines: ALT 3 x ULN, total bilirubin 2 x ULN (FDA guidance, Drug-Induced Liver
# Injury: Premarketing Clinical Evaluation, 2009; Hy's law as in the protocol's HYS-LAW signal).
EDISH_ALT_ULN = 3.0
EDISH_BILIRUBIN_ULN = 2.0
SWIMMER_MAX_SUBJECTS = 60  # beyond this a swimmer plot is unreadable; the first ones by id


@dataclass(frozen=True)
class Report:
    directory: Path
    html: Path
    tables: list[RollupTable]


def write_report(
    snapshot: Snapshot, protocol: Protocol, dictionary: AeDictionary, out_dir: Path
) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = all_rollups(snapshot, protocol, dictionary)
    for table in tables:
        write_csv(table, out_dir / f"{table.name}.csv")
    plots = {
        "edish": edish_plot(snapshot, out_dir / "edish.png"),
        "swimmer": swimmer_plot(snapshot, protocol, out_dir / "swimmer.png"),
        "boundary": boundary_plot(snapshot, protocol, out_dir / "toxicity_boundary.png"),
    }
    environment = Environment(
        loader=PackageLoader("services.dsmb", "templates"), autoescape=select_autoescape()
    )
    html = environment.get_template("report.html.j2").render(
        study_id=protocol.study_id,
        title=protocol.title,
        cutoff=snapshot.cutoff.isoformat(),
        tables=tables,
        plots={name: path.name for name, path in plots.items() if path is not None},
    )
    html_path = out_dir / "index.html"
    html_path.write_text(html, encoding="utf-8")
    return Report(out_dir, html_path, tables)


async def report_from_database(
    database_url: str, cutoff: datetime, protocol: Protocol, out_dir: Path
) -> Report:
    """The report as of `cutoff` from the read models in `database_url`."""
    engine = create_engine(database_url)
    try:
        snapshot = await load_snapshot(engine, cutoff)
    finally:
        await engine.dispose()
    # Plotting and templating are CPU-bound: off the event loop.
    return await asyncio.to_thread(write_report, snapshot, protocol, load_ae_dictionary(), out_dir)


def write_csv(table: RollupTable, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(table.columns)
        writer.writerows(table.rows)


def peak_uln_multiples(snapshot: Snapshot) -> dict[str, tuple[float, float]]:
    """Subject -> (peak ALT / ULN, peak total bilirubin / ULN), for subjects with both."""
    peaks: dict[str, dict[str, float]] = defaultdict(dict)
    for lab in snapshot.lab_grades:
        ratio = lab["value_per_uln"]
        if ratio is None or lab["test"] not in (LabTest.ALT.value, LabTest.TOTAL_BILIRUBIN.value):
            continue
        by_test = peaks[lab["subject_id"]]
        by_test[lab["test"]] = max(ratio, by_test.get(lab["test"], 0.0))
    return {
        subject: (tests[LabTest.ALT.value], tests[LabTest.TOTAL_BILIRUBIN.value])
        for subject, tests in peaks.items()
        if LabTest.ALT.value in tests and LabTest.TOTAL_BILIRUBIN.value in tests
    }


def edish_plot(snapshot: Snapshot, path: Path) -> Path:
    peaks = peak_uln_multiples(snapshot)
    figure = Figure(figsize=(6.5, 5.5))
    axes = figure.subplots()
    if peaks:
        alt, bilirubin = zip(*peaks.values(), strict=True)
        axes.scatter(alt, bilirubin, s=18, alpha=0.7, color="#1f77b4")
        for subject, (x, y) in peaks.items():
            if x >= EDISH_ALT_ULN and y >= EDISH_BILIRUBIN_ULN:
                axes.annotate(
                    subject, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(0.1, 100)
    axes.set_ylim(0.1, 100)
    axes.axvline(EDISH_ALT_ULN, color="grey", linestyle="--", linewidth=1)
    axes.axhline(EDISH_BILIRUBIN_ULN, color="grey", linestyle="--", linewidth=1)
    axes.fill_between([EDISH_ALT_ULN, 100], EDISH_BILIRUBIN_ULN, 100, color="red", alpha=0.08)
    axes.text(30, 40, "Possible Hy's law", ha="center", fontsize=9, color="darkred")
    axes.text(30, 0.15, "Temple's corollary", ha="center", fontsize=9)
    axes.text(0.3, 40, "Hyperbilirubinaemia", ha="center", fontsize=9)
    axes.set_xlabel("Peak ALT (x ULN)")
    axes.set_ylabel("Peak total bilirubin (x ULN)")
    axes.set_title(f"eDISH: {len(peaks)} subjects")
    return _save(figure, path)


def swimmer_plot(snapshot: Snapshot, protocol: Protocol, path: Path) -> Path:
    first = first_doses(snapshot)
    subjects = sorted(first)[:SWIMMER_MAX_SUBJECTS]
    cycle = timedelta(days=protocol.regimen.cycle_length_days)
    # A bar runs to the end of the last cycle started; an arrow marks a subject still on treatment.
    last_cycle_start: dict[str, datetime] = {}
    for dose in snapshot.doses:
        s, start = dose["subject_id"], dose["administered_at"] - timedelta(days=dose["day"] - 1)
        last_cycle_start[s] = max(start, last_cycle_start.get(s, start))
    off = off_treatment(snapshot)

    def days(subject: str, at: datetime) -> float:
        return (at - first[subject]) / timedelta(days=1)

    figure = Figure(figsize=(9, 1.5 + 0.22 * len(subjects)))
    axes = figure.subplots()
    for row, s in enumerate(subjects):
        end = days(s, last_cycle_start[s] + cycle)
        axes.barh(row, end, color="#d9d9d9" if s in off else "#9ecae1", height=0.6)
        if s not in off:
            axes.annotate("", (end + 6, row), (end, row), arrowprops={"arrowstyle": "->"})
    markers = {"hold": ("|", "orange"), "reduce": ("v", "purple"), "discontinue": ("x", "red")}
    for action, (marker, colour) in markers.items():
        points = [
            (days(d["subject_id"], d["decided_for"]), subjects.index(d["subject_id"]))
            for d in snapshot.decisions
            if d["action"] == action and d["subject_id"] in subjects
        ]
        if points:
            axes.scatter(*zip(*points, strict=True), marker=marker, color=colour, label=action)
    doses = [
        (days(d["subject_id"], d["administered_at"]), subjects.index(d["subject_id"]))
        for d in snapshot.doses
        if d["subject_id"] in subjects and d["day"] == 1
    ]
    if doses:
        axes.scatter(*zip(*doses, strict=True), marker=".", color="black", s=8, label="day 1 dose")
    deaths = [subjects.index(s) for s, reason in off.items() if reason == "death" and s in subjects]
    for row in deaths:
        axes.annotate("death", (0, row), fontsize=7, color="black")
    axes.set_yticks(range(len(subjects)), subjects, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("Days from first dose")
    title = f"Treatment and dose modifications ({len(subjects)} of {len(first)} treated subjects)"
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=7)
    return _save(figure, path)


def boundary_plot(snapshot: Snapshot, protocol: Protocol, path: Path) -> Path | None:
    monitoring = protocol.toxicity_monitoring
    count = toxicity_count(snapshot, protocol)
    if monitoring is None or count is None:
        return None
    boundary = monitoring.rule().boundary()
    points = [(n, x) for n, x in enumerate(boundary, start=1) if x is not None]
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    axes.step(*zip(*points, strict=True), where="post", color="red", label="stop at or above")
    axes.scatter(
        [count.evaluable],
        [count.events],
        color="black",
        zorder=3,
        label=f"now: {count.events} of {count.evaluable} ({count.status.value})",
    )
    axes.set_xlabel("Evaluable subjects")
    axes.set_ylabel("Subjects with the toxicity event")
    axes.set_xlim(0, monitoring.max_subjects + 1)
    axes.set_ylim(0, max(x for _, x in points) + 1)
    axes.set_title("Toxicity stopping boundary")
    axes.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
