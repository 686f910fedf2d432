"""Grading a file of lab results: `safetymon grade IN.csv [-o OUT.csv]`.

Input columns (header names case-insensitive, in any order): `lbtestcd` or `loinc` (either; when a
row has both they must name the same test), `value` ("1.5", "1,5", "<0.1"), `unit`; optional `lln`,
`uln` and `baseline` in the row's unit, `fasting` (Y/N/empty), and `site_id`, `sex` (M/F/U/empty)
and `age` (years), which choose the configured reference range for a row sent without its own
LLN and ULN. The delimiter is whichever of `,`, `;` or tab the header uses.

Output: every input column unchanged, then `ctcae_term`, `grade` (0-4; blank when the grade is
undecided or the row cannot be graded) and `reason`, one row per CTCAE term the test feeds
(potassium gives Hypokalemia and Hyperkalemia). A row that cannot be graded (unknown test, a unit
foreign to the test, "pending", a negative value, a malformed LLN) gives one row with a blank term
and grade and the reason. Nothing is dropped and no row stops the file.

Rows stream through (memory does not grow with the file); the resolution of each (test, unit),
numbers and reference-range look-ups are cached in bounded caches. The grading itself is
shared/ctcae.py, applied exactly as `grade_reported` does.
"""

import csv
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import TextIO

from shared.ctcae import (
    TERMS_BY_TEST,
    References,
    TermCriteria,
    TermGrade,
    grade_bounded,
    grade_term,
    grading_system,
)
from shared.lab_values import LabValue, LabValueError, parse_lab_value
from shared.labs import LAB_DEFINITIONS, LabTest, UnitError, UnitSystem, canonical_unit
from shared.labs import resolve_test as _resolve_test
from shared.reference_ranges import ReferenceRangeTable

OUTPUT_COLUMNS = ("ctcae_term", "grade", "reason")
TEST_COLUMNS = ("lbtestcd", "loinc")
REQUIRED_COLUMNS = ("value", "unit")
OPTIONAL_COLUMNS = ("lln", "uln", "baseline", "fasting", "site_id", "sex", "age")
DELIMITERS = (",", ";", "\t")
_CACHE_SIZE = 1 << 16  # entries per cache: bounded memory whatever the file holds

_FASTING = {
    "": None,
    "Y": True,
    "YES": True,
    "TRUE": True,
    "1": True,
    "N": False,
    "NO": False,
    "FALSE": False,
    "0": False,
}
_SEX = {
    "": None,
    "M": "M",
    "MALE": "M",
    "F": "F",
    "FEMALE": "F",
    "U": None,
    "UNK": None,
    "UNKNOWN": None,
    "UNDIFFERENTIATED": None,
}


class InputError(Exception):
    """The file as a whole cannot be graded (missing, unreadable, a required column absent)."""


class Refused(Exception):
    """One row cannot be graded; the message says exactly why."""


@dataclass
class Summary:
    rows_in: int = 0
    rows_out: int = 0
    refused: int = 0  # input rows that could not be graded
    undecided: int = 0  # output rows with a term but no grade

    def line(self, source: str) -> str:
        return (
            f"graded {source}: {self.rows_in} rows in, {self.rows_out} rows out, "
            f"{self.refused} refused, {self.undecided} undecided"
        )


@dataclass(frozen=True, slots=True)
class ResolvedUnit:
    """What a (test, unit) pair resolves to, once per file."""

    test: LabTest
    ucum: str
    terms: tuple[TermCriteria, ...]
    system: UnitSystem  # the printed CTCAE column the value is graded against
    factor: float  # brings a value in `ucum` to `system`'s unit (1.0 when it is already there)


