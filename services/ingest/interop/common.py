"""What every format adapter shares.

An adapter turns a sender's message (HL7 v2, FHIR, SDTM) into the JSON API's request models
(services.ingest.domain), so every format is validated by the same models and ends in the same
canonical events through the same `to_event`. Adapters hold no clinical logic: they move fields,
and map the sender's identifiers through the `Directory`: patients to study subjects (never
guessed: an unknown patient is refused) and a site's local test codes to lab tests.
"""

import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from services.ingest.domain import SUBJECT_ID_PATTERN, SubmissionIn
from shared.events import Visit
from shared.labs import LabTest, UnitError, resolve_test

RequestT = TypeVar("RequestT", bound=SubmissionIn)
# FHIR has no element for a protocol visit: senders put "C2D1" in this extension's valueString.
VISIT_EXTENSION_URL = "https://safetymon.example/fhir/StructureDefinition/study-visit"
VISIT_LABEL = re.compile(r"^\s*C(?:YCLE)?\s*(\d{1,3})\s*D(?:AY)?\s*(\d{1,2})\s*$", re.IGNORECASE)


class InteropError(ValueError):
    """A message refused as a whole (unparseable, unknown sender); the text says why."""


@dataclass(frozen=True)
class Problem:
    """Why (part of) an input was refused or left out. `where` names the element in the
    sender's own terms: "OBX[2]-6", "Observation.valueQuantity.unit", "row 12, LBSTRESU"."""

    where: str
    reason: str


@dataclass
class Conversion:
    """What one input gives: requests to publish (each with where it came from), problems that
    refuse it, and elements deliberately left out (e.g. tests the study does not monitor)."""

    requests: list[tuple[str, SubmissionIn]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------------
# The directory: senders' identifiers -> study subjects and tests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    subject_id: str
    site_id: str


class SiteInterop(BaseModel):
    """One site's senders and codes."""

    hl7_sending_facilities: list[str] = Field(default_factory=list)  # MSH-4 namespace ids
    local_codes: dict[str, LabTest] = Field(default_factory=dict)  # the lab's code -> test

    @field_validator("local_codes", mode="before")
    @classmethod
    def _resolve(cls, codes: Any) -> Any:
        if not isinstance(codes, Mapping):
            return codes
        try:
            return {str(code): resolve_test(str(test)) for code, test in codes.items()}
        except UnitError as error:
            raise ValueError(str(error)) from None


class InteropFile(BaseModel):
    study_id: str
    sites: dict[str, SiteInterop]


class Directory:
    """Maps what senders call things to the study's terms. Built from the interop file (sites,
    their HL7 facilities and local codes) and the enrolment map (CSV: subject_id, site_id,
    patient_id, usubjid)."""

    def __init__(self, interop: InteropFile, enrolments: list[dict[str, str]]) -> None:
        self.study_id = interop.study_id
        self.sites = interop.sites
        self._by_patient: dict[str, Subject] = {}
        self._by_usubjid: dict[str, Subject] = {}
        self._by_subject: dict[str, Subject] = {}
        for row in enrolments:
            subject = Subject(row["subject_id"].strip(), row["site_id"].strip())
            self._by_subject[subject.subject_id] = subject
            if patient := (row.get("patient_id") or "").strip():
                self._by_patient[patient] = subject
            if usubjid := (row.get("usubjid") or "").strip():
                self._by_usubjid[usubjid] = subject

    def subject_for_patient(self, patient_id: str) -> Subject:
        """The study subject of a hospital patient identifier (HL7 PID-3, FHIR Patient)."""
        subject = self._by_patient.get(patient_id.strip())
        if subject is None:
            raise InteropError(
                f"patient identifier '{patient_id}' is not in the enrolment map: not a "
                "subject of this study, or not yet mapped (the map is never guessed)"
            )
        return subject

    def subject_for_usubjid(self, usubjid: str) -> Subject:
        """The study subject of an SDTM USUBJID (the map's usubjid, or a subject id itself)."""
        key = usubjid.strip()
        subject = self._by_usubjid.get(key) or self._by_subject.get(key)
        if subject is None:
            raise InteropError(f"USUBJID '{usubjid}' is not in the enrolment map")
        return subject

    def subject(self, subject_id: str) -> Subject:
        found = self._by_subject.get(subject_id.strip())
        if found is None:
            raise InteropError(f"subject '{subject_id}' is not in the enrolment map")
        return found

    def site_for_facility(self, facility: str) -> str:
        for site_id, site in self.sites.items():
            if facility.strip() in site.hl7_sending_facilities:
                return site_id
        raise InteropError(
            f"sending facility '{facility}' is not configured for any site of {self.study_id}"
        )

    def test_for_code(self, site_id: str, code: str) -> LabTest | None:
        """The test a code names: the site's local code map first, then LOINC / LBTESTCD;
        None for a test the study does not monitor."""
        site = self.sites.get(site_id)
        if site and code in site.local_codes:
            return site.local_codes[code]
        try:
            return resolve_test(code)
        except UnitError:
            return None


INTEROP_DIR = Path(__file__).resolve().parents[3] / "interop"


def study_directory(
    study_id: str, interop_file: str | None = None, enrolment_map_file: str | None = None
) -> Directory:
    """The study's directory: the given files, else interop/<study_id>.yaml and
    interop/<study_id>.enrolment.csv."""
    directory = load_directory(
        interop_file or INTEROP_DIR / f"{study_id}.yaml",
        enrolment_map_file or INTEROP_DIR / f"{study_id}.enrolment.csv",
    )
    if directory.study_id != study_id:
        raise InteropError(f"the interop file is for {directory.study_id}, not {study_id}")
    return directory


def load_directory(interop_file: str | Path, enrolment_map_file: str | Path) -> Directory:
    interop_path, map_path = Path(interop_file), Path(enrolment_map_file)
    try:
        interop = InteropFile.model_validate(yaml.safe_load(interop_path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise InteropError(f"{interop_path}: {error}") from None
    try:
        with map_path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as error:
        raise InteropError(f"{map_path}: {error.strerror}") from None
    pattern = re.compile(SUBJECT_ID_PATTERN)
    for number, row in enumerate(rows, start=2):
        if not pattern.match(row.get("subject_id") or "") or not row.get("site_id"):
            raise InteropError(f"{map_path}: line {number}: needs a valid subject_id and site_id")
    return Directory(interop, rows)


# ---------------------------------------------------------------------------------------------
# Building request models
# ---------------------------------------------------------------------------------------------


def visit_from_label(label: str | None) -> Visit | None:
    """A protocol visit from a site's label ("C2D1", "Cycle 2 Day 1"); None when the label names
    no cycle and day (screening, unscheduled)."""
    match = VISIT_LABEL.match(label or "")
    return Visit(cycle=int(match[1]), day=int(match[2])) if match else None


def build(
    model: type[RequestT],
    fields: dict[str, Any],
    where: str,
    element_of: Callable[[str], str],
    conversion: Conversion,
) -> RequestT | None:
    """`model(**fields)`, adding it to `conversion`; or its validation errors as problems, each
    named by `element_of(field path)` in the sender's terms."""
    try:
        request = model(**fields)
    except ValidationError as error:
        for issue in error.errors():
            path = ".".join(str(part) for part in issue["loc"]) or "(message)"
            conversion.problems.append(Problem(element_of(path), issue["msg"]))
        return None
    conversion.requests.append((where, request))
    return request
