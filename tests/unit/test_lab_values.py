"""Reading a lab result as sites write it, and refusing what is not a gradeable number."""

import math

import pytest
from pydantic import BaseModel, ValidationError

from shared.lab_values import LabValue, LabValueError, LabValueField, parse_lab_value


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("1.5", 1.5),
        ("1,5", 1.5),  # decimal comma
        ("0,5", 0.5),
        ("12,34", 12.34),
        (",5", 0.5),
        (".5", 0.5),
        ("0", 0.0),
        ("+5", 5.0),
        ("1,250,000", 1250000.0),  # several groups: thousands separators
        ("1,500.5", 1500.5),  # a decimal point after the group: thousands separator
        ("1,500.5", 1500.5),
        ("1,234,567", 1234567.0),
        ("1 500", 1500.0),  # a space groups thousands too
    ],
)
def test_reads_decimal_commas_and_thousands_separators(raw: str, number: float) -> None:
    assert parse_lab_value(raw) == LabValue(number, None)


@pytest.mark.parametrize(
    ("raw", "number"),
    [("1.5e3", 1500.0), ("1.5E-3", 0.0015), ("1,5e3", 1500.0), ("2e9", 2e9), ("1e+2", 100.0)],
)
def test_reads_an_exponent(raw: str, number: float) -> None:
    assert parse_lab_value(raw).number == pytest.approx(number, rel=1e-15)


@pytest.mark.parametrize(
    ("raw", "comparator", "number"),
    [
        ("<0.1", "<", 0.1),
        (">1000", ">", 1000.0),
        ("<=5", "<=", 5.0),
        (">= 1000", ">=", 1000.0),
        ("< 0,1", "<", 0.1),
        (">75000", ">", 75000.0),
        ("<1e-3", "<", 0.001),
    ],
)
def test_reads_a_comparator_as_a_bound(raw: str, comparator: str, number: float) -> None:
    value = parse_lab_value(raw)
    assert (value.comparator, value.number) == (comparator, number)


@pytest.mark.parametrize("raw", ["  1.5", "1.5  ", "\t1.5\n", " < 1.5 ", "< 1.5"])
def test_ignores_whitespace(raw: str) -> None:
    assert parse_lab_value(raw).number == 1.5


@pytest.mark.parametrize(("raw", "shown"), [("<0.1", "<0.1"), (">=1000", ">=1000"), ("1,5", "1.5")])
def test_prints_back_as_read(raw: str, shown: str) -> None:
    assert str(parse_lab_value(raw)) == shown


@pytest.mark.parametrize(("raw", "number"), [(1.5, 1.5), (3, 3.0), (0, 0.0)])
def test_accepts_numbers(raw: float, number: float) -> None:
    value = parse_lab_value(raw)
    assert value == LabValue(number, None) and isinstance(value.number, float)


def test_a_lab_value_passes_through() -> None:
    value = LabValue(0.1, "<")
    assert parse_lab_value(value) is value


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("pending", "'pending' is not a numeric result"),
        ("haemolysed", "'haemolysed' is not a numeric result"),
        ("", "'' is not a numeric result"),
        ("   ", "'   ' is not a numeric result"),
        ("<", "'<' is not a numeric result"),
        (">>5", "'>>5' is not a numeric result"),
        ("1..5", "'1..5' is not a numeric result"),
        ("1,5,5", "'1,5,5' is not a numeric result"),
        ("1.234,5", "'1.234,5' is not a numeric result"),
        ("1.5 mmol/L", "'1.5 mmol/L' is not a numeric result"),
        ("0x10", "'0x10' is not a numeric result"),
        ("NaN", "'NaN' is not a numeric result"),
        ("inf", "'inf' is not a numeric result"),
        ("Infinity", "'Infinity' is not a numeric result"),
        ("1e400", "'1e400' is not a finite number"),
        ("-1", "'-1' is negative: no graded lab value can be"),
        ("-0.5", "'-0.5' is negative: no graded lab value can be"),
        ("<-1", "'<-1' is negative: no graded lab value can be"),
        ("- 1", "'- 1' is negative: no graded lab value can be"),
    ],
)
def test_refuses_text_that_is_not_a_gradeable_number_with_the_reason(
    raw: str, message: str
) -> None:
    with pytest.raises(LabValueError) as raised:
        parse_lab_value(raw)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "a lab result must be a number, not true/false"),
        (False, "a lab result must be a number, not true/false"),
        (None, "a lab result must be a number or a string, not NoneType"),
        ([1.5], "a lab result must be a number or a string, not list"),
        (math.nan, "'nan' is not a finite number"),
        (math.inf, "'inf' is not a finite number"),
        (-math.inf, "'-inf' is not a finite number"),
        (-2, "'-2' is negative: no graded lab value can be"),
        (-0.1, "'-0.1' is negative: no graded lab value can be"),
    ],
)
def test_refuses_values_that_are_not_gradeable_numbers_with_the_reason(
    raw: object, message: str
) -> None:
    with pytest.raises(LabValueError) as raised:
        parse_lab_value(raw)
    assert str(raised.value) == message


def test_a_lab_value_error_is_a_value_error() -> None:
    assert issubclass(LabValueError, ValueError)


class _Result(BaseModel):
    value: LabValueField


def test_the_pydantic_field_reads_and_writes_the_site_form() -> None:
    result = _Result(value="<0,1")
    assert result.value == LabValue(0.1, "<")
    assert result.model_dump() == {"value": "<0.1"}
    assert _Result(value=2.5).value == LabValue(2.5, None)


def test_the_pydantic_field_refuses_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="'pending' is not a numeric result"):
        _Result(value="pending")


@pytest.mark.parametrize(("raw", "number"), [("0,420", 0.42), ("0,125", 0.125), ("0,088", 0.088)])
def test_a_decimal_comma_with_three_decimals_after_zero_is_not_thousands(
    raw: str, number: float
) -> None:
    # e.g. urate 0,420 mmol/L (ULN 0.42) would become 420 mmol/L: Hyperuricemia grade 4
    assert parse_lab_value(raw).number == number


@pytest.mark.parametrize("raw", ["1,500", "75,000", "<1,000"])
def test_one_comma_before_three_digits_is_refused_as_ambiguous(raw: str) -> None:
    # 1.5 with a decimal comma or 1500 with a thousands separator: a wrong guess moves a count
    # a thousandfold, so the site must send the number without the comma.
    with pytest.raises(LabValueError, match="is ambiguous: a decimal comma"):
        parse_lab_value(raw)
