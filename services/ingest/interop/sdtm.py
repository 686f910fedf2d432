"""CDISC SDTM datasets in: LB, AE, EX and DM, as CSV or SAS transport (XPT v5) files; one ingest
request per row, validated by the JSON API's models like every other format.

Decisions, and why:
- Rows are numbered from 1 for the first data row (the SAS observation number), so a CSV and
  an XPT of the same data give the same numbers; the header line is not counted.
- A row's event is identified by DOMAIN|USUBJID|--SEQ (DM: DM|USUBJID) from source system
  sdtm:STUDYID: re-importing a file gives the same event ids, so nothing changes. STUDYID is
  the sponsor's study code, not necessarily the NCT number, so it is not compared with it.
- A file lacking an SDTM Required variable that safetymon reads (identifiers, the topic
  variable) is refused as a whole; anything else the study needs is checked row by row, so a
  missing column is named in each row's problems.
- SDTM --DTC date-times carry no UTC offset: an import gives the sites' offset (utc_offset,
  "+08:00"), else such a row is refused. A date without a time is refused where an instant is
  needed (specimen collection, dose, site awareness): midnight would be a guess that can put a
  sample on the wrong side of a dose.
- The study needs facts SDTM does not carry; they come as non-standard columns (what a sponsor
  keeps in SUPP-- datasets, merged): AERELDRG (the study drugs an AE is related to,
  comma-separated), AEIMMUNE (Y/N, default N), AEAWRDTC (when the site learned of the event);
  DM's WEIGHT (kg), HEIGHT (cm), CREATBL and CREATBLU (baseline creatinine), LIVERMET (Y/N)
  and PLATINUM (the agent assigned: ARM/ARMCD does not say which).
- Causality: AEREL says related or not but names no drug, and with four drugs attributing the
  event to all of them would put it in every drug's dose rules and related-AE tables. So AERELDRG
  names the drugs; a related AEREL without it is refused, as is a missing AEREL (causality is
  never assumed either way). Possible, probable and definite count as related; unlikely and
  remote as not related (the usual two-way collapse of a five-point scale).
- LB: the standardised result (LBSTRESN, LBSTRESU, LBSTNRLO/HI) is preferred; a bound such as
  "<0.1" (LBSTRESC with LBSTRESN empty) is taken as a bound; else the original result. A test
  the study does not monitor, or LBSTAT NOT DONE, is left out (skipped), not refused.
"""

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Final

import pyreadstat
from pydantic import ValidationError

from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabResultIn,
    SubmissionIn,
)
from services.ingest.interop.common import (
    Conversion,
    Directory,
    InteropError,
    Problem,
    Subject,
    build,
    visit_from_label,
)
from shared.events import Visit
from shared.labs import DIMENSIONLESS, LAB_DEFINITIONS, LabTest

Cell = str | float | None
Row = dict[str, Cell]

DOMAINS = ("LB", "AE", "EX", "DM")
# SDTM Required variables safetymon reads: without one, no row of the file can be read.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "LB": ("STUDYID", "USUBJID", "LBSEQ", "LBTESTCD"),
    "AE": ("STUDYID", "USUBJID", "AESEQ", "AETERM"),
    "EX": ("STUDYID", "USUBJID", "EXSEQ", "EXTRT"),
    "DM": ("STUDYID", "USUBJID", "SITEID", "SEX"),
}
XPT_HEADER = b"HEADER RECORD*******LIB"  # XPORT v5 (LIBRARY) and v8 (LIBV8) library headers
VARIABLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
UTC_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PARTIAL_DATE = re.compile(r"^\d{4}(-(\d{2}|-)){0,2}$")  # "2014", "2014-03", "2014---15"

