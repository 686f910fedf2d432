"""The unit converter: every test, both directions, the spellings labs send, exact at thresholds."""

import pytest

from shared.labs import LAB_DEFINITIONS, LabTest, UnitError, canonical_unit, convert, to_si


@pytest.mark.parametrize(
    ("test", "value", "unit", "si"),
    [
        (LabTest.ANC, 1500, "/mm3", 1.5),
        (LabTest.ANC, 1000, "cells/uL", 1.0),
        (LabTest.ANC, 900, "/mm3", 0.9),
        (LabTest.ANC, 0.5, "10^3/uL", 0.5),
        (LabTest.ANC, 2.1, "G/L", 2.1),
        (LabTest.PLATELETS, 75000, "/mm3", 75.0),
        (LabTest.PLATELETS, 100, "x10^9/L", 100.0),
        (LabTest.HEMOGLOBIN, 10.0, "g/dL", 100.0),
        (LabTest.HEMOGLOBIN, 8.0, "g/dl", 80.0),
        (LabTest.HEMOGLOBIN, 6.2, "mmol/L", 99.9099),
        (LabTest.ALT, 120, "IU/L", 120.0),
        (LabTest.ALT, 2, "µkat/L", 120.0),
        (LabTest.AST, 1, "ukat/L", 60.0),
        (LabTest.TOTAL_BILIRUBIN, 1.0, "mg/dL", 17.10396),
        (LabTest.TOTAL_BILIRUBIN, 20.5, "μmol/L", 20.5),
        (LabTest.CREATININE, 1.0, "mg/dL", 88.40170),
        (LabTest.CREATININE, 0.1, "mmol/L", 100.0),
    ],
)
def test_converts_to_si(test: LabTest, value: float, unit: str, si: float) -> None:
    assert to_si(test, value, unit) == pytest.approx(si, abs=1e-5)


@pytest.mark.parametrize(
    ("test", "si_value", "conventional"),
    [
        (LabTest.ANC, 1.5, 1500.0),
        (LabTest.PLATELETS, 50.0, 50000.0),
        (LabTest.HEMOGLOBIN, 80.0, 8.0),
        (LabTest.TOTAL_BILIRUBIN, 34.20792, 2.0),
        (LabTest.CREATININE, 176.8034, 2.0),
    ],
)
def test_converts_si_to_conventional_and_back(
    test: LabTest, si_value: float, conventional: float
) -> None:
    definition = LAB_DEFINITIONS[test]
    there = convert(test, si_value, definition.si_unit, definition.conventional_unit)
    assert there == pytest.approx(conventional)
    back = convert(test, there, definition.conventional_unit, definition.si_unit)
    assert back == pytest.approx(si_value, rel=1e-12)


def test_threshold_values_stay_exactly_on_the_threshold() -> None:
    # 0.001 is not a binary fraction; decimal arithmetic keeps 1000/mm3 exactly at 1.0 x10^9/L.
    assert to_si(LabTest.ANC, 1000, "/mm3") == 1.0
    assert to_si(LabTest.ANC, 1500, "/mm3") == 1.5
    assert to_si(LabTest.ANC, 500, "/mm3") == 0.5
    assert to_si(LabTest.PLATELETS, 25000, "/mm3") == 25.0


def test_g_per_litre_means_giga_for_counts_and_grams_for_haemoglobin() -> None:
    assert canonical_unit(LabTest.ANC, "G/L") == "10*9/L"
    assert canonical_unit(LabTest.HEMOGLOBIN, "g/L") == "g/L"


@pytest.mark.parametrize(
    ("test", "unit"),
    [
        (LabTest.ANC, "g/dL"),
        (LabTest.HEMOGLOBIN, "/mm3"),
        (LabTest.CREATININE, "U/L"),
        (LabTest.ALT, "furlongs"),
    ],
)
def test_refuses_a_unit_that_does_not_belong_to_the_test(test: LabTest, unit: str) -> None:
    with pytest.raises(UnitError, match=f"'{unit}' is not a unit for {test.value}; use a unit"):
        canonical_unit(test, unit)
