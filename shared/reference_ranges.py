"""Configured reference ranges, for results sent without their LLN/ULN.

A row gives a range for a test, optionally narrowed to a site, a sex and an age band (inclusive
years). The most specific matching row wins (site beats no site, sex beats either sex, a closed age
band beats an open one). Never a silent default: a result with neither its own range nor a
matching row is graded without one, and its reason says so. The shipped table
(shared/data/reference_ranges.csv) holds Chinese national adult reference intervals, each row with
its source; a site's own table is configured with REFERENCE_RANGES_FILE.
"""

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from shared.labs import LabTest, canonical_unit, convert


class ReferenceRangeError(ValueError):
    """A reference-range table row that cannot be used; the message names the row and field."""


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    test: LabTest
    unit: str  # UCUM
    lln: float | None
    uln: float | None
    source: str
    site_id: str | None = None
    sex: str | None = None
    age_min: int | None = None
    age_max: int | None = None

    def matches(self, site_id: str | None, sex: str | None, age: float | None) -> bool:
        if self.site_id and self.site_id != site_id:
            return False
        if self.sex and self.sex != sex:
            return False
        if self.age_min is not None and (age is None or age < self.age_min):
            return False
        # Bands are in whole years: "18-59" covers everyone who has not yet turned 60.
        return self.age_max is None or (age is not None and age < self.age_max + 1)

    def specificity(self) -> tuple[int, int, int]:
        age_band = (self.age_min is not None) + (self.age_max is not None)
        return (self.site_id is not None, self.sex is not None, age_band)

    def in_unit(self, unit: str) -> tuple[float | None, float | None]:
        def f(x: float | None) -> float | None:
            return None if x is None else convert(self.test, x, self.unit, unit)

        return f(self.lln), f(self.uln)

    def describe(self) -> str:
        scope = ", ".join(
            part
            for part in (
                f"site {self.site_id}" if self.site_id else "",
                {"M": "male", "F": "female"}.get(self.sex or "", ""),
                _age_band(self.age_min, self.age_max),
            )
            if part
        )
        return f"configured reference range ({scope or 'all subjects'}; {self.source})"


def _age_band(low: int | None, high: int | None) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f"age >= {low}"
    return f"age {low or 0}-{high}"


class ReferenceRangeTable:
    def __init__(self, ranges: list[ReferenceRange]) -> None:
        self._by_test: dict[LabTest, list[ReferenceRange]] = {}
        for reference in ranges:
            self._by_test.setdefault(reference.test, []).append(reference)
        for candidates in self._by_test.values():
            candidates.sort(key=ReferenceRange.specificity, reverse=True)

    def lookup(
        self,
        test: LabTest,
        site_id: str | None = None,
        sex: str | None = None,
        age: float | None = None,
    ) -> ReferenceRange | None:
        for reference in self._by_test.get(test, ()):
            if reference.matches(site_id, sex, age):
                return reference
        return None

    def __len__(self) -> int:
        return sum(len(candidates) for candidates in self._by_test.values())

    @classmethod
    def from_csv(cls, text: str, origin: str) -> "ReferenceRangeTable":
        rows = csv.DictReader(text.splitlines())
        return cls([_parse_row(row, f"{origin} line {n}") for n, row in enumerate(rows, start=2)])


def _parse_row(row: dict[str, str], where: str) -> ReferenceRange:
    def number(field: str) -> float | None:
        text = (row.get(field) or "").strip()
        try:
            return float(text) if text else None
        except ValueError:
            raise ReferenceRangeError(f"{where}: {field} '{text}' is not a number") from None

    try:
        test = LabTest(row["test"])
        unit = canonical_unit(test, row["unit"])
    except (KeyError, ValueError) as error:
        raise ReferenceRangeError(f"{where}: {error}") from None
    lln, uln = number("lln"), number("uln")
    if lln is None and uln is None:
        raise ReferenceRangeError(f"{where}: a range needs lln, uln or both")
    if lln is not None and uln is not None and lln >= uln:
        raise ReferenceRangeError(f"{where}: lln {lln} is not below uln {uln}")
    sex = (row.get("sex") or "").strip().upper() or None
    if sex not in (None, "M", "F"):
        raise ReferenceRangeError(f"{where}: sex must be M, F or empty, not '{sex}'")
    ages = number("age_min"), number("age_max")
    return ReferenceRange(
        test=test,
        unit=unit,
        lln=lln,
        uln=uln,
        source=(row.get("source") or "").strip(),
        site_id=(row.get("site_id") or "").strip() or None,
        sex=sex,
        age_min=None if ages[0] is None else int(ages[0]),
        age_max=None if ages[1] is None else int(ages[1]),
    )


@cache
def load_reference_ranges(path: str | None = None) -> ReferenceRangeTable:
    """The table at `path`, or the shipped one."""
    if path:
        return ReferenceRangeTable.from_csv(Path(path).read_text(), path)
    shipped = resources.files("shared") / "data" / "reference_ranges.csv"
    return ReferenceRangeTable.from_csv(shipped.read_text(), "shared/data/reference_ranges.csv")
