"""The one shape every benchmark reports in: figures, each against a baseline measured in the same
run where there is one, and the target it is held to (printed, never asserted).

A benchmark builds `Figure`s and calls `emit(name, params, figures, json_path)`: a table on stdout
and, with a path, a JSON document (`bench/run.py` gathers them into bench/results/)."""

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    metric: str  # what was measured, e.g. "grader through Kafka"
    value: float
    unit: str  # e.g. "events/s", "ms", "MB"
    baseline: str | None = None  # what it is compared with, measured in the same run
    baseline_value: float | None = None
    # The target: `value` (or the ratio to the baseline, with on="ratio") >= or <= `target`.
    target: float | None = None
    target_is: Literal[">=", "<="] = ">="
    target_on: Literal["value", "ratio"] = "value"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0) or self.value is None:
            return None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        measured = self.ratio if self.target_on == "ratio" else self.value
        if self.target is None or measured is None:
            return None
        return measured >= self.target if self.target_is == ">=" else measured <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return ""
        what = "x baseline" if self.target_on == "ratio" else f" {self.unit}"
        return f"{self.target_is} {self.target:,.6g}{what}"

    def as_json(self) -> dict[str, Any]:
        derived = {"ratio": self.ratio, "met": self.met, "target_text": self.target_text()}
        return asdict(self) | derived


def host() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "system": platform.platform(),
    }


def commit() -> str:
    """The code measured: the checkout's commit, "+changes" when files differ from it."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:  # no git here (an image without it): the commit is unknown
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return head + ("+changes" if changed else "")


def table(name: str, figures: list[Figure]) -> str:
    lines = [f"== {name}"]
    for f in figures:
        ratio = f"{f.ratio:.3g}x {f.baseline}" if f.ratio is not None else ""
        verdict = {True: "met", False: "NOT MET", None: ""}[f.met]
        target = f"target {f.target_text()}: {verdict}" if f.target is not None else ""
        lines.append(f"  {f.metric:<44} {f.value:>14,.1f} {f.unit:<10} {ratio:<40} {target}")
    return "\n".join(lines)


def emit(
    name: str, params: dict[str, Any], figures: list[Figure], json_path: Path | None
) -> dict[str, Any]:
    """Print the figures and write them (with the parameters and the host) to `json_path`."""
    print(table(name, figures), flush=True)
    document = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": params,
        "host": host(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "commit": commit(),
        "figures": [f.as_json() for f in figures],
    }
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    return document
