"""The one event envelope and the canonical events (schema version 1).

Every event travelling through Kafka is an `Envelope` subclass fixing `event_type` and the
payload model. `decode_event` turns bytes back into the right class, or raises `EventDecodeError`
naming what was wrong. Clinical facts come from ingest; derived events (grades, decisions, alerts)
get ids derived from the event that caused them, so a replay or a redelivery yields the same event.
"""

import hashlib
import json
import re
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema

from shared.ctcae import CTCAE_VERSION, Direction
from shared.labs import LabTest

SCHEMA_VERSION = 1
# Namespace for every id safetymon derives (uuid5): fixed forever, or replays would change ids.
ID_NAMESPACE = uuid.UUID("5d3c1f0e-7a51-4c6e-9a55-0b7f3c9d2e41")


def derive_id(*parts: str) -> uuid.UUID:
    """A deterministic id: the same parts always give the same id."""
    return uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts))


# The JSON that json.dumps(content, sort_keys=True, separators=(",", ":"), default=str) gives,
# from one encoder: dumps makes a new one per call, and the grader fingerprints every grade.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def content_fingerprint(content: Any) -> str:
    """Stable digest of JSON-able content, for sources that send no message id of their own."""
    return hashlib.sha256(_CANONICAL_JSON.encode(content).encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Clinical vocabulary
# ---------------------------------------------------------------------------------------------


class Sex(StrEnum):
    FEMALE = "F"
    MALE = "M"


class Drug(str):
    """A drug as a study's protocol names it in its regimen: lowercase letters, digits and
    hyphens (any drug: a new trial's drugs are configuration). The names below are the ones
    this codebase refers to by name."""

    TORIPALIMAB: ClassVar["Drug"]
    NAB_PACLITAXEL: ClassVar["Drug"]
    CISPLATIN: ClassVar["Drug"]
    CARBOPLATIN: ClassVar["Drug"]

    def __new__(cls, name: object) -> "Drug":
        text = str(name).strip().lower()
        if not _DRUG_NAME.match(text):
            raise ValueError(f"'{name}' is not a drug name (lowercase letters, digits, hyphens)")
        return super().__new__(cls, text)

    @property
    def value(self) -> str:
        return str(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema()
        )


_DRUG_NAME = re.compile(r"^[a-z][a-z0-9-]{1,49}$")
Drug.TORIPALIMAB = Drug("toripalimab")
Drug.NAB_PACLITAXEL = Drug("nab-paclitaxel")
Drug.CISPLATIN = Drug("cisplatin")
Drug.CARBOPLATIN = Drug("carboplatin")


class Platinum(StrEnum):
    CISPLATIN = "cisplatin"
    CARBOPLATIN = "carboplatin"


CHEMOTHERAPY: tuple[Drug, ...] = (Drug.NAB_PACLITAXEL, Drug.CISPLATIN, Drug.CARBOPLATIN)


class Visit(Model):
    """The protocol visit of a sample or a dose, as the site labels it (C2D1: cycle 2, day 1)."""

    cycle: int = Field(ge=1, le=100)
    day: int = Field(ge=1, le=42)

    @property
    def label(self) -> str:
        return f"C{self.cycle}D{self.day}"


class Source(Model):
    system: str = Field(min_length=1, max_length=100, description="sending system, e.g. 'edc'")
    message_id: str = Field(min_length=1, max_length=200, description="the sender's message id")


class Measurement(Model):
    # Finite only: a value that overflows in a unit conversion must be refused at ingest, not
    # published as a null the grader cannot read.
    value: float = Field(allow_inf_nan=False)
    unit: str
    lln: float | None = Field(None, allow_inf_nan=False)
    uln: float | None = Field(None, allow_inf_nan=False)


# ---------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------


class SubjectEnrolledPayload(Model):
    enrolled_on: date
    sex: Sex
    age_years: int = Field(ge=18, le=110)
    weight_kg: float = Field(gt=20, lt=300)
    height_cm: float = Field(gt=100, lt=250)
    baseline_creatinine_umol_l: float = Field(gt=0, lt=2000)
    liver_metastases: bool
    platinum: Platinum


class Comparator(StrEnum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class LabResultPayload(Model):
    test: LabTest
    loinc: str
    visit: Visit | None = None
    comparator: Comparator | None = None  # "<0.1": only a bound is known
    fasting: bool | None = None
    reported: Measurement  # as the site sent it
    si: Measurement  # the same result in the SI unit (grading unit)
    conventional: Measurement  # and in the conventional unit


class AdverseEventPayload(Model):
    term: str = Field(min_length=1, max_length=200, description="CTCAE v4.03 term")
    verbatim: str = Field("", max_length=500)
    grade: int = Field(ge=1, le=5)
    serious: bool = False
    immune_related: bool = False
    related_drugs: tuple[Drug, ...] = ()
    onset_date: date
    resolved_date: date | None = None
    # When the site learned of the event: starts the 24-hour SAE reporting clock.
    site_aware_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _dates_ordered(self) -> "AdverseEventPayload":
        if self.resolved_date is not None and self.resolved_date < self.onset_date:
            raise ValueError("resolved_date is before onset_date")
        return self


class DoseAdministeredPayload(Model):
    drug: Drug
    visit: Visit
    dose: float = Field(gt=0, allow_inf_nan=False)  # JSON's 1e999 reads as inf: no dose
    dose_unit: Literal["mg", "mg/m2", "AUC"]
    administered_at: AwareDatetime


class EventRetractedPayload(Model):
    retracted_event_id: uuid.UUID
    reason: str = Field(min_length=1)


class EventCorrectedPayload(Model):
    corrected_event_id: uuid.UUID
    reason: str = Field(min_length=1)
    corrected_payload: (
        LabResultPayload | AdverseEventPayload | DoseAdministeredPayload | SubjectEnrolledPayload
    )


class LabGradedPayload(Model):
    lab_event_id: uuid.UUID
    test: LabTest
    visit: Visit | None
    value_si: float
    unit_si: str
    graded_value: float  # the value as graded: in the printed CTCAE column of its unit system
    graded_unit: str
    term: str
    meddra_code: str
    direction: Direction
    grade: int | None
    minimum_grade: int
    criterion: str
    reason: str
    ctcae_version: str = CTCAE_VERSION
    # The result as a multiple of the ULN it was graded against (eDISH plots), when one was known.
    value_per_uln: float | None = None


class DoseAction(StrEnum):
    PROCEED = "proceed"
    HOLD = "hold"
    REDUCE = "reduce"
    DISCONTINUE = "discontinue"
    RESUME = "resume"


class DrugAction(Model):
    drug: Drug
    action: DoseAction
    from_level: int | None = None  # dose level before (0 = full dose)
    to_level: int | None = None  # ... and after; None when discontinued


class DoseDecisionPayload(Model):
    rule_id: str
    actions: tuple[DrugAction, ...]
    visit: Visit | None
    reason: str
    source: str  # where the rule comes from (protocol section, label)
    trigger_event_ids: tuple[uuid.UUID, ...]


class SafetySignalPayload(Model):
    signal: str
    reason: str
    trigger_event_ids: tuple[uuid.UUID, ...]


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


SEVERITY_RANK = {
    Severity.CRITICAL: 0,
    Severity.HIGH: 1,
    Severity.MEDIUM: 2,
    Severity.LOW: 3,
    Severity.INFO: 4,
}


class AlertRaisedPayload(Model):
    alert_id: uuid.UUID
    rule_id: str
    severity: Severity
    title: str
    detail: str
    trigger_event_id: uuid.UUID
    due_at: AwareDatetime | None = None  # a reporting deadline, e.g. 24 h for an SAE


class AlertAcknowledgedPayload(Model):
    alert_id: uuid.UUID
    acknowledged_by: str = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=2000)


class AlertEscalatedPayload(Model):
    alert_id: uuid.UUID
    tier: int = Field(ge=1)
    reason: str


class AlertResolvedPayload(Model):
    alert_id: uuid.UUID
    resolved_by: str = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=2000)


