"""The unit converter: every test, both directions, the spellings labs send, exact at thresholds."""

import pytest

from shared.labs import (
    LAB_DEFINITIONS,
    LOINC_TO_TEST,
    TEST_ALIASES,
    LabTest,
    UnitError,
    canonical_unit,
    convert,
    convert_ucum,
    resolve_test,
    to_conventional,
    to_si,
)


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


# ---------------------------------------------------------------------------------------------
# Resolving a test: LBTESTCD, short names, LOINC
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("test", list(LabTest), ids=lambda t: t.value)
def test_every_test_resolves_from_its_lbtestcd(test: LabTest) -> None:
    assert resolve_test(test.value) is test
    assert resolve_test(f" {test.value.lower()} ") is test


ALIASES = {
    "ANC": LabTest.ANC,
    "NEUTROPHILS": LabTest.ANC,
    "PLT": LabTest.PLATELETS,
    "HB": LabTest.HEMOGLOBIN,
    "TBIL": LabTest.TOTAL_BILIRUBIN,
    "CPK": LabTest.CREATINE_KINASE,
    "LYMPH": LabTest.LYMPHOCYTES,
    "PHOSPHATE": LabTest.PHOSPHATE,
    "UA": LabTest.URATE,
    "NA": LabTest.SODIUM,
    "GLUCOSE": LabTest.GLUCOSE,
    "CAI": LabTest.IONIZED_CALCIUM,
}


@pytest.mark.parametrize(("alias", "test"), ALIASES.items())
def test_short_names_resolve_to_their_test(alias: str, test: LabTest) -> None:
    assert resolve_test(alias) is test
    assert resolve_test(alias.lower()) is test
    assert LabTest(alias) is test


def test_every_alias_is_specified_above() -> None:
    assert ALIASES == TEST_ALIASES


LOINC_CODES = [
    (code, test) for test, definition in LAB_DEFINITIONS.items() for code in definition.loinc
]


@pytest.mark.parametrize(("code", "test"), LOINC_CODES, ids=[c for c, _ in LOINC_CODES])
def test_every_loinc_code_resolves_to_its_test(code: str, test: LabTest) -> None:
    assert resolve_test(code) is test
    assert resolve_test(f" {code} ") is test


def test_no_loinc_code_belongs_to_two_tests() -> None:
    codes = [code for code, _ in LOINC_CODES]
    assert len(codes) == len(set(codes)) == len(LOINC_TO_TEST)


def test_every_test_has_a_definition_and_a_loinc_code() -> None:
    assert set(LAB_DEFINITIONS) == set(LabTest)
    assert all(definition.loinc for definition in LAB_DEFINITIONS.values())


@pytest.mark.parametrize("code", ["XYZ", "", "0000-0", "ANC2"])
def test_an_unknown_test_is_refused_with_the_reason(code: str) -> None:
    with pytest.raises(UnitError, match="not an LBTESTCD, short name or LOINC code"):
        resolve_test(code)


# ---------------------------------------------------------------------------------------------
# Mass <-> substance concentration, with the SI conversion factors of the reference tables
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "conventional", "si", "factor"),
    [
        (LabTest.GLUCOSE, "mg/dL", "mmol/L", 0.05551),
        (LabTest.CHOLESTEROL, "mg/dL", "mmol/L", 0.02586),
        (LabTest.TRIGLYCERIDES, "mg/dL", "mmol/L", 0.01129),
        (LabTest.URATE, "mg/dL", "umol/L", 59.48),
        (LabTest.URATE, "mg/dL", "mmol/L", 0.05948),
        (LabTest.CALCIUM, "mg/dL", "mmol/L", 0.2495),
        (LabTest.IONIZED_CALCIUM, "mg/dL", "mmol/L", 0.2495),
        (LabTest.MAGNESIUM, "mg/dL", "mmol/L", 0.4114),
        (LabTest.PHOSPHATE, "mg/dL", "mmol/L", 0.3229),
        (LabTest.TOTAL_BILIRUBIN, "mg/dL", "umol/L", 17.1),
        (LabTest.CREATININE, "mg/dL", "umol/L", 88.4),
        (LabTest.HEMOGLOBIN, "g/dL", "mmol/L", 0.6206),
    ],
    ids=lambda x: x.value if isinstance(x, LabTest) else str(x),
)
@pytest.mark.parametrize("amount", [1.0, 2.5, 160.0])
def test_mass_and_molar_units_convert_by_the_documented_factor_both_ways(
    test: LabTest, conventional: str, si: str, factor: float, amount: float
) -> None:
    assert convert(test, amount, conventional, si) == pytest.approx(amount * factor, rel=1e-3)
    assert convert(test, amount, si, conventional) == pytest.approx(amount / factor, rel=1e-3)
    there = convert(test, amount, conventional, si)
    assert convert(test, there, si, conventional) == pytest.approx(amount, rel=1e-12)


