"""A study's protocol as data: regimen, dose levels and dose rules, loaded from protocols/*.yaml.

Validated at start-up: an unknown lab test, AE term, drug or unit, a bad threshold or a duplicate
rule id stops the service with the file, the path to the field and the reason. A new trial is a
new file, not new code.
"""

from collections.abc import Iterator
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.ae_dictionary import AeTermError, require_term
from shared.ctcae import LAB_TERMS
from shared.events import DoseAction, Drug, Model, Severity
from shared.labs import LabTest, UnitError, canonical_unit
from shared.stopping_rule import StoppingRule

PLATINUM = "platinum"  # in a rule's actions: whichever platinum agent the subject receives
PROTOCOLS_DIR = Path(__file__).resolve().parents[1] / "protocols"


class ProtocolError(ValueError):
    """A protocol file that cannot be used; the message names the file, the field and why."""


class RuleStatus(StrEnum):
    CONFIRMED = "confirmed"
    LABEL_DEFAULT = "label default, confirm against protocol"


# ---------------------------------------------------------------------------------------------
# Regimen
# ---------------------------------------------------------------------------------------------


class DrugRegimen(Model):
    dose: float = Field(gt=0)
    unit: Literal["mg", "mg/m2", "AUC"]
    days: tuple[int, ...] = Field(min_length=1)
    dose_levels: tuple[float, ...] = Field(min_length=1, description="level 0 first")

    @model_validator(mode="after")
    def _levels_descend_from_the_dose(self) -> "DrugRegimen":
        if self.dose_levels[0] != self.dose:
            raise ValueError(f"dose_levels must start at the dose {self.dose:g}")
        if any(b >= a for a, b in zip(self.dose_levels, self.dose_levels[1:], strict=False)):
            raise ValueError("dose_levels must strictly decrease")
        return self


class Regimen(Model):
    cycle_length_days: int = Field(ge=1, le=84)
    source: str = Field(min_length=1)
    drugs: dict[Drug, DrugRegimen] = Field(min_length=1)
    platinum: tuple[Drug, ...] = ()

    @model_validator(mode="after")
    def _platinum_in_regimen(self) -> "Regimen":
        missing = [drug.value for drug in self.platinum if drug not in self.drugs]
        if missing:
            raise ValueError(f"platinum agents {missing} are not in the regimen's drugs")
        return self


# ---------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------


class LabCondition(Model):
    """The subject's latest result of `lab` against absolute limits (in `unit`) and/or multiples
    of its LLN/ULN; every limit given must hold."""

    lab: LabTest
    visit_days: tuple[int, ...] | None = None  # only a sample labelled with one of these days
    unit: str | None = None
    below: float | None = Field(None, gt=0)
    at_least: float | None = Field(None, ge=0)
    above: float | None = Field(None, ge=0)
    at_most: float | None = Field(None, gt=0)
    above_uln: float | None = Field(None, gt=0)
    at_least_uln: float | None = Field(None, gt=0)
    at_most_uln: float | None = Field(None, gt=0)
    below_uln: float | None = Field(None, gt=0)
    below_lln: float | None = Field(None, gt=0)
    at_least_lln: float | None = Field(None, gt=0)
    liver_metastases: bool | None = None
    # Only when every result of the test has met the limits for longer than this (the earliest of
    # the unbroken run of such results is more than this many days before the latest).
    for_more_than_days: int | None = Field(None, ge=1, le=365)

    @field_validator("lab", mode="before")
    @classmethod
    def _known_test(cls, code: object) -> object:
        return _known(LabTest, code, "lab test")

    @field_validator("unit")
    @classmethod
    def _unit_of_test(cls, unit: str | None, info: ValidationInfo) -> str | None:
        test = info.data.get("lab")
        if unit is None or test is None:
            return unit
        try:
            return canonical_unit(test, unit)
        except UnitError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _limits_make_sense(self) -> "LabCondition":
        absolute = (self.below, self.at_least, self.above, self.at_most)
        relative = (
            self.above_uln,
            self.at_least_uln,
            self.at_most_uln,
            self.below_uln,
            self.below_lln,
            self.at_least_lln,
        )
        if all(limit is None for limit in (*absolute, *relative)):
            raise ValueError("a lab condition needs at least one limit")
        if any(limit is not None for limit in absolute) and self.unit is None:
            raise ValueError("absolute limits need their unit")
        for low, high, names in (
            (self.at_least, self.below, "at_least/below"),
            (self.above, self.at_most, "above/at_most"),
            (self.above_uln, self.at_most_uln, "above_uln/at_most_uln"),
            (self.at_least_uln, self.below_uln, "at_least_uln/below_uln"),
            (self.above_uln, self.below_uln, "above_uln/below_uln"),
            (self.at_least_uln, self.at_most_uln, "at_least_uln/at_most_uln"),
            (self.at_least_lln, self.below_lln, "at_least_lln/below_lln"),
        ):
            if low is not None and high is not None and low >= high:
                raise ValueError(f"{names}: the lower limit {low:g} is not below {high:g}")
        return self


