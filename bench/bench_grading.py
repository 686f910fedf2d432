"""How fast the CTCAE grading core and `safetymon grade IN.csv` are; prints figures, no asserts.

    .venv/bin/python bench/bench_grading.py [--rows 200000] [--repeats 3] [--csv-rows 1000000]
        [--smoke] [--json PATH]

Lab results per second, single process, best of `--repeats`, on `--rows` realistic results spread
over every test in LAB_DEFINITIONS, in SI, conventional and other accepted units, with reference
ranges (some missing), baselines and fasting status where a term uses them:

  (a) pass-through: the same loop over the same rows, building a trivial tuple (the baseline);
  (b) the core: `grade_term` for each of the result's terms, criteria and unit system resolved
      beforehand; once without and once with the reason text (the CSV writes it for every row);
  (c) `grade_lab(test, value, unit, References)` end to end (resolves unit and system each time).

Then `safetymon grade IN.csv -o OUT.csv` on a `--csv-rows` file generated in /tmp, as a separate
process (start-up included), in rows per second. `--profile` adds a cProfile of (b) and (c).
"""

import argparse
import cProfile
import csv
import io
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import Figure, emit  # noqa: E402
from shared.ctcae import TERMS_BY_TEST, References, grade_lab, grade_term, grading_system  # noqa: E402
from shared.labs import LAB_DEFINITIONS, LabTest, canonical_unit, conversion_factor  # noqa: E402

T = LabTest
# Typical adult reference intervals in each test's SI unit (Chinese national intervals where the
# shipped table has them, usual textbook intervals otherwise). Realistic, not clinical advice.
SI_RANGES: dict[LabTest, tuple[float, float]] = {
    T.WBC: (3.5, 9.5),
    T.ANC: (1.8, 6.3),
    T.LYMPHOCYTES: (1.1, 3.2),
    T.CD4: (0.5, 1.5),
    T.PLATELETS: (125, 350),
    T.HEMOGLOBIN: (115, 175),
    T.INR: (0.8, 1.2),
    T.APTT: (25, 35),
    T.FIBRINOGEN: (2.0, 4.0),
    T.HAPTOGLOBIN: (0.3, 2.0),
    T.ALT: (7, 40),
    T.AST: (13, 35),
    T.ALKALINE_PHOSPHATASE: (35, 100),
    T.GGT: (7, 45),
    T.TOTAL_BILIRUBIN: (3.4, 20.5),
    T.CREATININE: (41, 97),
    T.CREATINE_KINASE: (40, 200),
    T.AMYLASE: (30, 110),
    T.LIPASE: (13, 60),
    T.CHOLESTEROL: (2.8, 5.2),
    T.TRIGLYCERIDES: (0.45, 1.7),
    T.GLUCOSE: (3.9, 6.1),
    T.POTASSIUM: (3.5, 5.3),
    T.SODIUM: (137, 147),
    T.CALCIUM: (2.11, 2.52),
    T.IONIZED_CALCIUM: (1.13, 1.32),
    T.MAGNESIUM: (0.75, 1.02),
    T.PHOSPHATE: (0.85, 1.51),
    T.URATE: (0.15, 0.42),
    T.ALBUMIN: (40, 55),
}
# Other spellings and units sites send, per test (beyond the SI and conventional columns).
OTHER_UNITS: dict[LabTest, tuple[str, ...]] = {
    T.WBC: ("10^9/L", "G/L", "10^3/uL"),
    T.ANC: ("10^9/L", "G/L", "10^3/uL", "cells/uL"),
    T.LYMPHOCYTES: ("10^9/L", "10^3/uL"),
    T.CD4: ("cells/uL",),
    T.PLATELETS: ("10^9/L", "G/L", "10^3/uL"),
    T.HEMOGLOBIN: ("mmol/L",),
    T.ALT: ("IU/L", "ukat/L"),
    T.AST: ("IU/L", "ukat/L"),
    T.CREATININE: ("mmol/L",),
    T.POTASSIUM: ("mEq/L",),
    T.SODIUM: ("mEq/L",),
}
HIGH_ONLY = {t for t in LabTest if all(c.direction == "high" for c in TERMS_BY_TEST[t])}
LOW_ONLY = {t for t in LabTest if all(c.direction == "low" for c in TERMS_BY_TEST[t])}
SITES = ("GZ01", "SH02", "BJ03")


@dataclass(frozen=True, slots=True)
class Result:
    """One lab result as a feed gives it: every number already in `unit`."""

    site: str
    test: LabTest
    value: float
    unit: str  # as written by the site
    lln: float | None
    uln: float | None
    baseline: float | None
    fasting: bool | None


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def _si_value(rng: random.Random, test: LabTest, lln: float, uln: float) -> float:
    """Mostly normal, some mildly and some badly abnormal, in the direction(s) the test grades."""
    u = rng.random()
    width = uln - lln
    if u < 0.70:
        return rng.uniform(lln, uln)
    low = test in LOW_ONLY or (test not in HIGH_ONLY and rng.random() < 0.5)
    if u < 0.92:  # mildly abnormal
        return rng.uniform(lln * 0.6, lln) if low else rng.uniform(uln, uln + 1.5 * width)
    return lln * rng.uniform(0.02, 0.6) if low else uln * rng.uniform(1.5, 25)  # badly abnormal