@pytest.mark.parametrize(
    "test", [t for t, d in LAB_DEFINITIONS.items() if d.si_unit != d.conventional_unit]
)
def test_to_si_and_to_conventional_use_the_definitions_units(test: LabTest) -> None:
    d = LAB_DEFINITIONS[test]
    assert to_si(test, 3.0, d.conventional_unit) == convert(
        test, 3.0, d.conventional_unit, d.si_unit
    )
    assert to_conventional(test, 3.0, d.si_unit) == convert(
        test, 3.0, d.si_unit, d.conventional_unit
    )
    assert to_si(test, 3.0, d.si_unit) == 3.0
    assert to_conventional(test, 3.0, d.conventional_unit) == 3.0


@pytest.mark.parametrize(
    ("test", "unit", "si"),
    [
        (LabTest.WBC, "/mm3", 1e-3),
        (LabTest.WBC, "10^3/uL", 1.0),
        (LabTest.PLATELETS, "/uL", 1e-3),
        (LabTest.HEMOGLOBIN, "g/dL", 10.0),
        (LabTest.ALBUMIN, "g/dL", 10.0),
        (LabTest.FIBRINOGEN, "mg/dL", 0.01),
        (LabTest.HAPTOGLOBIN, "mg/dL", 0.01),
        (LabTest.CREATININE, "mmol/L", 1000.0),
        (LabTest.TOTAL_BILIRUBIN, "mmol/L", 1000.0),
        (LabTest.URATE, "umol/L", 1e-3),
    ],
)
def test_same_dimension_units_convert_exactly(test: LabTest, unit: str, si: float) -> None:
    assert to_si(test, 1.0, unit) == si


# ---------------------------------------------------------------------------------------------
# Milliequivalents, katals, and G/L
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "mmol_per_meq"),
    [
        (LabTest.CALCIUM, 0.5),  # Ca2+: 1 mEq/L = 0.5 mmol/L
        (LabTest.IONIZED_CALCIUM, 0.5),
        (LabTest.MAGNESIUM, 0.5),  # Mg2+
        (LabTest.POTASSIUM, 1.0),  # K+: 1 mEq/L = 1 mmol/L
        (LabTest.SODIUM, 1.0),
    ],
)
def test_milliequivalents_are_millimoles_divided_by_the_valence(
    test: LabTest, mmol_per_meq: float
) -> None:
    assert convert(test, 4.0, "mEq/L", "mmol/L") == 4.0 * mmol_per_meq
    assert convert(test, 4.0, "mmol/L", "mEq/L") == 4.0 / mmol_per_meq
    assert convert(test, 4.0, "meq/l", "mmol/L") == 4.0 * mmol_per_meq


def test_magnesium_in_meq_per_l_converts_to_mg_per_dl_through_mmol() -> None:
    # 2 mEq/L = 1 mmol/L = 2.43 mg/dL
    assert convert(LabTest.MAGNESIUM, 2.0, "mEq/L", "mg/dL") == pytest.approx(2.4305, rel=1e-4)


