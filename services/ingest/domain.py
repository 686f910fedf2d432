"""Ingest's pure core: the request models the API accepts, and their conversion to canonical events.

No I/O here. Validation errors raise inside the pydantic models, so the API answers 422 naming the
field; unit normalisation uses the one converter in `shared.labs`.
"""

from collections.abc import Collection
from datetime import UTC, date, datetime, time
from typing import TypeVar
from uuid import UUID

from pydantic import AwareDatetime, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.ae_dictionary import AeTermError, require_term, validate_adverse_event
from shared.events import (
    AdverseEventPayload,
    AdverseEventReported,
    DoseAdministered,
    DoseAdministeredPayload,
    Drug,
    Envelope,
    EventCorrected,
    EventCorrectedPayload,
    EventRetracted,
    EventRetractedPayload,
    LabResultPayload,
    LabResultReported,
    Measurement,
    Model,
    Platinum,
    Sex,
    Source,
    SubjectEnrolled,
    SubjectEnrolledPayload,
    Visit,
    content_fingerprint,
    derive_id,
    utc_now,
)
from shared.lab_values import LabValueField
from shared.labs import (
    LAB_DEFINITIONS,
    LabTest,
    UnitError,
    canonical_unit,
    convert,
    resolve_test,
    to_si,
)

PayloadT = TypeVar("PayloadT", bound=Model)
MAX_BASELINE_CREATININE_UMOL_L = 2000.0  # the canonical event's limit (SubjectEnrolledPayload)
SUBJECT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _refusal(error_type: str, error: Exception) -> PydanticCustomError:
    # Not a ValueError, which pydantic would prefix with "Value error, ": the reason is ours as is.
    return PydanticCustomError(error_type, "{reason}", {"reason": str(error)})


class SubmissionIn(Model):
    """Fields every submission carries. `source_message_id` makes a resend the same event; without
    it, the content itself identifies the event."""

    subject_id: str = Field(min_length=1, max_length=50, pattern=SUBJECT_ID_PATTERN)
    site_id: str = Field(min_length=1, max_length=50)
    source_system: str = Field("api", min_length=1, max_length=100)
    source_message_id: str | None = Field(None, min_length=1, max_length=200)

    def source(self) -> Source:
        message_id = self.source_message_id or content_fingerprint(
            self.model_dump(mode="json", exclude={"source_system", "source_message_id"})
        )
        return Source(system=self.source_system, message_id=message_id)


class QuantityIn(Model):
    value: float = Field(gt=0, allow_inf_nan=False)
    unit: str = Field(min_length=1, max_length=30)


class EnrolmentIn(SubmissionIn):
    enrolled_on: date
    sex: Sex
    age_years: int = Field(ge=18, le=110)
    weight_kg: float = Field(gt=20, lt=300)
    height_cm: float = Field(gt=100, lt=250)
    baseline_creatinine: QuantityIn
    liver_metastases: bool
    platinum: Platinum

    @field_validator("baseline_creatinine")
    @classmethod
    def _creatinine_plausible(cls, quantity: QuantityIn) -> QuantityIn:
        try:
            umol_l = to_si(LabTest.CREATININE, quantity.value, quantity.unit)
        except UnitError as error:
            raise _refusal("lab_unit", error) from error
        if not 0 < umol_l < MAX_BASELINE_CREATININE_UMOL_L:
            raise _refusal(
                "implausible",
                ValueError(
                    f"{quantity.value:g} {quantity.unit} is {umol_l:.0f} umol/L: not a plausible "
                    f"baseline creatinine (limit {MAX_BASELINE_CREATININE_UMOL_L:g} umol/L)"
                ),
            )
        return quantity