def _site_labs(
    units: dict[LabTest, list[tuple[str, float]]],
) -> dict[tuple[str, LabTest], tuple[float, float, str, float]]:
    """Each site's laboratory: its own reference range (SI) and the unit it reports, per test."""
    labs = {}
    for site in SITES:
        rng = random.Random(site)
        for test, (lln, uln) in SI_RANGES.items():
            unit, factor = rng.choice(units[test])
            labs[site, test] = (
                lln + (uln - lln) * rng.uniform(-0.1, 0.1),
                uln + (uln - lln) * rng.uniform(-0.1, 0.1),
                unit,
                factor,
            )
    return labs


def generate(n: int, seed: int = 20260501) -> list[Result]:
    """`n` results: each site's lab reports in its own unit with its own range (as real feeds
    do), 10% of results come in another accepted unit (a central or outside lab)."""
    rng = random.Random(seed)
    tests = list(LAB_DEFINITIONS)
    units: dict[LabTest, list[tuple[str, float]]] = {}
    for test, definition in LAB_DEFINITIONS.items():
        spellings = [definition.si_unit, definition.conventional_unit, *OTHER_UNITS.get(test, ())]
        units[test] = [
            (u, float(conversion_factor(test, definition.si_unit, canonical_unit(test, u))))
            for u in dict.fromkeys(spellings)
        ]
    labs = _site_labs(units)
    rows = []
    for _ in range(n):
        test, site = rng.choice(tests), rng.choice(SITES)
        lln, uln, unit, factor = labs[site, test]
        if rng.random() < 0.1:
            unit, factor = rng.choice(units[test])
        value = _sig(_si_value(rng, test, lln, uln) * factor)
        lln_out, uln_out = _sig(lln * factor), _sig(uln * factor)
        if rng.random() < 0.08:  # sent without a reference range
            lln_out = uln_out = None
        baseline = None
        if test in (T.CREATININE, T.FIBRINOGEN, T.HEMOGLOBIN) and rng.random() < 0.5:
            baseline = _sig(rng.uniform(lln, uln) * factor)
        fasting = rng.choice((True, False, None)) if test is T.GLUCOSE else None
        rows.append(Result(site, test, value, unit, lln_out, uln_out, baseline, fasting))
    return rows


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run_core(rows: Sequence[Result], repeats: int, profile: bool) -> list[Figure]:
    refs = [References(r.lln, r.uln, r.baseline, r.fasting) for r in rows]
    prepared = []  # what (b) gets: criteria, system, value and references in the system's unit
    for row, ref in zip(rows, refs, strict=True):
        system, factor = grading_system(row.test, row.unit)
        value, scaled = (
            (row.value, ref) if factor == 1.0 else (row.value * factor, ref.scaled(factor))
        )
        prepared.append((TERMS_BY_TEST[row.test], value, system, scaled))
    end_to_end = [(r.test, r.value, r.unit, ref) for r, ref in zip(rows, refs, strict=True)]

    def passthrough() -> None:
        for terms, value, system, ref in prepared:
            _ = (terms, value, system, ref)

    def core() -> None:
        for terms, value, system, ref in prepared:
            for criteria in terms:
                grade_term(criteria, value, system, ref)

    def core_with_reason() -> None:
        for terms, value, system, ref in prepared:
            for criteria in terms:
                grade_term(criteria, value, system, ref).reason  # noqa: B018

    def lab_end_to_end() -> None:
        for test, value, unit, ref in end_to_end:
            grade_lab(test, value, unit, ref)

    n = len(rows)
    terms = sum(len(p[0]) for p in prepared)
    print(
        f"{n:,} lab results ({terms:,} term grades) over {len(LAB_DEFINITIONS)} tests; "
        f"best of {repeats}; Python {sys.version.split()[0]}, single process"
    )
    base = best_of(repeats, passthrough)
    print(f"  (a) pass-through loop           {n / base:>12,.0f} results/s   (1.0x)")
    rates = {}
    for label, fn in (
        ("(b) grade_term (the core)      ", core),
        ("(b') grade_term + .reason       ", core_with_reason),
        ("(c) grade_lab end to end       ", lab_end_to_end),
    ):
        elapsed = best_of(repeats, fn)
        rates[fn] = n / elapsed
        print(
            f"  {label} {n / elapsed:>12,.0f} results/s   "
            f"({base / elapsed:.4f}x pass-through; {elapsed / n * 1e6:.2f} us/result)"
        )
    target = 200_000
    core_rate = rates[core]
    verdict = "meets" if core_rate >= target else "MISSES"
    print(f"  target for the core: >= {target:,} results/s -> {verdict} ({core_rate:,.0f})")
    loop = "pass-through loop"
    figures = [
        Figure("pass-through loop over the results", n / base, "results/s"),
        Figure("grade_term (the core)", core_rate, "results/s", loop, n / base, target=target),
        Figure("grade_term + reason text", rates[core_with_reason], "results/s", loop, n / base),
        Figure(
            "grade_lab (unit and system resolved)",
            rates[lab_end_to_end],
            "results/s",
            loop,
            n / base,
        ),
    ]
    if profile:
        for label, fn in (("(b) grade_term", core), ("(c) grade_lab", lab_end_to_end)):
            profiler = cProfile.Profile()
            profiler.runcall(fn)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
            print(f"\nprofile of {label} (tottime):\n{out.getvalue()}")
    return figures