@dataclass(frozen=True, slots=True)
class Columns:
    """Where each field is in a row padded with one blank (absent columns point at the blank)."""

    width: int  # fields in the header
    lbtestcd: int
    loinc: int
    value: int
    unit: int
    lln: int
    uln: int
    baseline: int
    fasting: int
    site_id: int
    sex: int
    age: int

    @classmethod
    def from_header(cls, header: list[str]) -> "Columns":
        positions: dict[str, int] = {}
        for index, name in enumerate(header):
            key = name.strip().lower()
            if key in positions and key in (*TEST_COLUMNS, *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
                raise InputError(f"column '{key}' appears twice in the header")
            positions.setdefault(key, index)
        if not any(name in positions for name in TEST_COLUMNS):
            raise InputError("missing required column: 'lbtestcd' or 'loinc' (the test)")
        for name in REQUIRED_COLUMNS:
            if name not in positions:
                raise InputError(f"missing required column: '{name}'")
        blank = len(header)
        fields = (*TEST_COLUMNS, *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
        return cls(blank, **{name: positions.get(name, blank) for name in fields})


# ---------------------------------------------------------------------------------------------
# One row
# ---------------------------------------------------------------------------------------------


def _resolved_or_error(code: str, unit: str) -> ResolvedUnit | str:
    try:
        test = _resolve_test(code)
    except UnitError as error:
        return str(error)
    definition = LAB_DEFINITIONS[test]
    if not unit.strip() and definition.si_unit != "1":
        accepted = " or ".join(sorted({definition.si_unit, definition.conventional_unit}))
        return f"unit is empty: {test.value} needs a unit convertible to {accepted}"
    try:
        ucum = canonical_unit(test, unit)
        system, factor = grading_system(test, ucum)
    except UnitError as error:
        return str(error)
    return ResolvedUnit(test, ucum, TERMS_BY_TEST[test], system, factor)


def _test_and_unit(lbtestcd: str, loinc: str, unit: str) -> ResolvedUnit | str:
    """The row's test (from lbtestcd, else loinc; both must agree) resolved with its unit."""
    codes = [code for code in (lbtestcd, loinc) if code.strip()]
    if not codes:
        return "no test: lbtestcd and loinc are both empty"
    resolved = _resolved_or_error(codes[0], unit)
    if isinstance(resolved, str) or len(codes) == 1:
        return resolved
    try:
        other = _resolve_test(loinc).value
    except UnitError as error:
        return str(error)
    if other != resolved.test.value:
        return (
            f"lbtestcd '{lbtestcd}' ({resolved.test.value}) and loinc '{loinc}' ({other}) "
            "do not name the same test"
        )
    return resolved


def _number(name: str, text: str) -> LabValue | str:
    if not text.strip():
        return f"{name} is empty"
    try:
        return parse_lab_value(text)
    except LabValueError as error:
        return f"{name} {error}"


def _value(text: str) -> LabValue | str:
    return _number("value", text)


def _limits(
    lln_text: str, uln_text: str, baseline_text: str, fasting_text: str
) -> tuple[float | None, float | None, float | None, bool | None] | str:
    """LLN, ULN, baseline and fasting status as given in the row (None where blank)."""
    numbers: list[float | None] = []
    for name, text in (("lln", lln_text), ("uln", uln_text), ("baseline", baseline_text)):
        if not text.strip():
            numbers.append(None)
            continue
        parsed = _number(name, text)
        if isinstance(parsed, str):
            return parsed
        if parsed.comparator is not None:
            return f"{name} '{text}' is a bound, not a number"
        numbers.append(parsed.number)
    lln, uln, baseline = numbers
    if lln is not None and uln is not None and lln >= uln:
        return f"lln {lln:g} is not below uln {uln:g}"
    fasting_key = fasting_text.strip().upper()
    if fasting_key not in _FASTING:
        return f"fasting '{fasting_text}' is not Y, N or empty"
    return lln, uln, baseline, _FASTING[fasting_key]


class RowGrader:
    """Grades the fields of one row; `ranges` fills LLN/ULN for rows sent without both."""

    def __init__(self, columns: Columns, ranges: ReferenceRangeTable | None) -> None:
        self.columns = columns
        self.ranges = ranges
        c = columns
        self._fields = itemgetter(
            c.lbtestcd, c.loinc, c.unit, c.value, c.lln, c.uln, c.baseline, c.fasting
        )
        # Per grader (one file, one table), bounded: memory does not grow with the file.
        self._test_and_unit = lru_cache(_CACHE_SIZE)(_test_and_unit)
        self._value = lru_cache(_CACHE_SIZE)(_value)
        self._limits = lru_cache(_CACHE_SIZE)(_limits)
        self._range = lru_cache(_CACHE_SIZE)(self._configured_range)

    def __call__(self, fields: list[str]) -> list[TermGrade]:
        """The row's grades, one per term its test feeds; Refused when it cannot be graded."""
        lbtestcd, loinc, unit, value_text, lln_text, uln_text, baseline_text, fasting_text = (
            self._fields(fields)
        )
        resolved = self._test_and_unit(lbtestcd, loinc, unit)
        if isinstance(resolved, str):
            raise Refused(resolved)
        value = self._value(value_text)
        if isinstance(value, str):
            raise Refused(value)
        given = self._limits(lln_text, uln_text, baseline_text, fasting_text)
        if isinstance(given, str):
            raise Refused(given)
        lln, uln, baseline, fasting = given
        source = ""
        if lln is None and uln is None and self.ranges is not None:
            c = self.columns
            found = self._range(
                resolved.test, resolved.ucum, fields[c.site_id], fields[c.sex], fields[c.age]
            )
            if isinstance(found, str):
                raise Refused(found)
            if found is not None:
                lln, uln, source = found
        refs = References(lln, uln, baseline, fasting, source)
        number, system, factor = value.number, resolved.system, resolved.factor
        if factor != 1.0:  # as grade_reported: graded in the SI column
            number, refs = number * factor, refs.scaled(factor)
        if value.comparator is None:
            return [grade_term(criteria, number, system, refs) for criteria in resolved.terms]
        return [
            grade_bounded(_at(criteria, system, refs), number, value.comparator)
            for criteria in resolved.terms
        ]

    def _configured_range(
        self, test: LabTest, ucum: str, site_text: str, sex_text: str, age_text: str
    ) -> tuple[float | None, float | None, str] | str | None:
        """LLN, ULN (in `ucum`) and source of the matching configured range; None when no row
        matches; a string when the row's sex or age cannot be read."""
        key = sex_text.strip().upper()
        if key not in _SEX:
            return f"sex '{sex_text}' is not M, F, U or empty"
        sex = _SEX[key]
        age: float | None = None
        if age_text.strip():
            try:
                age = float(age_text.strip().replace(",", "."))
            except ValueError:
                return f"age '{age_text}' is not a number of years"
            if not 0 <= age < 150:
                return f"age '{age_text}' is not an age in years"
        assert self.ranges is not None
        found = self.ranges.lookup(test, site_text.strip() or None, sex, age)
        if found is None:
            return None
        lln, uln = found.in_unit(ucum)
        return lln, uln, found.describe()


def _at(criteria: TermCriteria, system: UnitSystem, refs: References) -> Callable:
    return lambda value: grade_term(criteria, value, system, refs)


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------


def _delimiter(header_line: str) -> str:
    return max(DELIMITERS, key=header_line.count)


def grade_rows(
    rows: Iterable[list[str]], grader: RowGrader, write: Callable[[list[str]], object]
) -> Summary:
    """Grade every row after the header and write each output row; returns the counts."""
    summary = Summary()
    width = grader.columns.width
    rows_in = rows_out = refused = undecided = 0
    blank = [""]  # absent optional columns point past the row's end, at this blank
    rows = iter(rows)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as error:  # e.g. a field over the csv module's size limit
            rows_in += 1
            refused += 1
            rows_out += 1
            line = getattr(rows, "line_num", -1) + 1  # + the header, read before the reader
            write([""] * width + ["", "", f"line {line} cannot be read as CSV: {error}"])
            continue
        if not row:
            continue  # a blank line is not a row
        rows_in += 1
        try:
            if len(row) < width:  # trailing empty fields left out: written out as empty
                row += [""] * (width - len(row))
            elif len(row) > width:
                raise Refused(f"{len(row)} fields where the header has {width}")
            results = grader(row + blank)
        except Refused as refusal:
            refused += 1
            rows_out += 1
            write([*row, "", "", str(refusal)])
            continue
        except Exception as error:  # a defect, not the row's fault: say so, keep the row, go on
            refused += 1
            rows_out += 1
            write([*row, "", "", f"not graded: internal error {type(error).__name__}: {error}"])
            continue
        for result in results:
            grade = result.grade
            if grade is None:
                undecided += 1
            write([*row, result.term, "" if grade is None else str(grade), result.reason])
        rows_out += len(results)
    summary.rows_in, summary.rows_out = rows_in, rows_out
    summary.refused, summary.undecided = refused, undecided
    return summary


def _lines_with_progress(handle: TextIO, total: int, stderr: TextIO) -> Iterator[str]:
    """The file's lines, advancing a progress bar on stderr by the characters read."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("grading"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stderr), transient=False) as progress:
        task = progress.add_task("grading", total=total)
        done = 0
        for count, line in enumerate(handle):
            done += len(line)
            if not count & 0x3FF:
                progress.update(task, completed=done)
            yield line
        progress.update(task, completed=total)


def _open_source(source: Path) -> TextIO:
    try:
        return source.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    except FileNotFoundError:
        raise InputError(f"no such file: {source}") from None
    except OSError as error:
        raise InputError(f"cannot read {source}: {error.strerror or error}") from None


def _open_output(output: str | None, source: Path, stdout: TextIO) -> ContextManager[TextIO]:
    if output is None:
        return _stdout_keeping_bytes(stdout)
    target = Path(output)
    if target.exists() and target.resolve() == source.resolve():
        raise InputError(f"the output {output} is the input file")
    try:
        return target.open("w", newline="", encoding="utf-8", errors="surrogateescape")
    except OSError as error:
        raise InputError(f"cannot write {output}: {error.strerror or error}") from None


@contextmanager
def _stdout_keeping_bytes(stdout: TextIO) -> Iterator[TextIO]:
    """stdout, writing undecodable input bytes back unchanged (as the file output does)."""
    buffer = getattr(stdout, "buffer", None)
    if buffer is None:
        yield stdout
        return
    stdout.flush()
    wrapper = io.TextIOWrapper(
        buffer, encoding=stdout.encoding or "utf-8", errors="surrogateescape", newline=""
    )
    try:
        yield wrapper
    finally:
        try:
            wrapper.detach()  # flushes; leaves stdout itself open
        except OSError:
            pass  # the reader went away: reported by run()


def run(
    source: str,
    output: str | None,
    ranges: ReferenceRangeTable | None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The command: 0 when the file was graded (some rows may be refused), 2 when it could not
    be (missing file, missing column, unwritable output), with the reason on stderr. Nothing is
    written to the output before the header has been checked."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    path = Path(source)
    try:
        with _open_source(path) as handle:
            first = handle.readline()
            if not first.strip():
                raise InputError(f"{source} is empty: expected a header line")
            delimiter = _delimiter(first)
            header = next(csv.reader([first], delimiter=delimiter))
            columns = Columns.from_header(header)
            lines: Iterable[str] = handle
            # A bar on a terminal; not when the graded rows go to that same terminal.
            if stderr.isatty() and not (output is None and stdout.isatty()):
                lines = _lines_with_progress(handle, max(path.stat().st_size, 1), stderr)
            with _open_output(output, path, stdout) as out:
                writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
                writer.writerow([*header, *OUTPUT_COLUMNS])
                reader = csv.reader(lines, delimiter=delimiter)
                summary = grade_rows(reader, RowGrader(columns, ranges), writer.writerow)
    except InputError as error:
        print(f"error: {error}", file=stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader stopped reading
        if output is None and hasattr(stdout, "fileno"):
            # stdout's own buffer would fail again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        print("error: the output was closed before every row was written", file=stderr)
        return 1
    print(summary.line(source), file=stderr)
    return 0
