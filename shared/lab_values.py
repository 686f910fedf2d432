"""Reading a lab result value as sites write it: "1.5", "1,5", "75,000", "<0.1", ">= 1000".

Anything else ("pending", "haemolysed", "") is refused with the reason; so is a negative value,
which no graded test can have.
"""

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

COMPARATORS = ("<=", ">=", "<", ">")
_NUMBER = re.compile(
    r"^[+]?(\d+(?:[.,]\d+)?|\d{1,3}(?:,\d{3})+(?:\.\d+)?|[.,]\d+)(?:[eE][+-]?\d+)?$"
)
# "1,250,000" groups thousands; "0,125" cannot (no number starts with a 0 group): decimal comma.
# "1,500" could be either (1.5 with a decimal comma, 1500 with a thousands separator): a wrong
# guess moves a count a thousandfold, so it is refused.
_AMBIGUOUS = re.compile(r"^[1-9]\d{0,2},\d{3}$")
_THOUSANDS = re.compile(r"^[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")


class LabValueError(ValueError):
    """A result that is not a number safetymon can grade."""


@dataclass(frozen=True, slots=True)
class LabValue:
    number: float
    comparator: str | None = None  # "<", "<=", ">", ">=": the result is only a bound

    def __str__(self) -> str:
        return f"{self.comparator or ''}{self.number:g}"


def parse_lab_value(raw: object) -> LabValue:
    if isinstance(raw, LabValue):
        return raw
    if isinstance(raw, bool):
        raise LabValueError("a lab result must be a number, not true/false")
    if isinstance(raw, int | float):
        try:
            number = float(raw)
        except OverflowError:  # an integer past float's range (JSON numbers have no limit)
            raise LabValueError("the number is too large to be a lab result") from None
        return _checked(number, None, raw)
    if not isinstance(raw, str):
        raise LabValueError(f"a lab result must be a number or a string, not {type(raw).__name__}")
    text = raw.strip().replace(" ", "")
    comparator = next((c for c in COMPARATORS if text.startswith(c)), None)
    number_text = text[len(comparator) :] if comparator else text
    if number_text.startswith("-"):
        raise LabValueError(f"'{raw}' is negative: no graded lab value can be")
    if not _NUMBER.match(number_text):
        raise LabValueError(f"'{raw}' is not a numeric result")
    return _checked(_to_float(number_text), comparator, raw)


def _to_float(text: str) -> float:
    if _AMBIGUOUS.match(text):
        whole, fraction = text.split(",")
        raise LabValueError(
            f"'{text}' is ambiguous: a decimal comma ({whole}.{fraction}) or a thousands "
            f"separator ({whole}{fraction})? Send the number without the comma"
        )
    if _THOUSANDS.match(text):  # "1,250,000" or "1,500.5": comma groups thousands
        return float(text.replace(",", ""))
    return float(text.replace(",", "."))  # "1,5", "0,125": decimal comma


def _checked(number: float, comparator: str | None, raw: object) -> LabValue:
    if number != number or number in (float("inf"), float("-inf")):
        raise LabValueError(f"'{raw}' is not a finite number")
    if number < 0:
        raise LabValueError(f"'{raw}' is negative: no graded lab value can be")
    return LabValue(number + 0.0, comparator)  # -0.0 is 0: its text "-0" would read as negative


def _validate(raw: Any) -> LabValue:
    try:
        return parse_lab_value(raw)
    except LabValueError as error:
        raise ValueError(str(error)) from error


# A pydantic field type: accepts 1.5, "1,5", "<0.1"; refuses "pending" on the field itself.
LabValueField = Annotated[
    LabValue,
    BeforeValidator(_validate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "examples": ["<0.1"]}]}),
]