class LabResultIn(SubmissionIn):
    test: LabTest = Field(description="SDTM LBTESTCD (NEUT, PLAT, ...), short name or LOINC code")
    value: LabValueField = Field(description='a number, or a bound such as "<0.1"')
    unit: str = Field(min_length=1, max_length=30, examples=["10^9/L"], description="UCUM")
    reference_low: float | None = Field(None, ge=0, allow_inf_nan=False, description="LLN")
    reference_high: float | None = Field(None, gt=0, allow_inf_nan=False, description="ULN")
    collected_at: AwareDatetime = Field(description="specimen collection time, with offset")
    visit: Visit | None = None
    loinc: str | None = Field(None, max_length=20)
    fasting: bool | None = Field(None, description="fasting sample (glucose grades 1-2 need it)")

    @field_validator("test", mode="before")
    @classmethod
    def _known_test(cls, code: object) -> object:
        if not isinstance(code, str):
            return code
        try:
            return resolve_test(code)
        except UnitError as error:
            raise _refusal("lab_test", error) from error

    @field_validator("unit")
    @classmethod
    def _unit_of_test(cls, unit: str, info: ValidationInfo) -> str:
        test = info.data.get("test")
        if test is None:
            return unit  # the test itself was invalid; that error is reported
        try:
            return canonical_unit(test, unit)
        except UnitError as error:
            raise _refusal("lab_unit", error) from error

    @model_validator(mode="after")
    def _range_ordered(self) -> "LabResultIn":
        low, high = self.reference_low, self.reference_high
        if low is not None and high is not None and low >= high:
            raise ValueError("reference_low must be below reference_high")
        return self

    def measurement_in(self, unit: str) -> Measurement:
        def in_unit(value: float | None) -> float | None:
            return None if value is None else convert(self.test, value, self.unit, unit)

        return Measurement(
            value=in_unit(self.value.number),
            unit=unit,
            lln=in_unit(self.reference_low),
            uln=in_unit(self.reference_high),
        )


class AdverseEventIn(SubmissionIn, AdverseEventPayload):
    """An adverse event as the site reports it: the canonical payload plus submission fields.
    The term must be a CTCAE v4.03 term (stored as NCI spells it) and the grade one it defines.
    A serious or fatal event must say when the site learned of it: that starts the 24-hour
    reporting clock, which is never guessed."""

    site_aware_at: AwareDatetime | None = Field(None, validate_default=True)

    @field_validator("site_aware_at")
    @classmethod
    def _clock_start_known(cls, aware: datetime | None, info: ValidationInfo) -> datetime | None:
        needs_clock = info.data.get("serious") or info.data.get("grade") == 5
        if aware is None and needs_clock:
            raise _refusal(
                "required",
                ValueError(
                    "a serious or fatal adverse event needs site_aware_at (when the site "
                    "learned of it): the 24-hour reporting clock starts then"
                ),
            )
        return aware

    @field_validator("term")
    @classmethod
    def _ctcae_term(cls, term: str) -> str:
        try:
            return require_term(term).term
        except AeTermError as error:
            raise _refusal("ctcae_term", error) from error

    @field_validator("grade")
    @classmethod
    def _grade_of_term(cls, grade: int, info: ValidationInfo) -> int:
        term = info.data.get("term")  # validated (and canonical) already: it is defined first
        if term is None:
            return grade  # the term itself was refused; that error is reported
        try:
            validate_adverse_event(term, grade)
        except AeTermError as error:
            raise _refusal("ctcae_grade", error) from error
        return grade


class DoseIn(SubmissionIn, DoseAdministeredPayload):
    """A dose administration as the site reports it."""


def _payload_of(request: SubmissionIn, payload_class: type[PayloadT]) -> PayloadT:
    return payload_class(**request.model_dump(include=set(payload_class.model_fields)))


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def event_id_of(event_type: str, study_id: str, source: Source) -> UUID:
    """The id of the event a source's message states: a resend gets the same id, and a sender
    that corrects or withdraws a result names it by its own message id."""
    return derive_id(event_type, study_id, source.system, source.message_id)


def _envelope_fields(request: SubmissionIn, study_id: str, event_type: str) -> dict:
    source = request.source()
    return {
        "event_id": event_id_of(event_type, study_id, source),
        "study_id": study_id,
        "site_id": request.site_id,
        "subject_id": request.subject_id,
        "recorded_at": utc_now(),
        "source": source,
    }