class LabGradeCondition(Model):
    """The CTCAE grade of the subject's latest result for a lab term."""

    term: str
    min_grade: int = Field(0, ge=0, le=5)
    max_grade: int = Field(5, ge=0, le=5)

    @model_validator(mode="after")
    def _grades_ordered(self) -> "LabGradeCondition":
        return _check_grades(self)

    @field_validator("term")
    @classmethod
    def _lab_term(cls, term: str) -> str:
        known = {criteria.term for criteria in LAB_TERMS}
        if term not in known:
            raise ValueError(f"'{term}' is not a CTCAE v4.03 lab term safetymon grades")
        return term


class AeCondition(Model):
    """An adverse event report: one of `ae` terms (any term when absent) within the grades."""

    ae: tuple[str, ...] | None = None
    immune_related: bool | None = None  # as the site flagged it
    serious: bool | None = None
    min_grade: int = Field(1, ge=1, le=5)
    max_grade: int = Field(5, ge=1, le=5)
    # Recurrence: at least this many immune-related reports of these terms in the grade range.
    occurrences_at_least: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _grades_ordered(self) -> "AeCondition":
        return _check_grades(self)

    @field_validator("ae")
    @classmethod
    def _ctcae_terms(cls, terms: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if terms is None:
            return None
        try:
            return tuple(require_term(term).term for term in terms)
        except AeTermError as error:
            raise ValueError(str(error)) from None


class ClearanceCondition(Model):
    """Creatinine clearance (Cockcroft-Gault, mL/min) from the latest creatinine (else the
    baseline) and the subject's age, weight and sex at enrolment."""

    crcl_below: float | None = Field(None, gt=0)
    crcl_at_least: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_limit(self) -> "ClearanceCondition":
        if (self.crcl_below is None) == (self.crcl_at_least is None):
            raise ValueError("give exactly one of crcl_below and crcl_at_least")
        return self


class RuleInForceCondition(Model):
    """Another rule has been in force for longer than `longer_than_days` (e.g. a day-1 hold that
    delayed the cycle by more than a week)."""

    rule_in_force: str
    longer_than_days: int = Field(ge=0, le=365)


class CarboplatinDoseCondition(Model):
    """A carboplatin dose given in mg that is off the Calvert dose (AUC of the subject's dose
    level x (Cockcroft-Gault clearance capped at 125 + 25)) by more than this fraction."""

    carboplatin_dose_off_by_more_than: float = Field(gt=0, lt=1)


def _check_grades(
    condition: "LabGradeCondition | AeCondition",
) -> "LabGradeCondition | AeCondition":
    if condition.min_grade > condition.max_grade:
        raise ValueError(
            f"min_grade {condition.min_grade} is above max_grade {condition.max_grade}: "
            "the condition could never hold"
        )
    return condition


class NextCycle(Model):
    """True once the subject's next cycle starts (a new day-1 dose)."""

    next_cycle: Literal[True]


class AnyOf(Model):
    any: tuple["Condition", ...] = Field(min_length=1)
    liver_metastases: bool | None = None


class AllOf(Model):
    all: tuple["Condition", ...] = Field(min_length=1)
    liver_metastases: bool | None = None


# Which kind of condition a mapping is, by the key that only that kind has. Tags are class
# names (capitalised), so error paths can leave them out.
_CONDITION_KEYS = (
    ("any", "AnyOf"),
    ("all", "AllOf"),
    ("lab", "LabCondition"),
    ("term", "LabGradeCondition"),
    ("next_cycle", "NextCycle"),
    ("ae", "AeCondition"),
    ("immune_related", "AeCondition"),
    ("serious", "AeCondition"),
    ("crcl_below", "ClearanceCondition"),
    ("crcl_at_least", "ClearanceCondition"),
    ("rule_in_force", "RuleInForceCondition"),
    ("carboplatin_dose_off_by_more_than", "CarboplatinDoseCondition"),
)


def _condition_kind(data: Any) -> str | None:
    if isinstance(data, Model):
        return type(data).__name__
    if isinstance(data, dict):
        return next((tag for key, tag in _CONDITION_KEYS if key in data), None)
    return None


Condition = Annotated[
    Annotated[AnyOf, Tag("AnyOf")]
    | Annotated[AllOf, Tag("AllOf")]
    | Annotated[LabCondition, Tag("LabCondition")]
    | Annotated[LabGradeCondition, Tag("LabGradeCondition")]
    | Annotated[AeCondition, Tag("AeCondition")]
    | Annotated[ClearanceCondition, Tag("ClearanceCondition")]
    | Annotated[RuleInForceCondition, Tag("RuleInForceCondition")]
    | Annotated[CarboplatinDoseCondition, Tag("CarboplatinDoseCondition")]
    | Annotated[NextCycle, Tag("NextCycle")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition needs one of: lab, term, ae, immune_related, "
        "serious, crcl_below, crcl_at_least, rule_in_force, "
        "carboplatin_dose_off_by_more_than, next_cycle, any, all",
    ),
]
AnyOf.model_rebuild()
AllOf.model_rebuild()


# ---------------------------------------------------------------------------------------------
# Rules and the protocol
# ---------------------------------------------------------------------------------------------


class Rule(Model):
    id: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]*$", max_length=50)
    description: str = Field(min_length=1)
    when: Condition
    actions: dict[str, DoseAction] = Field(default_factory=dict)
    signal: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=50)
    resume_when: Condition | None = None
    severity: Severity
    source: str = Field(min_length=1)
    status: RuleStatus

    @field_validator("actions")
    @classmethod
    def _drugs_known(cls, actions: dict[str, DoseAction]) -> dict[str, DoseAction]:
        for drug in actions:
            if drug != PLATINUM:
                Drug(drug)  # a ValueError says what a drug name must look like
        return actions

    @model_validator(mode="after")
    def _does_something(self) -> "Rule":
        if not self.actions and self.signal is None:
            raise ValueError(f"rule {self.id} has neither actions nor a signal")
        return self