YES_NO = {"Y": True, "N": False}
RELATED = frozenset(
    {"Y", "RELATED", "POSSIBLE", "POSSIBLY RELATED", "PROBABLE", "PROBABLY RELATED"}
    | {"DEFINITE", "DEFINITELY RELATED"}
)
NOT_RELATED = frozenset(
    {"N", "NOT RELATED", "UNRELATED", "NONE", "UNLIKELY", "UNLIKELY RELATED", "REMOTE"}
)
DOSE_UNITS = {"MG": "mg", "MG/M2": "mg/m2", "AUC": "AUC"}
# Result, unit and reference range columns: standardised, a standardised bound, original.
STANDARD = ("LBSTRESN", "LBSTRESU", "LBSTNRLO", "LBSTNRHI")
STANDARD_BOUND = ("LBSTRESC", "LBSTRESU", "LBSTNRLO", "LBSTNRHI")
ORIGINAL = ("LBORRES", "LBORRESU", "LBORNRLO", "LBORNRHI")
# Fields the publisher refuses after conversion (drugs outside the regimen) -> their columns.
PUBLISHER_FIELDS = {"drug": "EXTRT", "related_drugs": "AERELDRG"}
WHERE = re.compile(r"^row \d+(?:, (?P<column>.+)| \((?P<field>.+)\))?$")
BASELINE_WHY = {
    "WEIGHT": "baseline weight (kg): creatinine clearance (Cockcroft-Gault) for the platinum "
    "dose rules needs it",
    "HEIGHT": "baseline height (cm), part of the study's enrolment record",
    "CREATBL": "baseline serum creatinine: creatinine clearance and 'Creatinine increased' "
    "grading are relative to it",
    "CREATBLU": "the unit of CREATBL (umol/L or mg/dL)",
    "LIVERMET": "liver metastases, Y or N: the hepatic dose rules differ with them, and an "
    "unknown status is never assumed",
    "PLATINUM": "the platinum agent assigned (cisplatin or carboplatin): ARM/ARMCD does not "
    "name it, and its dose rules apply to the agent given",
}


@dataclass(frozen=True)
class Dataset:
    """An SDTM dataset's rows: column names uppercase, cells text, numbers (XPT numeric
    variables) or None (empty). `first_row` numbers the first row (a slice of a file)."""

    domain: str
    rows: list[Row]
    format: str  # "csv", "xpt", or "rows" (rows sent as JSON by `safetymon import`)
    first_row: int = 1


class _Failed:
    """A field whose cell was refused: the row's problem names the column already."""


FAILED: Final = _Failed()
DROPPED = "\x00"  # where of a model error on a field already refused; left out


# A dataset repeats a few visit labels; Visit is frozen, so one object serves every row.
@lru_cache(maxsize=1024)
def _visit_of(label: str | None) -> Visit | str | None:
    """The visit a label names; None when it names no cycle and day (SCREENING 1); or why the
    cycle and day it names are not a visit of the protocol ("CYCLE 0 DAY 1")."""
    try:
        return visit_from_label(label)
    except ValidationError as error:
        issues = "; ".join(f"{issue['loc'][0]}: {issue['msg']}" for issue in error.errors())
        return f"'{label}' is not a visit of the protocol ({issues})"


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def read_dataset(data: bytes, filename: str) -> Dataset:
    """The dataset in a CSV (UTF-8, header row) or SAS transport file; InteropError says why a
    file cannot be read as an LB, AE, EX or DM dataset."""
    if data.startswith(XPT_HEADER):
        member, columns, rows = _read_xpt(data, filename)
        form = "xpt"
    elif filename.lower().endswith(".xpt"):
        raise InteropError(
            f"{filename}: not a SAS transport file: it does not begin with an XPORT library header"
        )
    else:
        (columns, rows), member, form = _read_csv(data, filename), Path(filename).stem, "csv"
    domain = _domain_of(rows, columns, member, filename)
    _check_columns(domain, columns, filename)
    return Dataset(domain, rows, form)


