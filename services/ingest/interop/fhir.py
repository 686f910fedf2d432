"""FHIR R4 adapter: Observation, AdverseEvent, MedicationAdministration, ResearchSubject and
Bundles of them, to the JSON API's request models. Pure: no I/O.

Every resource is first parsed and validated with `fhir.resources` (8.x, pydantic v2). That package
has no R4 (4.0.1) models: its default is R5 and it ships R4B (4.3) and STU3. R4B's Observation,
AdverseEvent, MedicationAdministration, ResearchSubject, Patient, Medication and Bundle read R4 JSON
the same for every element read here, so R4 input is validated with the R4B models.

Elements are named in FHIRPath from the message's root ("Observation.valueQuantity.value",
"Bundle.entry[2].resource.effectiveDateTime"). Patients are mapped to study subjects through the
`Directory` only, by identifier; a Patient's name is never read.

What FHIR has no element for comes from extensions: the protocol visit (`VISIT_EXTENSION_URL`,
valueString "C2D1"), the CTCAE grade (the HL7 CTCAE IG's `ctcae-grade`, or the AE Clinical
Research R4 backport's `ae-grade`), whether an adverse event is immune-related and whether a
subject has liver metastases (safetymon's own extensions, valueBoolean). An enrolment's baseline
(weight, height, creatinine) comes from the Patient's Observations sent with the ResearchSubject.
"""

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.adverseevent import AdverseEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.researchstudy import ResearchStudy
from fhir.resources.R4B.researchsubject import ResearchSubject
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabCorrectionIn,
    LabResultIn,
    RetractionIn,
    SubmissionIn,
    event_id_of,
)
from services.ingest.interop.common import (
    VISIT_EXTENSION_URL,
    Conversion,
    Directory,
    InteropError,
    Problem,
    Subject,
    build,
    visit_from_label,
)
from shared.ae_dictionary import load_ae_dictionary
from shared.events import Drug, Platinum, Source, content_fingerprint
from shared.labs import LabTest, UnitError, canonical_unit, convert, convert_ucum

IMMUNE_RELATED_EXTENSION_URL = "https://safetymon.example/fhir/StructureDefinition/immune-related"
LIVER_METASTASES_EXTENSION_URL = (
    "https://safetymon.example/fhir/StructureDefinition/liver-metastases"
)
# HL7 CTCAE IG (draft, http://hl7.org/fhir/us/ctcae): valueCodeableConcept, codes "0".."5".
CTCAE_GRADE_EXTENSION_URL = "http://hl7.org/fhir/us/ctcae/StructureDefinition/ctcae-grade"
# HL7 AE Clinical Research R4 backport (STU1): valueCodeableConcept, NCI Thesaurus grade codes.
AE_GRADE_EXTENSION_URL = (
    "http://hl7.org/fhir/uv/ae-research-backport-ig/StructureDefinition/ae-grade"
)
NCI_GRADE_CODES = {"C41338": 1, "C41339": 2, "C41340": 3, "C41337": 4, "C48275": 5}
# A grade code is a number ("3"): ASCII digits, a few of them (str.isdigit also takes "²", and
# int() refuses that, or thousands of digits).
GRADE_CODE = re.compile(r"^[0-9]{1,3}$")

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACCEPTED = ("Observation", "AdverseEvent", "MedicationAdministration", "ResearchSubject", "Bundle")
BUNDLE_TYPES = ("transaction", "batch", "collection")
# Read through references from other entries; converted to nothing themselves.
SUPPORTING = ("Patient", "Medication", "ResearchStudy")
FASTING_GLUCOSE_LOINC = ("1558-6", "14771-0")  # the code itself states a fasting sample
ON_STUDY = ("on-study", "on-study-intervention", "on-study-observation", "follow-up", "off-study")
DRUG_REFERENCES = ("Medication", "MedicationAdministration", "MedicationStatement", "Substance")

# The LOINC codes of an enrolment's baseline Observations, and the units weight and height are
# accepted in (creatinine's are checked by the request model).
WEIGHT_LOINC, HEIGHT_LOINC, CREATININE_LOINC = ("29463-7",), ("8302-2",), ("2160-0", "14682-9")


class BundleRefused(InteropError):
    """A Bundle refused as a whole (not a Bundle, a type not accepted); `problems` say where."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.where}: {p.reason}" for p in problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def convert_fhir(document: dict, directory: Directory) -> Conversion:
    """The requests one FHIR resource (or Bundle) states, with problems and skipped elements.
    For a Bundle, everything in one conversion: a transaction (or collection) is published all or
    nothing, so any problem refuses it whole. A batch's entries stand alone: see convert_bundle."""
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        try:
            return _merged(convert_bundle(document, directory))
        except BundleRefused as refused:
            return Conversion(problems=refused.problems)
    type_name = document.get("resourceType") if isinstance(document, dict) else None
    if type_name not in ACCEPTED:
        return Conversion(problems=[_not_accepted(type_name)])
    resource, problems = _parse(document, type_name)
    if resource is None:
        return Conversion(problems=problems)
    context = _Context(directory, type_name, _contained(resource, type_name))
    _CONVERTERS[type_name](resource, context)
    return context.conversion


def convert_bundle(document: dict, directory: Directory) -> list[tuple[int, Conversion]]:
    """Each entry's conversion, by entry index: for a batch, the caller publishes the accepted
    entries and answers the others with their problems. Enrolments (ResearchSubject entries) come
    first, so they are published before results of the same subject; then entries in order.
    BundleRefused if the document is not an accepted Bundle."""
    _bundle_shell(document)
    entries = document.get("entry") or []
    parsed = [_parse_entry(entry, i) for i, entry in enumerate(entries)]
    resources = _bundle_resources(entries, parsed)
    consumed: dict[str, str] = {}  # baseline Observations an enrolment used -> its root
    order = sorted(range(len(parsed)), key=lambda i: not isinstance(parsed[i][0], ResearchSubject))
    results = []
    for i in order:
        resource, problems = parsed[i]
        if resource is None:
            results.append((i, Conversion(problems=problems)))
            continue
        root = _entry_root(i)
        references = resources | _contained(resource, root)
        context = _Context(directory, root, references, consumed, in_bundle=True)
        _convert_entry(resource, context)
        results.append((i, context.conversion))
    return results