class ToxicityMonitoring(Model):
    """The protocol's continuous toxicity stopping rule (beta-binomial; shared/stopping_rule.py)."""

    event: str = Field(min_length=1, description="the protocol-defined toxicity counted")
    max_acceptable_rate: float = Field(gt=0, lt=1)
    prior_a: float = Field(gt=0)
    prior_b: float = Field(gt=0)
    posterior_threshold: float = Field(ge=0.5, lt=1)
    max_subjects: int = Field(ge=1, le=10_000)
    # How the event is counted from the data: within this many days of the first dose; grade 4
    # AEs of these system organ classes and terms are haematological, so not counted.
    window_days: int = Field(ge=1, le=3650)
    haematological_socs: tuple[str, ...] = ()
    haematological_terms: tuple[str, ...] = ()
    source: str = Field(min_length=1)
    status: RuleStatus

    @field_validator("haematological_terms")
    @classmethod
    def _ctcae_terms(cls, terms: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(require_term(term).term for term in terms)

    def rule(self) -> StoppingRule:
        return StoppingRule(
            self.prior_a,
            self.prior_b,
            self.max_acceptable_rate,
            self.posterior_threshold,
            self.max_subjects,
        )


class Protocol(Model):
    study_id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    ctcae_version: Literal["4.03"]
    regimen: Regimen
    rules: tuple[Rule, ...]
    toxicity_monitoring: ToxicityMonitoring | None = None

    @model_validator(mode="after")
    def _rules_fit_the_regimen(self) -> "Protocol":
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id} is used twice")
            seen.add(rule.id)
            for condition in conditions_of(rule):
                if isinstance(condition, RuleInForceCondition) and condition.rule_in_force not in {
                    r.id for r in self.rules
                }:
                    raise ValueError(f"rule {rule.id}: no rule {condition.rule_in_force}")
            for drug in rule.actions:
                if drug == PLATINUM and not self.regimen.platinum:
                    raise ValueError(f"rule {rule.id}: 'platinum' but the regimen names none")
                if drug != PLATINUM and Drug(drug) not in self.regimen.drugs:
                    raise ValueError(f"rule {rule.id}: {drug} is not in the regimen")
        return self

    def drugs_of(self, rule: Rule, platinum: Drug | None) -> Iterator[tuple[Drug, DoseAction]]:
        """The rule's actions per drug, 'platinum' resolved to the subject's agent (both when it
        is not known)."""
        for drug, action in rule.actions.items():
            if drug != PLATINUM:
                yield Drug(drug), action
            elif platinum is not None:
                yield platinum, action
            else:
                yield from ((agent, action) for agent in self.regimen.platinum)


def conditions_of(rule: Rule) -> Iterator["Condition"]:
    stack = [rule.when, *([rule.resume_when] if rule.resume_when else [])]
    while stack:
        condition = stack.pop()
        yield condition
        if isinstance(condition, AnyOf):
            stack.extend(condition.any)
        elif isinstance(condition, AllOf):
            stack.extend(condition.all)


def _known(enum: type[StrEnum], value: object, what: str) -> object:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"unknown {what} '{value}'") from None


def parse_protocol(text: str, origin: str) -> Protocol:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProtocolError(f"{origin}: not valid YAML: {error}") from None
    try:
        return Protocol.model_validate(data)
    except ValidationError as error:
        raise ProtocolError(
            f"{origin}: " + "; ".join(_describe(issue) for issue in error.errors())
        ) from None


def _describe(issue: dict) -> str:
    where = ".".join(str(part) for part in issue["loc"] if not str(part)[:1].isupper())
    return f"{where or 'protocol'}: {issue['msg'].removeprefix('Value error, ')}"


def load_protocol(path: str | Path) -> Protocol:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ProtocolError(f"{path}: {error.strerror}") from None
    return parse_protocol(text, str(path))


@cache
def study_protocol(study_id: str, path: str | None = None) -> Protocol:
    """The protocol of `study_id`: `path`, else protocols/<study_id>.yaml."""
    where = path or PROTOCOLS_DIR / f"{study_id}.yaml"
    protocol = load_protocol(where)
    if protocol.study_id != study_id:
        raise ProtocolError(f"{where}: is the protocol of {protocol.study_id}, not {study_id}")
    return protocol