def _read_csv(data: bytes, filename: str) -> tuple[list[str], list[Row]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InteropError(
            f"{filename}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None
    if "\x00" in text:
        raise InteropError(f"{filename}: not a CSV file (binary content)")
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if any(map(str.strip, r))]
    except csv.Error as error:
        raise InteropError(f"{filename}: not a readable CSV file: {error}") from None
    if not records:
        raise InteropError(f"{filename}: empty: an SDTM CSV starts with a header row")
    columns = _header(records[0], filename)
    rows = []
    for number, record in enumerate(records[1:], start=1):
        if len(record) != len(columns):
            raise InteropError(
                f"{filename}: row {number} has {len(record)} fields, the header {len(columns)}"
            )
        rows.append(dict(zip(columns, [v.strip() or None for v in record], strict=True)))
    return columns, rows


def _header(record: list[str], filename: str) -> list[str]:
    columns = [name.strip().upper() for name in record]
    for name in columns:
        if not VARIABLE_NAME.match(name):
            raise InteropError(
                f"{filename}: not an SDTM CSV: the first row must name the variables "
                f"(STUDYID,DOMAIN,USUBJID,...); '{name[:40]}' is not a variable name"
            )
    if duplicates := sorted({name for name in columns if columns.count(name) > 1}):
        raise InteropError(f"{filename}: column {', '.join(duplicates)} appears more than once")
    return columns


def _read_xpt(data: bytes, filename: str) -> tuple[str, list[str], list[Row]]:
    try:
        # SDTM dates are text (ISO 8601); a numeric SAS date stays a number and is refused.
        values, meta = pyreadstat.read_xport(
            io.BytesIO(data), output_format="dict", disable_datetime_conversion=True
        )
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError, UnicodeError) as error:
        raise InteropError(f"{filename}: not a readable SAS transport file: {error}") from None
    except Exception as error:  # a corrupt file can fail inside pyreadstat in other ways
        raise InteropError(
            f"{filename}: not a readable SAS transport file ({type(error).__name__})"
        ) from None
    columns = [str(name).strip().upper() for name in values]
    cells = [[_xpt_cell(v) for v in column] for column in values.values()]
    rows = [dict(zip(columns, record, strict=True)) for record in zip(*cells, strict=True)]
    return str(meta.table_name or Path(filename).stem), columns, rows


def _xpt_cell(value: object) -> Cell:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip() or None
    if value is None or value != value:  # SAS missing numeric: None or NaN
        return None
    return float(value)  # type: ignore[arg-type]


def _domain_of(rows: list[Row], columns: Iterable[str], member: str, filename: str) -> str:
    named = {str(_text(row.get("DOMAIN"))).upper() for row in rows if _text(row.get("DOMAIN"))}
    if len(named) > 1:
        raise InteropError(
            f"{filename}: DOMAIN has more than one value ({', '.join(sorted(named))}): "
            "one domain per dataset"
        )
    if named:
        domain = named.pop()
        if domain not in DOMAINS:
            raise InteropError(
                f"{filename}: DOMAIN '{domain}' is not one safetymon imports ({', '.join(DOMAINS)})"
            )
        return domain
    domain = member.strip().upper()
    if domain not in DOMAINS:
        where = "no DOMAIN value" if "DOMAIN" in columns else "no DOMAIN column"
        raise InteropError(
            f"{filename}: {where}, and its name '{member}' is not a domain safetymon imports "
            f"({', '.join(DOMAINS)})"
        )
    return domain


def _check_columns(domain: str, columns: Iterable[str], filename: str) -> None:
    present = set(columns)
    missing = [name for name in REQUIRED_COLUMNS[domain] if name not in present]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise InteropError(
            f"{filename}: no {', '.join(missing)} column{plural}: SDTM requires "
            f"{'them' if plural else 'it'} in {domain}, and each row is read by "
            f"{'them' if plural else 'it'}"
        )


def dataset_of_rows(domain: str, rows: list[dict[str, Any]], first_row: int = 1) -> Dataset:
    """A slice of a dataset sent as JSON rows (`safetymon import`), numbered from `first_row`."""
    domain = domain.strip().upper()
    if domain not in DOMAINS:
        raise InteropError(f"domain '{domain}' is not one safetymon imports ({', '.join(DOMAINS)})")
    cleaned = [_json_row(row, number) for number, row in enumerate(rows, start=first_row)]
    for number, row in enumerate(cleaned, start=first_row):
        if (named := _text(row.get("DOMAIN"))) and named.upper() != domain:
            raise InteropError(f"row {number}: DOMAIN '{named}' in a {domain} dataset")
    if cleaned:
        _check_columns(domain, set().union(*cleaned), "rows")
    return Dataset(domain, cleaned, "rows", first_row)


def _json_row(row: Mapping[str, Any], number: int) -> Row:
    cleaned: Row = {}
    for name, value in row.items():
        if isinstance(value, str):
            cleaned[name.upper()] = value.strip() or None
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            try:
                cleaned[name.upper()] = None if value is None or value != value else float(value)
            except OverflowError:  # an integer past float's range (JSON numbers have no limit)
                raise InteropError(f"row {number}, {name}: the number is too large") from None
        else:
            raise InteropError(f"row {number}, {name}: a cell is text or a number")
    return cleaned