def units_of(document: Any, directory: Directory) -> list[tuple[int, Conversion]]:
    """What to publish, unit by unit (each whole or not at all): a batch Bundle's entries each
    on its own, keyed by entry index; anything else (a resource, a transaction or collection
    Bundle) as the one unit 0."""
    is_bundle = isinstance(document, dict) and document.get("resourceType") == "Bundle"
    if is_bundle and document.get("type") == "batch":
        try:
            return convert_bundle(document, directory)
        except BundleRefused as refused:
            return [(0, Conversion(problems=refused.problems))]
    return [(0, convert_fhir(document, directory))]


def operation_outcome(
    problems: list[Problem], skipped: Sequence[Problem] = (), code: str | None = None
) -> dict:
    """A FHIR OperationOutcome (validated by fhir.resources) answering a message: an error issue
    per problem (`code` overrides the issue code, e.g. "transient"), a warning per element left
    out; one information issue when all was accepted."""
    issues = [_issue(problem, "error", code or _issue_code(problem)) for problem in problems]
    issues += [_issue(problem, "warning", "not-supported") for problem in skipped]
    if not issues:
        issues = [{"severity": "information", "code": "informational", "diagnostics": "accepted"}]
    return OperationOutcome(issue=issues).model_dump(mode="json", exclude_none=True)


def outcome_of(
    problems: list[Problem],
    skipped: Mapping[int, list[Problem]] | Sequence[Problem],
    published: int,
) -> dict:
    """The OperationOutcome of a publication: its problems and what was left out, and how many
    events were accepted (a batch can have both)."""
    left_out = (
        [p for ps in skipped.values() for p in ps] if isinstance(skipped, Mapping) else skipped
    )
    outcome = operation_outcome(problems, left_out)
    if published and (problems or left_out):
        outcome["issue"].append(_accepted_issue(published))
    elif published:
        outcome["issue"] = [_accepted_issue(published)]
    return OperationOutcome.model_validate(outcome).model_dump(mode="json", exclude_none=True)


def _accepted_issue(published: int) -> dict[str, str]:
    events = "event" if published == 1 else "events"
    return {
        "severity": "information",
        "code": "informational",
        "diagnostics": f"{published} {events} accepted",
    }


# ---------------------------------------------------------------------------------------------
# Parsing and validation (fhir.resources)
# ---------------------------------------------------------------------------------------------


def _not_accepted(type_name: object) -> Problem:
    named = f"'{type_name}' is not accepted" if type_name else "no resourceType"
    return Problem("resourceType", f"{named}: accepted: {', '.join(ACCEPTED)}")


def _parse(document: Any, root: str) -> tuple[Resource | None, list[Problem]]:
    """The resource, validated by its R4B model; or problems naming each invalid element."""
    if not isinstance(document, dict):
        return None, [Problem(root, "not a JSON object")]
    type_name = document.get("resourceType")
    model = _model_of(type_name)
    if model is None:
        return None, [Problem(f"{root}.resourceType", f"'{type_name}' is not an R4 resource type")]
    try:
        return model.model_validate(_without_nulls(document)), []
    except ValidationError as error:
        return None, [Problem(_fhirpath(root, i["loc"]), _reason(i)) for i in error.errors()]
    except Exception:  # fhir.resources fails (KeyError, TypeError) on a nested unknown type
        unknown = list(_unknown_resource_types(document, root))
        return None, unknown or [Problem(root, "not a resource fhir.resources can read")]