def _text(x: float | None, rng: random.Random) -> str:
    if x is None:
        return ""
    text = f"{x:g}"
    decimals = len(text.partition(".")[2])
    # Some sites write a decimal comma ("1,5"); never with 3 decimals, which reads as thousands.
    return text.replace(".", ",") if decimals in (1, 2) and rng.random() < 0.03 else text


def write_csv(path: Path, n: int, seed: int = 7) -> None:
    """A lab extract as a site would send it, in chunks so memory stays small."""
    rng = random.Random(seed)
    columns = ["subject_id", "site_id", "sex", "age", "lbtestcd", "loinc", "value", "unit", "lln",
               "uln", "baseline", "fasting"]  # fmt: skip
    chunk = 50_000
    with path.open("w", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(columns)
        done = 0
        while done < n:
            rows = generate(min(chunk, n - done), seed=rng.randrange(1 << 30))
            for r in rows:
                site = r.site
                use_loinc = rng.random() < 0.3
                value = _text(r.value, rng)
                u = rng.random()
                if u < 0.002:
                    value = "pending"
                elif u < 0.01:
                    value = "<" + value
                lln, uln = _text(r.lln, rng), _text(r.uln, rng)
                out.writerow(
                    [
                        f"{site}-{rng.randrange(1, 200):03d}",
                        site,
                        rng.choice("MF"),
                        rng.randrange(18, 85) if rng.random() < 0.95 else "",
                        "" if use_loinc else r.test.value,
                        LAB_DEFINITIONS[r.test].loinc[0] if use_loinc else "",
                        value,
                        r.unit,
                        lln,
                        uln,
                        _text(r.baseline, rng),
                        {True: "Y", False: "N", None: ""}[r.fasting],
                    ]
                )
            done += len(rows)


def run_csv(n: int) -> list[Figure]:
    directory = Path(tempfile.gettempdir())
    source, target = (
        directory / f"safetymon-bench-{n}.csv",
        directory / f"safetymon-bench-{n}-graded.csv",
    )
    start = time.perf_counter()
    write_csv(source, n)
    print(
        f"\ngenerated {source} ({n:,} rows, {source.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    start = time.perf_counter()
    with source.open(newline="") as handle, target.open("w", newline="") as out:
        write = csv.writer(out, lineterminator="\n").writerow
        for row in csv.reader(handle):
            write([*row, "Neutrophil count decreased", "3", "0.9 10*9/L meets grade 3: ..."])
    copy = time.perf_counter() - start
    print(f"  floor: csv read + write of the same rows, no grading: {n / copy:,.0f} rows/s")
    command = [sys.executable, "-m", "services.cli", "grade", str(source), "-o", str(target)]
    # The same command, then the process's peak resident memory (Linux VmHWM) on stderr.
    measured = [
        sys.executable,
        "-c",
        "import sys; from services.cli import main; rc = main(sys.argv[1:]); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]; "
        "print(hwm[0].strip() if hwm else '', file=sys.stderr); sys.exit(rc)",
        *command[3:],
    ]
    start = time.perf_counter()
    done = subprocess.run(measured, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    summary, _, memory = done.stderr.strip().rpartition("\n")
    print(f"$ {' '.join(command[1:])}\n  exit {done.returncode}; {summary}")
    print(
        f"  {elapsed:.1f} s wall (start-up included): {n / elapsed:,.0f} input rows/s; "
        f"peak memory {memory.replace('VmHWM:', '').strip() or 'unknown'}"
    )
    for path in (source, target):
        if os.environ.get("KEEP_BENCH_FILES") != "1":
            path.unlink(missing_ok=True)
    floor = "csv read + write"
    return [
        Figure("csv read + write, no grading", n / copy, "rows/s"),
        Figure("safetymon grade IN.csv (own process)", n / elapsed, "rows/s", floor, n / copy),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv-rows", type=int, default=1_000_000, help="0 to skip")
    parser.add_argument("--profile", action="store_true", help="cProfile of (b) and (c)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run, to prove it works")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.repeats, args.csv_rows = 5_000, 1, 2_000
    figures = run_core(generate(args.rows), args.repeats, args.profile)
    if args.csv_rows:
        figures += run_csv(args.csv_rows)
    params = {"rows": args.rows, "repeats": args.repeats, "csv_rows": args.csv_rows}
    emit("grading core", params, figures, args.json)


if __name__ == "__main__":
    main()