# ---------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------


def _text(value: Cell) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if value != value:
        return None
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)  # XPT 3.0 is "3"


class _Cells:
    """One row's cells, and the problems found reading them."""

    __slots__ = ("number", "problems", "row")

    def __init__(self, row: Mapping[str, Cell], number: int) -> None:
        self.row, self.number = row, number
        self.problems: list[Problem] = []

    def where(self, column: str) -> str:
        return f"row {self.number}, {column}"

    def refuse(self, column: str, reason: str) -> _Failed:
        self.problems.append(Problem(self.where(column), reason))
        return FAILED

    def text(self, column: str) -> str | None:
        return _text(self.row.get(column))

    def value(self, column: str) -> Cell:
        """A number as the file has it (XPT numeric, or text for the model to read)."""
        value = self.row.get(column)
        return value.strip() or None if isinstance(value, str) else _number(value)

    def needed(self, column: str, why: str) -> str | _Failed:
        text = self.text(column)
        return self.refuse(column, f"missing: {why}") if text is None else text

    def needed_value(self, column: str, why: str) -> Cell | _Failed:
        value = self.value(column)
        return self.refuse(column, f"missing: {why}") if value is None else value

    def flag(self, column: str, why: str | None = None, default: bool = False) -> bool | _Failed:
        """Y or N; a missing cell is `default`, or refused when `why` says it is needed."""
        text = self.text(column)
        if text is None:
            return default if why is None else self.refuse(column, f"missing: {why}")
        answer = YES_NO.get(text.upper())
        return self.refuse(column, f"'{text}' is not Y or N") if answer is None else answer


def _number(value: Cell) -> float | None:
    return None if value is None or value != value else float(value)


class BadUtcOffset(InteropError):
    """The utc_offset given for the rows is no UTC offset."""


@cache
def _zone(offset: str | None) -> tzinfo | None:
    if offset is None:
        return None
    match = UTC_OFFSET.match(offset.strip())
    if not match or int(match[2]) > 14 or int(match[3]) > 59:
        raise BadUtcOffset(f"utc_offset '{offset}' is not a UTC offset such as +08:00")
    sign = -1 if match[1] == "-" else 1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))


@lru_cache(maxsize=65536)  # a panel's results share their collection time
def _parse_instant(text: str, zone: tzinfo | None) -> datetime | str:
    """The instant an ISO 8601 date-time names, or why it names none."""
    if "T" not in text:
        if FULL_DATE.match(text):
            return f"'{text}' has no time of day: the instant is needed, and midnight is a guess"
        return f"'{text}' is not an ISO 8601 date-time"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return f"'{text}' is not an ISO 8601 date-time (YYYY-MM-DDThh:mm)"
    if moment.tzinfo is not None:
        return moment
    if zone is None:
        return (
            f"'{text}' has no UTC offset: SDTM --DTC carries none; give the site's offset "
            "(utc_offset, e.g. +08:00)"
        )
    return moment.replace(tzinfo=zone)


@lru_cache(maxsize=65536)
def _parse_date(text: str) -> date | str:
    day = text.split("T", 1)[0]
    if FULL_DATE.match(day):
        try:
            return date.fromisoformat(day)
        except ValueError:
            return f"'{text}' is not a calendar date"
    if PARTIAL_DATE.match(day):
        return f"'{text}' is a partial date: the day is needed"
    return f"'{text}' is not an ISO 8601 date (YYYY-MM-DD)"


def _instant(
    cells: _Cells, column: str, zone: tzinfo | None, why: str | None
) -> datetime | _Failed | None:
    """The instant in `column`; a missing one is None, or refused when `why` says needed."""
    text = cells.text(column)
    if text is None:
        return None if why is None else cells.refuse(column, f"missing: {why}")
    moment = _parse_instant(text, zone)
    return cells.refuse(column, moment) if isinstance(moment, str) else moment


def _date(cells: _Cells, column: str, why: str | None) -> date | _Failed | None:
    text = cells.text(column)
    if text is None:
        return None if why is None else cells.refuse(column, f"missing: {why}")
    day = _parse_date(text)
    return cells.refuse(column, day) if isinstance(day, str) else day