@pytest.mark.parametrize("test", [LabTest.PHOSPHATE, LabTest.GLUCOSE, LabTest.CREATININE])
def test_milliequivalents_are_refused_for_a_test_without_a_valence(test: LabTest) -> None:
    with pytest.raises(UnitError, match=f"'mEq/L' is not a unit for {test.value}; use a unit"):
        canonical_unit(test, "mEq/L")


ENZYMES = [
    LabTest.ALT,
    LabTest.AST,
    LabTest.ALKALINE_PHOSPHATASE,
    LabTest.GGT,
    LabTest.CREATINE_KINASE,
    LabTest.AMYLASE,
    LabTest.LIPASE,
]


@pytest.mark.parametrize("test", ENZYMES, ids=lambda t: t.value)
def test_one_microkatal_per_litre_is_60_units_per_litre(test: LabTest) -> None:
    assert to_si(test, 1.0, "ukat/L") == 60.0
    assert to_si(test, 1.0, "µkat/L") == 60.0
    assert to_si(test, 1000.0, "nkat/L") == 60.0
    assert convert(test, 120.0, "U/L", "ukat/L") == 2.0
    assert to_si(test, 55.0, "IU/L") == 55.0


@pytest.mark.parametrize(
    ("test", "ucum"),
    [
        (LabTest.WBC, "10*9/L"),
        (LabTest.ANC, "10*9/L"),
        (LabTest.LYMPHOCYTES, "10*9/L"),
        (LabTest.CD4, "10*9/L"),
        (LabTest.PLATELETS, "10*9/L"),
        (LabTest.HEMOGLOBIN, "g/L"),
        (LabTest.ALBUMIN, "g/L"),
        (LabTest.FIBRINOGEN, "g/L"),
        (LabTest.HAPTOGLOBIN, "g/L"),
    ],
)
def test_g_per_litre_is_giga_for_counts_and_grams_for_proteins(test: LabTest, ucum: str) -> None:
    assert canonical_unit(test, "G/L") == ucum
    assert to_si(test, 2.5, "G/L") == 2.5


@pytest.mark.parametrize(
    ("test", "unit", "accepted"),
    [
        (LabTest.PLATELETS, "mmol/L", "/mm3 or 10*9/L"),
        (LabTest.HEMOGLOBIN, "U/L", "g/L or g/dL"),
        (LabTest.ALBUMIN, "mmol/L", "g/L or g/dL"),
        (LabTest.FIBRINOGEN, "umol/L", "g/L or mg/dL"),
        (LabTest.ALT, "mmol/L", "U/L"),
        (LabTest.GLUCOSE, "U/L", "mg/dL or mmol/L"),
        (LabTest.POTASSIUM, "s", "mmol/L"),
        (LabTest.INR, "s", "1"),
        (LabTest.APTT, "1", "s"),
        (LabTest.APTT, "mg/dL", "s"),
        (LabTest.CREATININE, "10*9/L", "mg/dL or umol/L"),
    ],
)
def test_a_unit_of_the_wrong_dimension_is_refused_naming_the_accepted_units(
    test: LabTest, unit: str, accepted: str
) -> None:
    message = f"'{unit}' is not a unit for {test.value}; use a unit convertible to {accepted}"
    with pytest.raises(UnitError) as raised:
        canonical_unit(test, unit)
    assert str(raised.value) == message
    with pytest.raises(UnitError, match="is not a unit for"):
        convert(test, 1.0, unit, LAB_DEFINITIONS[test].si_unit)


def test_body_measures_convert_between_ucum_units_of_one_dimension() -> None:
    assert convert_ucum(154, "[lb_av]", "kg") == pytest.approx(69.853, abs=1e-3)
    assert convert_ucum(65, "[in_i]", "cm") == pytest.approx(165.1)
    assert convert_ucum(1.7, "m", "cm") == pytest.approx(170.0)


def test_a_body_measure_in_another_dimension_or_no_ucum_unit_is_refused() -> None:
    with pytest.raises(UnitError, match="'mg' cannot be converted to cm"):
        convert_ucum(3, "mg", "cm")
    with pytest.raises(UnitError):
        convert_ucum(150, "lb", "kg")  # UCUM spells it [lb_av]