# ---------------------------------------------------------------------------------------------
# The envelope and the events
# ---------------------------------------------------------------------------------------------


class Envelope(Model):
    event_id: uuid.UUID
    event_type: str
    schema_version: Literal[1] = SCHEMA_VERSION
    study_id: str = Field(min_length=1, max_length=50)
    site_id: str = Field(min_length=1, max_length=50)
    subject_id: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    occurred_at: AwareDatetime  # clinical time: specimen collection, AE onset, dose given
    recorded_at: AwareDatetime  # when safetymon learned of it
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    source: Source
    payload: Model

    def derived(self, event_class: type["Envelope"], payload: Model, *id_parts: str) -> "Envelope":
        """A derived event caused by this one, with an id fixed by this event and `id_parts`."""
        event_type = event_class.model_fields["event_type"].default
        cause = str(self.event_id)
        return event_class(
            event_id=derive_id(event_type, cause, *id_parts),
            study_id=self.study_id,
            site_id=self.site_id,
            subject_id=self.subject_id,
            occurred_at=self.occurred_at,
            recorded_at=utc_now(),
            causation_id=self.event_id,
            correlation_id=self.correlation_id or self.event_id,
            source=Source(system="safetymon", message_id=cause),
            payload=payload,
        )


class SubjectEnrolled(Envelope):
    event_type: Literal["SubjectEnrolled"] = "SubjectEnrolled"
    payload: SubjectEnrolledPayload