# ---------------------------------------------------------------------------------------------
# Rows to requests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    directory: Directory
    zone: tzinfo | None


@dataclass(slots=True)
class _Draft:
    """A request's fields and, for its validation errors, the column each field came from."""

    model: type[SubmissionIn]
    fields: dict[str, Any]
    columns: dict[str, str]


Converter = Callable[[_Cells, Subject, _Context], "_Draft | Problem"]


def convert_row(
    domain: str,
    row: Mapping[str, Cell],
    row_number: int,
    directory: Directory,
    utc_offset: str | None = None,
) -> Conversion:
    """One row's request (LB: LabResultIn, AE: AdverseEventIn, EX: DoseIn, DM: EnrolmentIn),
    or its problems, each named "row n, COLUMN"; or why it was left out (`skipped`)."""
    if domain not in CONVERTERS:
        raise InteropError(f"domain '{domain}' is not one safetymon imports ({', '.join(DOMAINS)})")
    return _convert(domain, row, row_number, _Context(directory, _zone(utc_offset)))


def convert_dataset(
    dataset: Dataset, directory: Directory, utc_offset: str | None = None
) -> Iterator[tuple[int, Conversion]]:
    """(row number, conversion) of every row. A bad utc_offset is refused here, at once."""
    context = _Context(directory, _zone(utc_offset))
    if dataset.domain not in CONVERTERS:
        raise InteropError(f"domain '{dataset.domain}' is not one safetymon imports")
    rows = enumerate(dataset.rows, start=dataset.first_row)
    return ((number, _convert(dataset.domain, row, number, context)) for number, row in rows)


def _convert(domain: str, row: Mapping[str, Cell], number: int, context: _Context) -> Conversion:
    conversion, cells = Conversion(), _Cells(row, number)
    subject = _subject(cells, context.directory)
    if subject is None:
        conversion.problems = cells.problems
        return conversion
    source = _source_fields(cells, domain, subject)
    draft = CONVERTERS[domain](cells, subject, context)
    if isinstance(draft, Problem):
        conversion.skipped.append(draft)
        return conversion
    draft.fields |= source
    seq_column = "USUBJID" if domain == "DM" else f"{domain}SEQ"
    draft.columns |= SOURCE_COLUMNS | {"source_message_id": seq_column}
    _finish(draft, cells, conversion)
    return conversion


def _subject(cells: _Cells, directory: Directory) -> Subject | None:
    usubjid = cells.needed("USUBJID", "the subject of the record")
    if isinstance(usubjid, _Failed):
        return None
    try:
        return directory.subject_for_usubjid(usubjid)
    except InteropError as error:
        cells.refuse("USUBJID", str(error))
        return None


SOURCE_COLUMNS = {"subject_id": "USUBJID", "site_id": "USUBJID", "source_system": "STUDYID"}


def _source_fields(cells: _Cells, domain: str, subject: Subject) -> dict[str, Any]:
    study = cells.needed("STUDYID", "the study of the record (part of its event's source)")
    usubjid = cells.text("USUBJID")
    if domain == "DM":  # one record per subject
        message_id: str | _Failed = f"DM|{usubjid}"
    else:
        column = f"{domain}SEQ"
        seq = cells.needed(column, "it identifies the record, so a re-import is the same event")
        message_id = seq if isinstance(seq, _Failed) else f"{domain}|{usubjid}|{seq}"
    return {
        "subject_id": subject.subject_id,
        "site_id": subject.site_id,
        "source_system": study if isinstance(study, _Failed) else f"sdtm:{study}",
        "source_message_id": message_id,
    }


def _finish(draft: _Draft, cells: _Cells, conversion: Conversion) -> None:
    """Validate with the model; the row's problems are its own, then the model's on fields it
    has not refused already. A row with any problem gives no request."""
    failed = {name for name, value in draft.fields.items() if value is FAILED}
    fields = {name: value for name, value in draft.fields.items() if value is not FAILED}

    def element_of(path: str) -> str:
        field = path.split(".", 1)[0]
        return DROPPED if field in failed else cells.where(draft.columns.get(field, path))

    attempt = Conversion()
    build(draft.model, fields, f"row {cells.number}", element_of, attempt)
    problems = cells.problems + [p for p in attempt.problems if p.where != DROPPED]
    if problems:
        conversion.problems = problems
    else:
        conversion.requests = attempt.requests