def _without_nulls(value: Any) -> Any:
    """FHIR JSON has no null: an element sent as null is an element not sent. (fhir.resources
    takes null for a required element such as Observation.code, which then cannot be read.)
    A null inside an array stays: it pairs a primitive with its "_element" extensions."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _model_of(type_name: Any) -> type[Resource] | None:
    try:
        return get_fhir_model_class(type_name) if isinstance(type_name, str) else None
    except ValueError:
        return None


def _unknown_resource_types(value: Any, path: str) -> Iterator[Problem]:
    """Every resource nested in `value` (contained, a Bundle's entries) of no R4 type."""
    if isinstance(value, dict):
        if "resourceType" in value and _model_of(value["resourceType"]) is None:
            named = value["resourceType"]
            yield Problem(f"{path}.resourceType", f"'{named}' is not an R4 resource type")
        for key, item in value.items():
            yield from _unknown_resource_types(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unknown_resource_types(item, f"{path}[{index}]")


def _fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        else:  # "status__ext" is the JSON's "_status" (a primitive's extensions)
            path += f"._{part[:-5]}" if part.endswith("__ext") else f".{part}"
    return path


def _reason(issue: dict) -> str:
    message = str(issue["msg"]).removeprefix("Value error, ")
    value = issue.get("input")
    if "DateTime value" in message and isinstance(value, str) and "T" in value:
        return (
            f"'{value}' has no UTC offset: FHIR requires one on a dateTime with a time, and "
            "safetymon needs it to place the event in time"
        )
    if issue["type"] == "extra_forbidden":
        return "not an element of this R4 resource"
    return message


def _contained(resource: Resource, root: str) -> dict[str, tuple[str, Resource]]:
    contained = getattr(resource, "contained", None) or []
    return {f"#{r.id}": (f"{root}.contained[{i}]", r) for i, r in enumerate(contained) if r.id}


# ---------------------------------------------------------------------------------------------
# Context: where a resource is, and what it can refer to
# ---------------------------------------------------------------------------------------------


@dataclass
class _Context:
    directory: Directory
    root: str  # FHIRPath of the resource: "Observation", "Bundle.entry[2].resource"
    resources: dict[str, tuple[str, Resource]]  # reference -> (its root, resource)
    consumed: dict[str, str] = field(default_factory=dict)  # baseline Observation -> enrolment
    in_bundle: bool = False
    conversion: Conversion = field(default_factory=Conversion)

    def at(self, element: str) -> str:
        return f"{self.root}.{element}" if element else self.root

    def problem(self, element: str, reason: str) -> None:
        self.conversion.problems.append(Problem(self.at(element), reason))

    def skip(self, element: str, reason: str) -> None:
        self.conversion.skipped.append(Problem(self.at(element), reason))

    def resolve(self, reference: Reference | None) -> tuple[str, Resource] | None:
        text = reference.reference if reference else None
        if not text:
            return None
        return self.resources.get(text) or self.resources.get(_relative(text))


def _relative(reference: str) -> str:
    """A reference made relative: "http://server/fhir/Patient/7/_history/2" -> "Patient/7"."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


def _extension(resource: Any, *urls: str) -> Extension | None:
    return next((e for e in resource.extension or [] if e.url in urls), None)


def _ext_element(url: str) -> str:
    return f"extension('{url}')"


def _subject(context: _Context, reference: Reference | None, element: str) -> Subject | None:
    if reference is None:
        context.problem(element, "no subject: give the Patient (reference or identifier)")
        return None
    try:
        return _resolve_subject(context, reference)
    except InteropError as error:
        context.problem(element, str(error))
        return None


def _resolve_subject(context: _Context, reference: Reference) -> Subject:
    directory = context.directory
    if found := context.resolve(reference):
        if isinstance(found[1], Patient):
            return _subject_of_patient(directory, found[1])
        if isinstance(found[1], ResearchSubject):
            return _subject_of_research_subject(directory, found[1])
    text = reference.reference
    kind, _, local_id = _relative(text).partition("/") if text else ("", "", "")
    if kind == "Patient":
        return directory.subject_for_patient(local_id)
    if kind == "ResearchSubject":
        return directory.subject(local_id)
    if text and (text.startswith(("urn:", "#"))):
        raise InteropError(f"'{text}' is no Patient of the Bundle or contained (or it was refused)")
    if text:
        raise InteropError(f"'{text}' is not a reference to a Patient or a ResearchSubject")
    if reference.identifier and reference.identifier.value:
        if reference.type == "ResearchSubject":
            return directory.subject(reference.identifier.value)
        return directory.subject_for_patient(reference.identifier.value)
    raise InteropError("names no Patient: give reference 'Patient/<id>' or identifier.value")


def _subject_of_patient(directory: Directory, patient: Patient) -> Subject:
    """The subject of the first of the Patient's identifiers in the enrolment map."""
    values = [i.value for i in patient.identifier or [] if i.value] or [patient.id or ""]
    for value in filter(None, values):
        try:
            return directory.subject_for_patient(value)
        except InteropError:
            continue
    raise InteropError(
        f"none of the Patient's identifiers ({', '.join(filter(None, values)) or 'none'}) is "
        "in the enrolment map: not a subject of this study, or not yet mapped"
    )


def _subject_of_research_subject(directory: Directory, subject: ResearchSubject) -> Subject:
    values = [i.value for i in subject.identifier or [] if i.value]
    for value in values:
        try:
            return directory.subject_for_usubjid(value)  # a subject id or a USUBJID
        except InteropError:
            continue
    raise InteropError(
        f"no identifier of the ResearchSubject ({', '.join(values) or 'none'}) is a subject of "
        f"{directory.study_id} in the enrolment map"
    )


def _source(resource: Resource, identifiers: Iterable[Identifier | None]) -> tuple[str, str | None]:
    """(source system, message id): the sender's identifier of the resource, else its id."""
    meta = resource.meta
    system = f"fhir:{meta.source}" if meta and meta.source else "fhir"
    first = next((i for i in identifiers if i and i.value), None)
    if first is not None:
        return system, f"{first.system or ''}|{first.value}"
    return system, f"{resource.get_resource_type()}/{resource.id}" if resource.id else None


def _unit(quantity: Quantity) -> str | None:
    """The UCUM code when the quantity is coded in UCUM, else its human-readable unit."""
    return quantity.code if quantity.system == UCUM and quantity.code else quantity.unit


def _aware(context: _Context, value: Any, element: str, what: str) -> datetime | None:
    """A time with its UTC offset; `element` is absolute (it is where the time was found)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if value is None:
        reason = f"no {what}: give it with its UTC offset"
    else:
        reason = f"'{value}' has no time and UTC offset: the {what} needs both"
    context.conversion.problems.append(Problem(element, reason))
    return None


def _full_date(context: _Context, value: Any, element: str, what: str) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    reason = f"'{value}' is not a full date: the {what} needs one" if value else f"no {what}"
    context.conversion.problems.append(Problem(element, reason))
    return None


def _build(
    context: _Context, model: type[SubmissionIn], fields: dict[str, Any], elements: dict[str, str]
) -> None:
    """`build` the request, naming its errors by `elements` (field -> element). An error on an
    element already reported is not repeated, nor is a missing field once the resource has a
    problem (a field is left out only when its element was refused). The request is kept only if
    the resource has no problem at all."""

    def element_of(path: str) -> str:
        path = path.removeprefix("corrected.")
        return elements.get(path) or elements.get(path.split(".")[0]) or context.root

    scratch = Conversion()
    build(model, fields, context.root, element_of, scratch)
    known = {problem.where for problem in context.conversion.problems}
    context.conversion.problems += [
        Problem(p.where, p.reason.removeprefix("Value error, "))  # pydantic's prefix is noise
        for p in scratch.problems
        if p.where not in known and not (known and p.reason == "Field required")
    ]
    if not context.conversion.problems:
        context.conversion.requests += scratch.requests


def _submission(context: _Context, subject: Subject | None, source: tuple[str, str | None]) -> dict:
    return {
        "subject_id": subject.subject_id if subject else "",
        "site_id": subject.site_id if subject else "",
        "source_system": source[0],
        "source_message_id": source[1],
    }


def _submission_elements(context: _Context) -> dict[str, str]:
    return {
        "subject_id": context.at("subject"),
        "site_id": context.at("subject"),
        "source_system": context.at("meta.source"),
        "source_message_id": context.at("identifier"),
    }


# ---------------------------------------------------------------------------------------------
# Observation: a laboratory result, its correction or its withdrawal
# ---------------------------------------------------------------------------------------------


def _observation(observation: Observation, context: _Context) -> None:
    if enrolment := context.consumed.get(context.root):
        context.skip("", f"used as the baseline of the enrolment at {enrolment}")
        return
    unknown = len(context.conversion.problems)
    subject = _subject(context, observation.subject, "subject")
    test, loinc = _lab_test(context, observation.code, subject)
    if test is None:  # nothing to publish: whose result it is does not matter
        del context.conversion.problems[unknown:]
        context.skip("code", f"{_code_text(observation.code)} is not a test this study monitors")
        return
    status = observation.status
    if status == "final":
        _lab_result(observation, context, subject, test, loinc)
    elif status in ("amended", "corrected"):
        _lab_correction(observation, context, subject, test, loinc)
    elif status in ("cancelled", "entered-in-error"):
        _lab_retraction(observation, context, subject)
    else:
        context.problem("status", f"status '{status}' is not accepted: send the final result")


def _lab_test(
    context: _Context, code: CodeableConcept, subject: Subject | None
) -> tuple[LabTest | None, str | None]:
    """The monitored test a code names, LOINC codings first, then the site's local codes; and
    the LOINC code, if the sender gave one."""
    codings = [c for c in code.coding or [] if c.code]
    loinc = next((c.code for c in codings if c.system == LOINC), None)
    site = subject.site_id if subject else ""
    for coding in sorted(codings, key=lambda c: c.system != LOINC):
        if coding.system != LOINC and subject is None:
            continue  # a local code means something only at a known site
        if test := context.directory.test_for_code(site, coding.code):
            return test, loinc
    return None, loinc


def _code_text(code: CodeableConcept) -> str:
    codings = [f"{c.system or '(no system)'}|{c.code}" for c in code.coding or [] if c.code]
    named = f" ({code.text})" if code.text else ""
    return f"{', '.join(codings) or 'no coding'}{named}"


def _lab_fields(
    observation: Observation, context: _Context, test: LabTest, loinc: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """LabResultIn fields of the Observation (without submission fields), and their elements."""
    elements = {"test": context.at("code"), "loinc": context.at("code.coding")}
    fields: dict[str, Any] = {"test": test.value, "loinc": loinc}
    fields["fasting"] = True if loinc in FASTING_GLUCOSE_LOINC else None
    fields |= _lab_value(observation, context, elements)
    fields |= _reference_range(observation, context, test, fields.get("unit"))
    elements |= {
        "reference_low": context.at("referenceRange[0].low"),
        "reference_high": context.at("referenceRange[0].high"),
    }
    fields["collected_at"], elements["collected_at"] = _collected_at(observation, context)
    fields["visit"], elements["visit"] = _visit(observation, context)
    return fields, elements


def _lab_value(
    observation: Observation, context: _Context, elements: dict[str, str]
) -> dict[str, Any]:
    quantity = observation.valueQuantity
    elements["value"] = context.at("valueQuantity.value")
    elements["unit"] = context.at("valueQuantity.unit")
    if quantity is None:
        context.problem("value[x]", _no_quantity(observation))
        return {}
    if quantity.system == UCUM and quantity.code:
        elements["unit"] = context.at("valueQuantity.code")
    value = quantity.value
    if value is not None and quantity.comparator:
        value = f"{quantity.comparator}{format(value, 'f')}"  # the API's "<0.1"
    elif value is not None:
        value = float(value)
    return {"value": value, "unit": _unit(quantity)}


_OTHER_VALUES = (
    "valueString",
    "valueCodeableConcept",
    "valueInteger",
    "valueBoolean",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)


def _no_quantity(observation: Observation) -> str:
    given = next((n for n in _OTHER_VALUES if getattr(observation, n) is not None), None)
    if given:
        return f"{given} is not accepted: a monitored result needs valueQuantity (value and unit)"
    absent = observation.dataAbsentReason
    why = f" (dataAbsentReason: {absent.text or _code_text(absent)})" if absent else ""
    return f"no value{why}: a monitored result needs valueQuantity (value and unit)"


def _reference_range(
    observation: Observation, context: _Context, test: LabTest, unit: str | None
) -> dict[str, float | None]:
    if not observation.referenceRange:
        return {}  # no range: graded on the study's own limits
    ranges = observation.referenceRange[0]
    return {
        "reference_low": _bound(context, ranges.low, test, unit, "referenceRange[0].low"),
        "reference_high": _bound(context, ranges.high, test, unit, "referenceRange[0].high"),
    }


def _bound(
    context: _Context, quantity: Quantity | None, test: LabTest, unit: str | None, element: str
) -> float | None:
    """A reference limit in the result's unit (a sender may give the range in another)."""
    if quantity is None or quantity.value is None:
        return None
    value, bound_unit = float(quantity.value), _unit(quantity)
    if not bound_unit or not unit or bound_unit == unit:
        return value
    try:
        canonical_unit(test, unit)
    except UnitError:
        return value  # the result's own unit is refused on its element
    try:
        return convert(test, value, bound_unit, unit)
    except UnitError as error:
        context.problem(f"{element}.unit", str(error))
        return None


def _collected_at(observation: Observation, context: _Context) -> tuple[Any, str]:
    if observation.effectivePeriod is not None and observation.effectiveDateTime is None:
        element = "effectivePeriod.start"
        value = observation.effectivePeriod.start
    elif observation.effectiveInstant is not None:
        element, value = "effectiveInstant", observation.effectiveInstant
    else:
        element, value = "effectiveDateTime", observation.effectiveDateTime
    what = "specimen collection time"
    return _aware(context, value, context.at(element), what), context.at(element)


def _visit(resource: Any, context: _Context) -> tuple[Any, str]:
    element = context.at(_ext_element(VISIT_EXTENSION_URL))
    extension = _extension(resource, VISIT_EXTENSION_URL)
    label = extension.valueString if extension else None
    try:
        return visit_from_label(label), element
    except ValidationError as error:  # "C0D1": a cycle and day, but not the protocol's
        issues = "; ".join(f"{issue['loc'][0]}: {issue['msg']}" for issue in error.errors())
        reason = f"'{label}' is not a visit of the protocol ({issues})"
        context.conversion.problems.append(Problem(element, reason))
        return None, element


def _lab_result(
    observation: Observation,
    context: _Context,
    subject: Subject | None,
    test: LabTest,
    loinc: str | None,
) -> None:
    fields, elements = _lab_fields(observation, context, test, loinc)
    source = _source(observation, observation.identifier or [])
    fields |= _submission(context, subject, source)
    _build(context, LabResultIn, fields, elements | _submission_elements(context))


def _original(observation: Observation, context: _Context) -> tuple[tuple[str, str], str] | None:
    """The source of the result as first sent, and this message's own id; or a problem."""
    system, message_id = _source(observation, observation.identifier or [])
    if message_id is None:
        context.problem(
            "identifier",
            "no identifier (or id): a corrected or withdrawn result names the one it replaces "
            "by the identifier it was first sent with",
        )
        return None
    meta = observation.meta
    version = (
        (meta.versionId or (meta.lastUpdated and meta.lastUpdated.isoformat())) if meta else None
    )
    # Without a version, the content tells one correction from the next (a resend is the same).
    version = version or content_fingerprint(observation.model_dump(mode="json"))[:16]
    return (system, message_id), f"{message_id}|{observation.status}|{version}"


def _note(observation: Observation) -> str:
    notes = " ".join(n.text for n in observation.note or [] if n.text)
    return (notes or f"the sender set status '{observation.status}'")[:1000]


def _lab_correction(
    observation: Observation,
    context: _Context,
    subject: Subject | None,
    test: LabTest,
    loinc: str | None,
) -> None:
    original = _original(observation, context)
    corrected, elements = _lab_fields(observation, context, test, loinc)
    if original is None:
        return
    (system, message_id), own_id = original
    corrected |= _submission(context, subject, (system, message_id))
    fields = _submission(context, subject, (system, own_id)) | {
        "corrected_event_id": _original_event(context, "LabResultReported", system, message_id),
        "reason": _note(observation),
        "corrected": corrected,
    }
    elements |= _submission_elements(context) | {"reason": context.at("note")}
    _build(context, LabCorrectionIn, fields, elements)


def _lab_retraction(observation: Observation, context: _Context, subject: Subject | None) -> None:
    original = _original(observation, context)
    if original is None:
        return
    (system, message_id), own_id = original
    fields = _submission(context, subject, (system, own_id)) | {
        "retracted_event_id": _original_event(context, "LabResultReported", system, message_id),
        "reason": _note(observation),
    }
    elements = _submission_elements(context) | {"reason": context.at("note")}
    _build(context, RetractionIn, fields, elements)


def _original_event(context: _Context, event_type: str, system: str, message_id: str) -> Any:
    source = Source(system=system, message_id=message_id)
    return event_id_of(event_type, context.directory.study_id, source)


# ---------------------------------------------------------------------------------------------
# AdverseEvent
# ---------------------------------------------------------------------------------------------


def _adverse_event(event: AdverseEvent, context: _Context) -> None:
    if event.actuality == "potential":
        context.skip("actuality", "a potential adverse event (a near miss) did not happen")
        return
    subject = _subject(context, event.subject, "subject")
    drugs, drug_elements = _suspect_drugs(event, context)
    grade_extension = _extension(event, CTCAE_GRADE_EXTENSION_URL, AE_GRADE_EXTENSION_URL)
    grade_url = grade_extension.url if grade_extension else CTCAE_GRADE_EXTENSION_URL
    fields = _submission(context, subject, _source(event, [event.identifier])) | {
        "term": _ae_term(event.event, context),
        "verbatim": ((event.event.text or "") if event.event else "")[:500],
        "grade": _grade(grade_extension, context),
        "serious": _serious(event, context),
        "immune_related": _flag(event, context, IMMUNE_RELATED_EXTENSION_URL, False),
        "related_drugs": drugs,
        "onset_date": _onset(event, context),
        "site_aware_at": next(
            (t for t in (event.recordedDate, event.detected) if isinstance(t, datetime)), None
        ),
    }
    elements = (
        _submission_elements(context)
        | drug_elements
        | {
            "term": context.at("event"),
            "verbatim": context.at("event.text"),
            "grade": context.at(_ext_element(grade_url)),
            "serious": context.at("seriousness"),
            "immune_related": context.at(_ext_element(IMMUNE_RELATED_EXTENSION_URL)),
            "onset_date": context.at("date"),
            "site_aware_at": context.at("recordedDate"),
        }
    )
    _build(context, AdverseEventIn, {k: v for k, v in fields.items() if v is not None}, elements)


def _ae_term(concept: CodeableConcept | None, context: _Context) -> str | None:
    """The CTCAE term: the first coding display or text that is one; else the first of them,
    which the request model refuses with the nearest terms. MedDRA codes are not looked up."""
    names = [c.display for c in (concept.coding or []) if c.display] if concept else []
    names += [concept.text] if concept and concept.text else []
    if not names:
        context.problem(
            "event", "no event term: give the CTCAE v4.03 term in coding.display or text"
        )
        return None
    dictionary = load_ae_dictionary()
    return next((name for name in names if dictionary.lookup(name)), names[0])


def _grade(extension: Extension | None, context: _Context) -> int | None:
    """The CTCAE grade from its extension: valueInteger, or a valueCodeableConcept code "1".."5"
    (CTCAE IG) or an NCI Thesaurus grade code (AE Clinical Research IG)."""
    if extension is None:
        context.problem(
            _ext_element(CTCAE_GRADE_EXTENSION_URL),
            "no CTCAE grade: R4 AdverseEvent has no grade element (severity mild/moderate/severe "
            f"is not a grade); send extension {CTCAE_GRADE_EXTENSION_URL} with valueInteger or "
            "valueCodeableConcept code 1-5",
        )
        return None
    if extension.valueInteger is not None:
        return extension.valueInteger
    concept = extension.valueCodeableConcept
    codes = [c.code for c in concept.coding or [] if c.code] if concept else []
    grades = [int(c) if GRADE_CODE.match(c) else NCI_GRADE_CODES.get(c) for c in codes]
    grade = next((g for g in grades if g is not None), None)
    if grade == 0:
        context.problem(_ext_element(extension.url), "grade 0 is no adverse event: none to report")
        return None
    if grade is not None:
        return grade
    context.problem(
        _ext_element(extension.url),
        f"no CTCAE grade in the extension (codes: {', '.join(filter(None, codes)) or 'none'}): "
        "give valueInteger or valueCodeableConcept code 1-5 (or NCI Thesaurus C41338..C48275)",
    )
    return None


def _serious(event: AdverseEvent, context: _Context) -> bool:
    concept = event.seriousness
    codes = [(c.code or "").lower() for c in concept.coding or []] if concept else []
    if "serious" in codes:
        return True
    if codes and "non-serious" not in codes:
        context.problem(
            "seriousness",
            f"seriousness {codes} is neither 'serious' nor 'non-serious' "
            "(http://terminology.hl7.org/CodeSystem/adverse-event-seriousness)",
        )
    return False


def _flag(resource: Any, context: _Context, url: str, default: bool | None) -> bool | None:
    """A safetymon valueBoolean extension; `default` when absent (None: a problem)."""
    extension = _extension(resource, url)
    if extension is not None and extension.valueBoolean is not None:
        return extension.valueBoolean
    if extension is not None:
        context.problem(_ext_element(url), "needs valueBoolean")
    elif default is None:
        context.problem(
            _ext_element(url),
            f"missing: FHIR has no element for it; send extension {url} with valueBoolean",
        )
    return default


def _onset(event: AdverseEvent, context: _Context) -> date | None:
    element = "date" if event.date is not None or event.detected is None else "detected"
    value = event.date if event.date is not None else event.detected
    what = "onset date (AdverseEvent.date: when the event occurred)"
    return _full_date(context, value, context.at(element), what)


def _suspect_drugs(event: AdverseEvent, context: _Context) -> tuple[list[str], dict[str, str]]:
    """The drugs suspected of causing the event, lowercased; other entities are left out."""
    drugs: list[str] = []
    elements: dict[str, str] = {}
    for i, entity in enumerate(event.suspectEntity or []):
        element = f"suspectEntity[{i}].instance"
        name = _medication_name(context, entity.instance)
        if name:
            elements[f"related_drugs.{len(drugs)}"] = context.at(element)
            drugs.append(name)
        elif _reference_type(context, entity.instance) in DRUG_REFERENCES:
            context.problem(
                element,
                f"'{entity.instance.reference}' does not name the drug: give instance.display "
                "or a contained or bundled Medication with code.text",
            )
        else:
            context.skip(element, "not a drug: attribution to it is not recorded")
    return drugs, elements


def _reference_type(context: _Context, reference: Reference) -> str:
    if found := context.resolve(reference):
        return found[1].get_resource_type()
    return reference.type or (_relative(reference.reference or "").partition("/")[0])


def _medication_name(context: _Context, reference: Reference | None) -> str | None:
    found = context.resolve(reference)
    resource = found[1] if found else None
    names: list[str] = []
    if isinstance(resource, MedicationAdministration):
        names = _drug_names(context, resource)
    elif isinstance(resource, Medication) and resource.code:
        names = _concept_names(resource.code)
    elif reference and reference.display:
        names = [reference.display.strip().lower()]
    return next((name for name in names if _is_drug_name(name)), names[0] if names else None)


def _concept_names(concept: CodeableConcept) -> list[str]:
    names = [concept.text] + [c.display for c in concept.coding or []]
    return [name.strip().lower() for name in names if name and name.strip()]


def _drug_names(context: _Context, administration: MedicationAdministration) -> list[str]:
    if administration.medicationCodeableConcept is not None:
        return _concept_names(administration.medicationCodeableConcept)
    found = context.resolve(administration.medicationReference)
    if found and isinstance(found[1], Medication) and found[1].code:
        return _concept_names(found[1].code)
    display = administration.medicationReference.display
    return [display.strip().lower()] if display else []


# ---------------------------------------------------------------------------------------------
# MedicationAdministration
# ---------------------------------------------------------------------------------------------


def _medication_administration(administration: MedicationAdministration, context: _Context) -> None:
    if administration.status != "completed":
        context.problem(
            "status",
            f"status '{administration.status}' is not accepted: only a completed "
            "administration is a dose given",
        )
        return
    subject = _subject(context, administration.subject, "subject")
    visit, visit_element = _visit(administration, context)
    if visit is None and all(p.where != visit_element for p in context.conversion.problems):
        context.problem(
            _ext_element(VISIT_EXTENSION_URL),
            f"no protocol visit: send extension {VISIT_EXTENSION_URL} with valueString "
            "such as 'C2D1'",
        )
    fields = _submission(context, subject, _source(administration, administration.identifier or []))
    fields |= {"drug": _administered_drug(administration, context), "visit": visit}
    fields |= _dose(administration, context)
    fields["administered_at"], at_element = _administered_at(administration, context)
    elements = _submission_elements(context) | {
        "drug": context.at("medication[x]"),
        "visit": visit_element,
        "dose": context.at("dosage.dose.value"),
        "dose_unit": context.at("dosage.dose.unit"),
        "administered_at": at_element,
    }
    _build(context, DoseIn, fields, elements)


def _administered_drug(administration: MedicationAdministration, context: _Context) -> str | None:
    """The first name that is a drug name ("toripalimab"); else the first, for the model to
    refuse with the reason."""
    names = _drug_names(context, administration)
    if not names:
        context.problem("medication[x]", "the drug is not named: give its name in text or display")
        return None
    return next((name for name in names if _is_drug_name(name)), names[0])


def _is_drug_name(name: str) -> bool:
    try:
        Drug(name)
    except ValueError:
        return False
    return True


def _dose(administration: MedicationAdministration, context: _Context) -> dict[str, Any]:
    dose = administration.dosage.dose if administration.dosage else None
    if dose is None or dose.value is None:
        context.problem("dosage.dose", "no dose: give dosage.dose value and unit (mg, mg/m2, AUC)")
        return {}
    return {"dose": float(dose.value), "dose_unit": _unit(dose)}


def _administered_at(
    administration: MedicationAdministration, context: _Context
) -> tuple[datetime | None, str]:
    if administration.effectiveDateTime is None and administration.effectivePeriod is not None:
        element, value = "effectivePeriod.start", administration.effectivePeriod.start
    else:
        element, value = "effectiveDateTime", administration.effectiveDateTime
    what = "administration time"
    return _aware(context, value, context.at(element), what), context.at(element)


# ---------------------------------------------------------------------------------------------
# ResearchSubject: an enrolment
# ---------------------------------------------------------------------------------------------


def _research_subject(research_subject: ResearchSubject, context: _Context) -> None:
    if research_subject.status not in ON_STUDY:
        context.problem(
            "status",
            f"status '{research_subject.status}' is not an enrolment: send the ResearchSubject "
            f"once on study ({', '.join(ON_STUDY)})",
        )
        return
    subject = _enrolled_subject(research_subject, context)
    _check_study(research_subject, context)
    enrolled_on = _full_date(
        context,
        research_subject.period.start if research_subject.period else None,
        context.at("period.start"),
        "enrolment date (period.start)",
    )
    fields, elements = _person(research_subject, context, subject, enrolled_on)
    baseline, baseline_elements = _baseline(context, subject) if subject else ({}, {})
    fields |= baseline | {
        "enrolled_on": enrolled_on,
        "platinum": _platinum(research_subject, context),
        "liver_metastases": _flag(research_subject, context, LIVER_METASTASES_EXTENSION_URL, None),
    }
    fields |= _submission(
        context, subject, _source(research_subject, research_subject.identifier or [])
    )
    elements |= baseline_elements | _enrolment_elements(context)
    _build(context, EnrolmentIn, {k: v for k, v in fields.items() if v is not None}, elements)


def _enrolment_elements(context: _Context) -> dict[str, str]:
    return _submission_elements(context) | {
        "subject_id": context.at("identifier"),
        "site_id": context.at("identifier"),
        "enrolled_on": context.at("period.start"),
        "platinum": context.at("assignedArm"),
        "liver_metastases": context.at(_ext_element(LIVER_METASTASES_EXTENSION_URL)),
    }


def _enrolled_subject(research_subject: ResearchSubject, context: _Context) -> Subject | None:
    try:
        return _subject_of_research_subject(context.directory, research_subject)
    except InteropError as error:
        context.problem("identifier", f"{error} (the study subject id is identifier.value)")
        return None


def _check_study(research_subject: ResearchSubject, context: _Context) -> None:
    study = research_subject.study
    values = [study.identifier.value] if study.identifier and study.identifier.value else []
    if (found := context.resolve(study)) and isinstance(found[1], ResearchStudy):
        values += [i.value for i in found[1].identifier or [] if i.value]
    if values and context.directory.study_id not in values:
        context.problem(
            "study", f"the study ({', '.join(values)}) is not {context.directory.study_id}"
        )


def _person(
    research_subject: ResearchSubject,
    context: _Context,
    subject: Subject | None,
    enrolled_on: date | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Sex and age at enrolment from the Patient; it must be in the Bundle or contained."""
    found = context.resolve(research_subject.individual)
    if found is None or not isinstance(found[1], Patient):
        context.problem(
            "individual",
            f"the Patient '{research_subject.individual.reference}' is neither in the Bundle nor "
            "contained: sex and age at enrolment come from it",
        )
        return {}, {}
    root, patient = found
    _check_same_subject(context, patient, subject)
    elements = {"sex": f"{root}.gender", "age_years": f"{root}.birthDate"}
    sex = {"male": "M", "female": "F"}.get(patient.gender or "")
    if sex is None:
        context.conversion.problems.append(
            Problem(f"{root}.gender", f"gender '{patient.gender}': enrolment needs male or female")
        )
    return {"sex": sex, "age_years": _age(context, patient, root, enrolled_on)}, elements


def _check_same_subject(context: _Context, patient: Patient, subject: Subject | None) -> None:
    try:
        mapped = _subject_of_patient(context.directory, patient)
    except InteropError:
        return  # a Patient not in the map yet: the ResearchSubject's identifier decides
    if subject is not None and mapped != subject:
        context.problem(
            "individual",
            f"the Patient is subject {mapped.subject_id} in the enrolment map, "
            f"not {subject.subject_id}",
        )


def _age(context: _Context, patient: Patient, root: str, on: date | None) -> int | None:
    born = patient.birthDate
    if not isinstance(born, date):
        what = f"'{born}' is not a full date" if born else "no birthDate"
        context.conversion.problems.append(
            Problem(f"{root}.birthDate", f"{what}: the age at enrolment needs one")
        )
        return None
    if on is None:
        return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _platinum(research_subject: ResearchSubject, context: _Context) -> str | None:
    arm = research_subject.assignedArm or ""
    named = [p.value for p in Platinum if p.value in arm.lower()]
    if len(named) == 1:
        return named[0]
    platinums = " or ".join(p.value for p in Platinum)
    reason = f"'{arm}' names no platinum" if not named else f"'{arm}' names both platinums"
    context.problem(
        "assignedArm",
        f"{reason if arm else 'no assignedArm'}: the arm must name the platinum ({platinums})",
    )
    return None


def _baseline(context: _Context, subject: Subject) -> tuple[dict[str, Any], dict[str, str]]:
    """Weight, height and creatinine from the subject's Observations sent with the enrolment
    (the latest of each); FHIR has no element for a study's baseline."""
    fields: dict[str, Any] = {}
    elements: dict[str, str] = {}
    wanted = {
        "weight_kg": (WEIGHT_LOINC, "body weight", "kg"),
        "height_cm": (HEIGHT_LOINC, "body height", "cm"),
        "baseline_creatinine": (CREATININE_LOINC, "serum creatinine", "umol/L or mg/dL"),
    }
    for name, (codes, what, units) in wanted.items():
        found = _latest(context, subject, codes)
        if found is None:
            where = _baseline_expected(context, codes)
            reason = _no_baseline(subject, what, codes, units)
            context.conversion.problems.append(Problem(where, reason))
            elements[name] = where
            continue
        root, observation = found
        context.consumed[root] = context.root
        elements[name] = f"{root}.valueQuantity"
        fields[name] = _baseline_value(context, name, root, observation.valueQuantity)
    return fields, elements


def _baseline_expected(context: _Context, codes: tuple[str, ...]) -> str:
    """FHIRPath of where a baseline Observation was looked for."""
    where = "Bundle.entry.resource" if context.in_bundle else context.at("contained")
    quoted = " | ".join(f"'{code}'" for code in codes)
    test = f"= {quoted}" if len(codes) == 1 else f"in ({quoted})"
    return f"{where}.ofType(Observation).where(code.coding.code {test})"


def _no_baseline(subject: Subject, what: str, codes: tuple[str, ...], units: str) -> str:
    return (
        f"no baseline {what} of {subject.subject_id}: FHIR has no element for it; send a final "
        f"Observation (LOINC {' or '.join(codes)}, in {units}) of the Patient in the same "
        "Bundle as the ResearchSubject (or contained in it)"
    )


def _latest(
    context: _Context, subject: Subject, codes: tuple[str, ...]
) -> tuple[str, Observation] | None:
    candidates = []
    for root, resource in dict(context.resources.values()).items():
        if not isinstance(resource, Observation) or resource.valueQuantity is None:
            continue
        coded = any(c.system == LOINC and c.code in codes for c in resource.code.coding or [])
        if coded and resource.status in ("final", "amended", "corrected"):
            if _observation_subject(context, resource) == subject:
                candidates.append((root, resource))
    if not candidates:
        return None
    return max(candidates, key=lambda candidate: _effective_order(candidate[1]))


def _effective_order(observation: Observation) -> float:
    effective = observation.effectiveDateTime
    aware = isinstance(effective, datetime) and effective.tzinfo is not None
    return effective.timestamp() if aware else float("-inf")


def _observation_subject(context: _Context, observation: Observation) -> Subject | None:
    try:
        return _resolve_subject(context, observation.subject) if observation.subject else None
    except InteropError:
        return None


def _baseline_value(context: _Context, name: str, root: str, quantity: Quantity) -> Any:
    unit, value = _unit(quantity) or "", float(quantity.value or 0)
    if name == "baseline_creatinine":
        return {"value": value, "unit": unit}  # the request model checks unit and plausibility
    target = "kg" if name == "weight_kg" else "cm"
    try:
        return round(convert_ucum(value, unit, target), 3)
    except UnitError as error:
        context.conversion.problems.append(Problem(f"{root}.valueQuantity.unit", str(error)))
        return None


# ---------------------------------------------------------------------------------------------
# Bundle
# ---------------------------------------------------------------------------------------------


def _bundle_shell(document: dict) -> Bundle:
    """The Bundle without its entries' resources (each is validated on its own, so a batch
    entry's errors do not refuse the others); BundleRefused if it is not an accepted Bundle."""
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise BundleRefused([Problem("resourceType", "not a Bundle")])
    entries = document.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise BundleRefused([Problem("Bundle.entry", "must be a list")])
    shell = dict(document) | {
        "entry": [
            {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
            for e in entries or []
        ]
    }
    if not shell["entry"]:
        del shell["entry"]
    bundle, problems = _parse(shell, "Bundle")
    if bundle is None:
        raise BundleRefused(problems)
    if bundle.type not in BUNDLE_TYPES:
        raise BundleRefused(
            [Problem("Bundle.type", f"'{bundle.type}' is not accepted: {', '.join(BUNDLE_TYPES)}")]
        )
    return bundle


def _entry_root(index: int) -> str:
    return f"Bundle.entry[{index}].resource"


def _parse_entry(entry: dict, index: int) -> tuple[Resource | None, list[Problem]]:
    resource = entry.get("resource")
    if resource is None:
        method = (entry.get("request") or {}).get("method")
        return None, [Problem(_entry_root(index), f"no resource{_NO_RESOURCE.get(method, '')}")]
    return _parse(resource, _entry_root(index))


_NO_RESOURCE = {
    "DELETE": " (DELETE is not accepted: send the resource with status entered-in-error)",
    "GET": " (a read: safetymon records resources sent to it, it answers no searches)",
    "HEAD": " (a read: safetymon records resources sent to it, it answers no searches)",
}


def _bundle_resources(
    entries: list[dict], parsed: list[tuple[Resource | None, list[Problem]]]
) -> dict[str, tuple[str, Resource]]:
    """What entries can refer to: each resource by its fullUrl and by "Type/id"."""
    resources: dict[str, tuple[str, Resource]] = {}
    for i, (entry, (resource, _)) in enumerate(zip(entries, parsed, strict=True)):
        if resource is None:
            continue
        if full_url := entry.get("fullUrl"):
            resources[full_url] = (_entry_root(i), resource)
        if resource.id:
            resources[f"{resource.get_resource_type()}/{resource.id}"] = (_entry_root(i), resource)
    return resources


def _convert_entry(resource: Resource, context: _Context) -> None:
    type_name = resource.get_resource_type()
    if type_name in _CONVERTERS:
        _CONVERTERS[type_name](resource, context)
    elif type_name not in SUPPORTING:
        context.skip("", f"a {type_name} is not converted: accepted: {', '.join(ACCEPTED[:-1])}")


def _merged(entries: list[tuple[int, Conversion]]) -> Conversion:
    """One conversion of all entries; no requests at all if any entry has a problem."""
    merged = Conversion()
    for _, conversion in entries:
        merged.requests += conversion.requests
        merged.problems += conversion.problems
        merged.skipped += conversion.skipped
    if merged.problems:
        merged.requests = []
    return merged


# ---------------------------------------------------------------------------------------------
# OperationOutcome
# ---------------------------------------------------------------------------------------------


def _issue_code(problem: Problem) -> str:
    if problem.where in ("resourceType", "Bundle.type") or problem.where.endswith(".resourceType"):
        return "not-supported"
    if "enrolment map" in problem.reason or "not configured" in problem.reason:
        return "not-found"
    return "invalid"


def _issue(problem: Problem, severity: str, code: str) -> dict[str, Any]:
    issue = {"severity": severity, "code": code, "diagnostics": problem.reason}
    return issue | {"expression": [problem.where]} if problem.where else issue


_CONVERTERS: dict[str, Callable[[Any, _Context], None]] = {
    "Observation": _observation,
    "AdverseEvent": _adverse_event,
    "MedicationAdministration": _medication_administration,
    "ResearchSubject": _research_subject,
}