class LabResultReported(Envelope):
    event_type: Literal["LabResultReported"] = "LabResultReported"
    payload: LabResultPayload


class AdverseEventReported(Envelope):
    event_type: Literal["AdverseEventReported"] = "AdverseEventReported"
    payload: AdverseEventPayload


class DoseAdministered(Envelope):
    event_type: Literal["DoseAdministered"] = "DoseAdministered"
    payload: DoseAdministeredPayload


class EventCorrected(Envelope):
    event_type: Literal["EventCorrected"] = "EventCorrected"
    payload: EventCorrectedPayload


class EventRetracted(Envelope):
    event_type: Literal["EventRetracted"] = "EventRetracted"
    payload: EventRetractedPayload


class LabGraded(Envelope):
    event_type: Literal["LabGraded"] = "LabGraded"
    payload: LabGradedPayload


class DoseDecisionMade(Envelope):
    event_type: Literal["DoseDecisionMade"] = "DoseDecisionMade"
    payload: DoseDecisionPayload


class SafetySignalDetected(Envelope):
    event_type: Literal["SafetySignalDetected"] = "SafetySignalDetected"
    payload: SafetySignalPayload


class AlertRaised(Envelope):
    event_type: Literal["AlertRaised"] = "AlertRaised"
    payload: AlertRaisedPayload


class AlertAcknowledged(Envelope):
    event_type: Literal["AlertAcknowledged"] = "AlertAcknowledged"
    payload: AlertAcknowledgedPayload


class AlertEscalated(Envelope):
    event_type: Literal["AlertEscalated"] = "AlertEscalated"
    payload: AlertEscalatedPayload


class AlertResolved(Envelope):
    event_type: Literal["AlertResolved"] = "AlertResolved"
    payload: AlertResolvedPayload


ClinicalEvent = (
    SubjectEnrolled
    | LabResultReported
    | AdverseEventReported
    | DoseAdministered
    | EventCorrected
    | EventRetracted
)
AnyEvent = Annotated[
    ClinicalEvent
    | LabGraded
    | DoseDecisionMade
    | SafetySignalDetected
    | AlertRaised
    | AlertAcknowledged
    | AlertEscalated
    | AlertResolved,
    Field(discriminator="event_type"),
]
_any_event = TypeAdapter(AnyEvent)


class EventDecodeError(ValueError):
    """Bytes that are not a valid safetymon event; the message says which field and why."""


def encode_event(event: Envelope) -> bytes:
    return event.model_dump_json().encode()


def decode_event(data: bytes) -> Envelope:
    try:
        return _any_event.validate_json(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or 'event'}: {issue['msg']}"
            for issue in error.errors()[:5]
        )
        raise EventDecodeError(problems) from error