# ---------------------------------------------------------------------------------------------
# LB
# ---------------------------------------------------------------------------------------------


def _lab(cells: _Cells, subject: Subject, context: _Context) -> _Draft | Problem:
    if (cells.text("LBSTAT") or "").upper() == "NOT DONE":
        why = cells.text("LBREASND")
        return Problem(cells.where("LBSTAT"), f"not done{f' ({why})' if why else ''}: no result")
    test = _lab_test(cells, subject.site_id, context.directory)
    if isinstance(test, Problem):
        return test
    value_column, unit_column, low_column, high_column = _result_columns(cells)
    fields = {
        "test": test,
        "value": cells.needed_value(value_column, _NO_RESULT),
        "unit": _lab_unit(cells, test, value_column, unit_column),
        "reference_low": cells.value(low_column),
        "reference_high": cells.value(high_column),
        "collected_at": _instant(cells, "LBDTC", context.zone, "the specimen collection time"),
        "visit": _lab_visit(cells),
        "loinc": _loinc(cells, test, context.directory, subject.site_id),
        "fasting": _fasting(cells),
    }
    columns = {
        "test": "LBTESTCD",
        "value": value_column,
        "unit": unit_column,
        "reference_low": low_column,
        "reference_high": high_column,
        "collected_at": "LBDTC",
        "visit": "VISIT",
        "loinc": "LBLOINC",
        "fasting": "LBFAST",
        "(message)": f"{low_column}/{high_column}",
    }
    return _Draft(LabResultIn, fields, columns)


_NO_RESULT = "no result in LBSTRESN, LBSTRESC or LBORRES (a test not done is LBSTAT NOT DONE)"


def _lab_visit(cells: _Cells) -> Visit | _Failed | None:
    visit = _visit_of(cells.text("VISIT"))
    return cells.refuse("VISIT", visit) if isinstance(visit, str) else visit


def _lab_test(cells: _Cells, site_id: str, directory: Directory) -> LabTest | _Failed | Problem:
    """The monitored test of LBTESTCD (else LBLOINC); a Problem to skip the row by."""
    code, loinc = cells.text("LBTESTCD"), cells.text("LBLOINC")
    test = directory.test_for_code(site_id, code) if code else None
    if test is None and loinc:
        test = directory.test_for_code(site_id, loinc)
    if test is not None:
        return test
    if code is None and loinc is None:
        return cells.refuse("LBTESTCD", "missing: the test code")
    named = f"'{code}'" if code else f"LOINC '{loinc}'"
    return Problem(cells.where("LBTESTCD"), f"{named} is not a test {directory.study_id} monitors")


def _result_columns(cells: _Cells) -> tuple[str, str, str, str]:
    if cells.value("LBSTRESN") is not None:
        return STANDARD
    standard_text = cells.text("LBSTRESC")
    if standard_text and standard_text[0] in "<>":
        return STANDARD_BOUND
    return ORIGINAL


def _lab_unit(
    cells: _Cells, test: LabTest | _Failed, value_column: str, column: str
) -> str | _Failed:
    unit = cells.text(column)
    if unit is not None:
        return unit
    if isinstance(test, _Failed):
        return FAILED  # no test: its unit cannot be checked
    if LAB_DEFINITIONS[test].si_unit == DIMENSIONLESS:
        return DIMENSIONLESS  # a ratio (INR) has no unit to write
    if cells.value(value_column) is None:
        return FAILED  # no result: refused on the result column already
    return cells.refuse(column, f"missing: the unit of {value_column}")


def _loinc(
    cells: _Cells, test: LabTest | _Failed, directory: Directory, site_id: str
) -> str | None:
    """LBLOINC when it is a code of the same test (a code of another test is refused)."""
    loinc = cells.text("LBLOINC")
    if loinc is None or isinstance(test, _Failed):
        return None
    named = directory.test_for_code(site_id, loinc)
    if named is None:
        return None  # not a code safetymon knows: the test's own code is published instead
    if named is not test:
        cells.refuse("LBLOINC", f"'{loinc}' is a code of {named.value}, LBTESTCD of {test.value}")
    return loinc