def enrolment_event(request: EnrolmentIn, study_id: str) -> SubjectEnrolled:
    creatinine = request.baseline_creatinine
    payload = SubjectEnrolledPayload(
        enrolled_on=request.enrolled_on,
        sex=request.sex,
        age_years=request.age_years,
        weight_kg=request.weight_kg,
        height_cm=request.height_cm,
        baseline_creatinine_umol_l=to_si(LabTest.CREATININE, creatinine.value, creatinine.unit),
        liver_metastases=request.liver_metastases,
        platinum=request.platinum,
    )
    return SubjectEnrolled(
        **_envelope_fields(request, study_id, "SubjectEnrolled"),
        occurred_at=_start_of(request.enrolled_on),
        payload=payload,
    )


def lab_event(request: LabResultIn, study_id: str) -> LabResultReported:
    definition = LAB_DEFINITIONS[request.test]
    payload = LabResultPayload(
        test=request.test,
        loinc=request.loinc or definition.loinc[0],
        visit=request.visit,
        comparator=request.value.comparator,
        fasting=request.fasting,
        reported=request.measurement_in(request.unit),
        si=request.measurement_in(definition.si_unit),
        conventional=request.measurement_in(definition.conventional_unit),
    )
    return LabResultReported(
        **_envelope_fields(request, study_id, "LabResultReported"),
        occurred_at=request.collected_at,
        payload=payload,
    )


def adverse_event(request: AdverseEventIn, study_id: str) -> AdverseEventReported:
    return AdverseEventReported(
        **_envelope_fields(request, study_id, "AdverseEventReported"),
        occurred_at=_start_of(request.onset_date),
        payload=_payload_of(request, AdverseEventPayload),
    )


def dose_event(request: DoseIn, study_id: str) -> DoseAdministered:
    return DoseAdministered(
        **_envelope_fields(request, study_id, "DoseAdministered"),
        occurred_at=request.administered_at,
        payload=_payload_of(request, DoseAdministeredPayload),
    )


class LabCorrectionIn(SubmissionIn):
    """A lab result reported again with corrected values, replacing an earlier event."""

    corrected_event_id: UUID
    reason: str = Field(min_length=1, max_length=1000)
    corrected: LabResultIn

    @model_validator(mode="after")
    def _same_subject(self) -> "LabCorrectionIn":
        if self.corrected.subject_id != self.subject_id:
            raise ValueError("the corrected result must be of the same subject")
        return self


class RetractionIn(SubmissionIn):
    """An earlier event withdrawn (entered in error, sample rejected)."""

    retracted_event_id: UUID
    reason: str = Field(min_length=1, max_length=1000)


def lab_correction_event(request: LabCorrectionIn, study_id: str) -> EventCorrected:
    return EventCorrected(
        **_envelope_fields(request, study_id, "EventCorrected"),
        occurred_at=utc_now(),
        payload=EventCorrectedPayload(
            corrected_event_id=request.corrected_event_id,
            reason=request.reason,
            corrected_payload=lab_event(request.corrected, study_id).payload,
        ),
    )


def retraction_event(request: RetractionIn, study_id: str) -> EventRetracted:
    return EventRetracted(
        **_envelope_fields(request, study_id, "EventRetracted"),
        occurred_at=utc_now(),
        payload=EventRetractedPayload(
            retracted_event_id=request.retracted_event_id, reason=request.reason
        ),
    )


def drugs_outside_regimen(
    request: SubmissionIn, regimen: Collection[Drug]
) -> list[tuple[tuple[str | int, ...], str]]:
    """(field, reason) for every drug the request names that the study does not give."""
    named: list[tuple[tuple[str | int, ...], Drug]] = []
    if isinstance(request, DoseIn):
        named.append((("drug",), request.drug))
    elif isinstance(request, AdverseEventIn):
        named += [(("related_drugs", i), drug) for i, drug in enumerate(request.related_drugs)]
    given = ", ".join(sorted(regimen))
    return [
        (where, f"'{drug}' is not a drug of this study (its regimen: {given})")
        for where, drug in named
        if drug not in regimen
    ]


def to_event(request: SubmissionIn, study_id: str) -> Envelope:
    converters = {
        EnrolmentIn: enrolment_event,
        LabResultIn: lab_event,
        AdverseEventIn: adverse_event,
        DoseIn: dose_event,
        LabCorrectionIn: lab_correction_event,
        RetractionIn: retraction_event,
    }
    return converters[type(request)](request, study_id)