def _fasting(cells: _Cells) -> bool | _Failed | None:
    text = cells.text("LBFAST")
    if text is None or text.upper() == "U":
        return None
    answer = YES_NO.get(text.upper())
    return cells.refuse("LBFAST", f"'{text}' is not Y, N or U") if answer is None else answer


# ---------------------------------------------------------------------------------------------
# AE
# ---------------------------------------------------------------------------------------------


def _adverse_event(cells: _Cells, subject: Subject, context: _Context) -> _Draft:
    term_column = "AEDECOD" if cells.text("AEDECOD") else "AETERM"
    fields = {
        "term": cells.needed(term_column, "the adverse event term (CTCAE v4.03)"),
        "verbatim": cells.text("AETERM") or "",
        "grade": cells.needed_value(
            "AETOXGR", "the CTCAE v4.03 grade (1-5); AESEV (mild/moderate/severe) is not one"
        ),
        "serious": cells.flag(
            "AESER", "Y or N: a serious event starts the 24-hour reporting clock"
        ),
        "immune_related": cells.flag("AEIMMUNE"),
        "related_drugs": _related_drugs(cells),
        "onset_date": _date(cells, "AESTDTC", "the onset date"),
        "resolved_date": _date(cells, "AEENDTC", None),
        "site_aware_at": _instant(cells, "AEAWRDTC", context.zone, None),
    }
    columns = {
        "term": term_column,
        "verbatim": "AETERM",
        "grade": "AETOXGR",
        "serious": "AESER",
        "immune_related": "AEIMMUNE",
        "related_drugs": "AERELDRG",
        "onset_date": "AESTDTC",
        "resolved_date": "AEENDTC",
        "site_aware_at": "AEAWRDTC",
        "(message)": "AEENDTC",  # the payload's own check: resolved before onset
    }
    return _Draft(AdverseEventIn, fields, columns)


def _related_drugs(cells: _Cells) -> tuple[str, ...] | _Failed:
    causality = (cells.text("AEREL") or "").upper() or None
    named = tuple(d for d in map(str.strip, (cells.text("AERELDRG") or "").split(",")) if d)
    if causality in NOT_RELATED:
        if named:
            return cells.refuse(
                "AERELDRG", f"names {', '.join(named)}, but AEREL '{causality}' says not related"
            )
        return ()
    if causality in RELATED or (causality is None and named):
        return named or cells.refuse(
            "AERELDRG",
            f"missing: AEREL '{causality}' says related, but SDTM's AEREL names no drug: give "
            "the study drugs it is related to, comma-separated (attribution is never guessed)",
        )
    if causality is None:
        return cells.refuse(
            "AEREL",
            "missing: causality (related or not, and AERELDRG the drugs) is needed for the "
            "dose rules and related-AE counts; it is never assumed",
        )
    return cells.refuse(
        "AEREL",
        f"'{causality}' is not a causality safetymon reads: related ({', '.join(sorted(RELATED))})"
        f" or not ({', '.join(sorted(NOT_RELATED))})",
    )


# ---------------------------------------------------------------------------------------------
# EX
# ---------------------------------------------------------------------------------------------


def _dose(cells: _Cells, subject: Subject, context: _Context) -> _Draft:
    unit = cells.needed("EXDOSU", "the dose unit (mg, mg/m2 or AUC)")
    fields = {
        "drug": cells.needed("EXTRT", "the drug given"),
        "visit": _visit(cells),
        "dose": cells.needed_value("EXDOSE", "the dose given"),
        "dose_unit": unit if isinstance(unit, _Failed) else _dose_unit(unit),
        "administered_at": _instant(cells, "EXSTDTC", context.zone, "the administration time"),
    }
    columns = {
        "drug": "EXTRT",
        "visit": "VISIT",
        "dose": "EXDOSE",
        "dose_unit": "EXDOSU",
        "administered_at": "EXSTDTC",
    }
    return _Draft(DoseIn, fields, columns)


def _dose_unit(unit: str) -> str:
    return DOSE_UNITS.get(unit.upper().replace(" ", ""), unit)  # other units: the model refuses


def _visit(cells: _Cells) -> Visit | _Failed:
    label = cells.needed("VISIT", "the protocol visit (C2D1, CYCLE 2 DAY 1) of the dose")
    if isinstance(label, _Failed):
        return label
    visit = _visit_of(label)
    if isinstance(visit, str):
        return cells.refuse("VISIT", visit)
    if visit is None:
        return cells.refuse(
            "VISIT",
            f"'{label}' names no cycle and day (C2D1, CYCLE 2 DAY 1): a dose is given at a "
            "visit of a treatment cycle",
        )
    return visit


# ---------------------------------------------------------------------------------------------
# DM
# ---------------------------------------------------------------------------------------------


def _enrolment(cells: _Cells, subject: Subject, context: _Context) -> _Draft:
    _check_site(cells, subject)
    enrolled_column = "RFICDTC" if cells.text("RFICDTC") else "RFSTDTC"
    fields = {
        "enrolled_on": _date(cells, enrolled_column, "the enrolment date (RFICDTC, or RFSTDTC)"),
        "sex": cells.needed("SEX", "sex (F or M)"),
        "age_years": _age(cells),
        "weight_kg": _baseline(cells, "WEIGHT"),
        "height_cm": _baseline(cells, "HEIGHT"),
        "baseline_creatinine": _creatinine(cells),
        "liver_metastases": _liver_metastases(cells),
        "platinum": _platinum(cells),
    }
    columns = {
        "enrolled_on": enrolled_column,
        "sex": "SEX",
        "age_years": "AGE",
        "weight_kg": "WEIGHT",
        "height_cm": "HEIGHT",
        "baseline_creatinine": "CREATBL",
        "liver_metastases": "LIVERMET",
        "platinum": "PLATINUM",
    }
    return _Draft(EnrolmentIn, fields, columns)


def _check_site(cells: _Cells, subject: Subject) -> None:
    site = cells.needed("SITEID", "the site of the subject")
    if isinstance(site, str) and site != subject.site_id:
        cells.refuse(
            "SITEID",
            f"'{site}' is not the site of {cells.text('USUBJID')} in the enrolment map "
            f"({subject.site_id})",
        )


def _age(cells: _Cells) -> Cell | _Failed:
    unit = cells.text("AGEU")
    if unit is not None and unit.upper() not in ("YEARS", "YEAR", "Y"):
        return cells.refuse("AGEU", f"'{unit}': the age is needed in years")
    return cells.needed_value("AGE", "the age in years at enrolment")


def _baseline(cells: _Cells, column: str) -> Cell | _Failed:
    return cells.needed_value(column, _not_in_dm(column))


def _not_in_dm(column: str) -> str:
    return f"{BASELINE_WHY[column]}; SDTM DM does not carry it: send it as column {column}"


def _creatinine(cells: _Cells) -> dict[str, Cell] | _Failed:
    value, unit = _baseline(cells, "CREATBL"), cells.needed("CREATBLU", _not_in_dm("CREATBLU"))
    if isinstance(value, _Failed) or isinstance(unit, _Failed):
        return FAILED
    return {"value": value, "unit": unit}


def _liver_metastases(cells: _Cells) -> bool | _Failed:
    return cells.flag("LIVERMET", _not_in_dm("LIVERMET"))


def _platinum(cells: _Cells) -> str | _Failed:
    agent = cells.needed("PLATINUM", _not_in_dm("PLATINUM"))
    return agent if isinstance(agent, _Failed) else agent.lower()


CONVERTERS: dict[str, Converter] = {
    "LB": _lab,
    "AE": _adverse_event,
    "EX": _dose,
    "DM": _enrolment,
}


# ---------------------------------------------------------------------------------------------
# Error report
# ---------------------------------------------------------------------------------------------


def column_of(problem: Problem) -> str:
    """The column a row's problem names: "row 3, LBSTRESU" -> "LBSTRESU"; a refusal after
    conversion, "row 3 (drug)", -> the column of that field ("EXTRT")."""
    match = WHERE.match(problem.where)
    if match is None:
        return problem.where
    if match["column"]:
        return match["column"]
    if match["field"]:
        return PUBLISHER_FIELDS.get(match["field"].split(".", 1)[0], match["field"])
    return ""


def error_report_csv(rejections: list[tuple[int, Problem]]) -> str:
    """The per-row error report: row,column,reason."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("row", "column", "reason"))
    writer.writerows((row, column_of(problem), problem.reason) for row, problem in rejections)
    return buffer.getvalue()
