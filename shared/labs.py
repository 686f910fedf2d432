"""The laboratory tests safetymon grades, their codes, and the one unit converter.

Tests are identified by their CDISC SDTM LBTESTCD (NEUT, PLAT, BILI, ...); common short names
(ANC, PLT, TBIL) and LOINC codes resolve to the same test. Units are UCUM codes; conversions come
from a units library (pint, with UCUM parsing by ucumvert) computing in decimal arithmetic, so 1000
/mm3 is exactly 1.0 x10^9/L. The only numbers kept here are what a units library cannot know:
molar masses (mass <-> substance concentration) and valences (mEq/L).

Molar masses and the Hb factor, source: SI conversion tables (AMA Manual of Style / JAMA SI table,
as collected in ../shared/reference/dose_rules.md section 5, source S32); LOINC codes: loinc.org
(dose_rules.md section 5, source S30).
"""

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache

from ucumvert import PintUcumRegistry


class LabTest(StrEnum):
    """SDTM LBTESTCD of every graded test."""

    WBC = "WBC"
    ANC = "NEUT"
    LYMPHOCYTES = "LYM"
    CD4 = "CD4"
    PLATELETS = "PLAT"
    HEMOGLOBIN = "HGB"
    INR = "INR"
    APTT = "APTT"
    FIBRINOGEN = "FIBRINO"
    HAPTOGLOBIN = "HAPTOG"
    ALT = "ALT"
    AST = "AST"
    ALKALINE_PHOSPHATASE = "ALP"
    GGT = "GGT"
    TOTAL_BILIRUBIN = "BILI"
    CREATININE = "CREAT"
    CREATINE_KINASE = "CK"
    AMYLASE = "AMYLASE"
    LIPASE = "LIPASE"
    CHOLESTEROL = "CHOL"
    TRIGLYCERIDES = "TRIG"
    GLUCOSE = "GLUC"
    POTASSIUM = "K"
    SODIUM = "SODIUM"
    CALCIUM = "CA"  # graded as corrected serum calcium
    IONIZED_CALCIUM = "CAION"
    MAGNESIUM = "MG"
    PHOSPHATE = "PHOS"
    URATE = "URATE"
    ALBUMIN = "ALB"

    @classmethod
    def _missing_(cls, value: object) -> "LabTest | None":
        if isinstance(value, str):
            key = value.strip().upper()
            return TEST_ALIASES.get(key) or next((t for t in cls if t.value == key), None)
        return None


# Names sites commonly send instead of the LBTESTCD.
TEST_ALIASES: dict[str, LabTest] = {
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


class UnitSystem(StrEnum):
    SI = "SI"
    CONVENTIONAL = "conventional"


class UnitError(ValueError):
    """A unit that is not a unit of the given test, or that cannot be read."""


@dataclass(frozen=True)
class LabDefinition:
    test: LabTest
    name: str
    label: str  # short name for people: ANC, PLT, Hb
    loinc: tuple[str, ...]  # the first is the code of a result in the SI unit
    si_unit: str  # UCUM
    conventional_unit: str  # UCUM
    molar_mass: Decimal | None = None  # g/mol, for mass <-> substance concentration
    valence: int | None = None  # for mEq/L

    def unit_of(self, system: UnitSystem) -> str:
        return self.si_unit if system is UnitSystem.SI else self.conventional_unit


def _lab(
    test: LabTest,
    name: str,
    label: str,
    loinc: tuple[str, ...],
    si: str,
    conv: str,
    molar_mass: str | None = None,
    valence: int | None = None,
) -> LabDefinition:
    mass = Decimal(molar_mass) if molar_mass else None
    return LabDefinition(test, name, label, loinc, si, conv, mass, valence)


T = LabTest
COUNT_SI, COUNT_CONV = "10*9/L", "/mm3"
LAB_DEFINITIONS: dict[LabTest, LabDefinition] = {
    d.test: d
    for d in (
        _lab(T.WBC, "Leukocytes", "WBC", ("6690-2", "26464-8"), COUNT_SI, COUNT_CONV),
        _lab(T.ANC, "Neutrophils", "ANC", ("751-8", "753-4", "26499-4"), COUNT_SI, COUNT_CONV),
        _lab(
            T.LYMPHOCYTES,
            "Lymphocytes",
            "Lymphocytes",
            ("731-0", "732-8", "26474-7"),
            COUNT_SI,
            COUNT_CONV,
        ),
        _lab(T.CD4, "CD4 lymphocytes", "CD4", ("24467-3",), COUNT_SI, COUNT_CONV),
        _lab(T.PLATELETS, "Platelets", "PLT", ("777-3", "26515-7"), COUNT_SI, COUNT_CONV),
        # Hb(Fe) monomer: g/dL x 0.6206 = mmol/L
        _lab(T.HEMOGLOBIN, "Hemoglobin", "Hb", ("718-7", "59260-0"), "g/L", "g/dL", "16114.5"),
        _lab(T.INR, "Prothrombin time INR", "INR", ("6301-6", "34714-6"), "1", "1"),
        _lab(
            T.APTT, "Activated partial thromboplastin time", "aPTT", ("14979-9", "3173-2"), "s", "s"
        ),
        _lab(T.FIBRINOGEN, "Fibrinogen", "Fibrinogen", ("3255-7",), "g/L", "mg/dL"),
        _lab(T.HAPTOGLOBIN, "Haptoglobin", "Haptoglobin", ("4542-7",), "g/L", "mg/dL"),
        _lab(
            T.ALT, "Alanine aminotransferase", "ALT", ("1742-6", "1744-2", "77144-4"), "U/L", "U/L"
        ),
        _lab(T.AST, "Aspartate aminotransferase", "AST", ("1920-8", "30239-8"), "U/L", "U/L"),
        _lab(T.ALKALINE_PHOSPHATASE, "Alkaline phosphatase", "ALP", ("6768-6",), "U/L", "U/L"),
        _lab(T.GGT, "Gamma glutamyl transferase", "GGT", ("2324-2",), "U/L", "U/L"),
        _lab(
            T.TOTAL_BILIRUBIN,
            "Bilirubin, total",
            "TBIL",
            ("14631-6", "1975-2"),
            "umol/L",
            "mg/dL",
            "584.66",
        ),
        _lab(
            T.CREATININE,
            "Creatinine",
            "Creatinine",
            ("14682-9", "2160-0"),
            "umol/L",
            "mg/dL",
            "113.12",
        ),
        _lab(T.CREATINE_KINASE, "Creatine kinase", "CPK", ("2157-6",), "U/L", "U/L"),
        _lab(T.AMYLASE, "Amylase", "Amylase", ("1798-8",), "U/L", "U/L"),
        _lab(T.LIPASE, "Lipase", "Lipase", ("3040-3",), "U/L", "U/L"),
        _lab(
            T.CHOLESTEROL,
            "Cholesterol",
            "Cholesterol",
            ("14647-2", "2093-3"),
            "mmol/L",
            "mg/dL",
            "386.65",
        ),
        _lab(
            T.TRIGLYCERIDES,
            "Triglycerides",
            "Triglycerides",
            ("14927-8", "2571-8"),
            "mmol/L",
            "mg/dL",
            "885.7",
        ),
        _lab(
            T.GLUCOSE,
            "Glucose",
            "Glucose",
            ("14749-6", "2345-7", "14771-0", "1558-6"),
            "mmol/L",
            "mg/dL",
            "180.16",
        ),
        _lab(T.POTASSIUM, "Potassium", "K", ("2823-3", "6298-4"), "mmol/L", "mmol/L", "39.098", 1),
        _lab(T.SODIUM, "Sodium", "Na", ("2951-2", "2947-0"), "mmol/L", "mmol/L", "22.990", 1),
        _lab(
            T.CALCIUM,
            "Calcium (corrected)",
            "Ca",
            ("2000-8", "17861-6"),
            "mmol/L",
            "mg/dL",
            "40.078",
            2,
        ),
        _lab(
            T.IONIZED_CALCIUM,
            "Calcium, ionized",
            "Ca2+",
            ("1994-3", "1995-0"),
            "mmol/L",
            "mmol/L",
            "40.078",
            2,
        ),
        _lab(T.MAGNESIUM, "Magnesium", "Mg", ("2601-3", "19123-9"), "mmol/L", "mg/dL", "24.305", 2),
        _lab(
            T.PHOSPHATE,
            "Phosphate (as phosphorus)",
            "Phosphate",
            ("14879-1", "2777-1"),
            "mmol/L",
            "mg/dL",
            "30.974",
        ),
        _lab(T.URATE, "Urate", "Urate", ("14933-6", "3084-1"), "mmol/L", "mg/dL", "168.11"),
        _lab(T.ALBUMIN, "Albumin", "Albumin", ("1751-7", "61151-7"), "g/L", "g/dL"),
    )
}
LOINC_TO_TEST: dict[str, LabTest] = {
    code: definition.test for definition in LAB_DEFINITIONS.values() for code in definition.loinc
}


def resolve_test(code: str) -> LabTest:
    """A test from its LBTESTCD, a common short name, or a LOINC code."""
    key = code.strip()
    if key in LOINC_TO_TEST:
        return LOINC_TO_TEST[key]
    try:
        return LabTest(key)
    except ValueError:
        raise UnitError(
            f"unknown lab test '{code}': not an LBTESTCD, short name or LOINC code"
        ) from None


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------

_registry = PintUcumRegistry(non_int_type=Decimal)
DIMENSIONLESS = "1"
# How far a unit may be from its test's SI unit: the SI prefixes' span (yocto to yotta). UCUM
# parses "10*999999/L" as readily as "10*9/L"; such a unit is nobody's lab unit, and converting
# a value with it overflows the decimal arithmetic (or rounds a count to 0).
MIN_FACTOR, MAX_FACTOR = Decimal("1E-24"), Decimal("1E+24")
# Units come from senders: a cache of every spelling ever sent would grow without bound.
_bounded_cache = lru_cache(maxsize=4096)

# Spellings seen in lab feeds -> UCUM code candidates (tried in order against the test's units).
# "G/L" means giga per litre for a count and grams per litre otherwise, hence two candidates.
UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "10^9/l": ("10*9/L",),
    "x10^9/l": ("10*9/L",),
    "10e9/l": ("10*9/L",),
    "x10e9/l": ("10*9/L",),
    "10*9/l": ("10*9/L",),
    "giga/l": ("10*9/L",),
    "gi/l": ("10*9/L",),  # SDTM data (CDISC pilot) spell 10^9/L so
    "g/l": ("g/L", "10*9/L"),
    "10^3/ul": ("10*3/uL",),
    "x10^3/ul": ("10*3/uL",),
    "10*3/ul": ("10*3/uL",),
    "k/ul": ("10*3/uL",),
    "thou/ul": ("10*3/uL",),
    "10^3/mm3": ("10*3/uL",),
    "/mm3": ("/mm3",),
    "/mm^3": ("/mm3",),
    "cells/mm3": ("/mm3",),
    "/ul": ("/uL",),
    "cells/ul": ("/uL",),
    "g/dl": ("g/dL",),
    "mg/dl": ("mg/dL",),
    "mg/l": ("mg/L",),
    "umol/l": ("umol/L",),
    "mmol/l": ("mmol/L",),
    "nmol/l": ("nmol/L",),
    "mol/l": ("mol/L",),
    "meq/l": ("meq/L",),
    "u/l": ("U/L",),
    "iu/l": ("U/L",),
    "[iu]/l": ("U/L",),
    "ukat/l": ("ukat/L",),
    "nkat/l": ("nkat/L",),
    "s": ("s",),
    "sec": ("s",),
    "secs": ("s",),
    "seconds": ("s",),
    "1": (DIMENSIONLESS,),
    "{inr}": (DIMENSIONLESS,),
    "inr": (DIMENSIONLESS,),
    "ratio": (DIMENSIONLESS,),
    "": (DIMENSIONLESS,),
}


def _spelling_key(unit: str) -> str:
    return unit.strip().replace(" ", "").replace("µ", "u").replace("μ", "u").lower()


def canonical_unit(test: LabTest, unit: str) -> str:
    """The UCUM code of `unit` for `test`; UnitError if it is not a unit of that test."""
    candidates = UNIT_SPELLINGS.get(_spelling_key(unit), (unit.strip(),))
    for candidate in candidates:
        if _convertible(test, candidate):
            return candidate
    definition = LAB_DEFINITIONS[test]
    accepted = sorted({definition.si_unit, definition.conventional_unit})
    raise UnitError(
        f"'{unit}' is not a unit for {test.value}; use a unit convertible to "
        f"{' or '.join(accepted)}"
    )


@_bounded_cache  # failures too: a feed with one unknown unit repeats it on every row
def _convertible(test: LabTest, ucum: str) -> bool:
    try:
        factor_to_si(test, ucum)
    except UnitError:
        return False
    return True


@_bounded_cache
def factor_to_si(test: LabTest, ucum: str) -> Decimal:
    """Multiply a value in `ucum` by this to get the test's SI unit (exact decimal)."""
    definition = LAB_DEFINITIONS[test]
    if definition.si_unit == DIMENSIONLESS or ucum == DIMENSIONLESS:
        if ucum == definition.si_unit:
            return Decimal(1)
        raise UnitError(f"'{ucum}' is not a unit for {test.value}")
    try:
        quantity = _registry.Quantity(Decimal(1), _units(ucum))
        if ucum == "meq/L":  # milliequivalents: mmol x valence
            if not definition.valence:
                raise UnitError(f"mEq/L is not a unit for {test.value}")
            quantity = _registry.Quantity(Decimal(1) / definition.valence, _units("mmol/L"))
        target = _units(definition.si_unit)
        if quantity.dimensionality != _registry.Quantity(Decimal(1), target).dimensionality:
            quantity = _through_molar_mass(quantity, definition)
        factor = Decimal(quantity.to(target).magnitude)
        if not MIN_FACTOR <= factor <= MAX_FACTOR:
            raise UnitError(
                f"'{ucum}' is not a unit for {test.value}: {factor:.1E} {definition.si_unit}, "
                "beyond any laboratory's scale"
            )
        return factor
    except UnitError:
        raise
    except Exception as error:  # pint and the UCUM parser raise a variety of errors
        raise UnitError(f"'{ucum}' is not a unit for {test.value}: {error}") from error


def _through_molar_mass(quantity, definition: LabDefinition):
    if definition.molar_mass is None:
        raise UnitError(f"no molar mass known for {definition.test.value}")
    molar_mass = _registry.Quantity(definition.molar_mass, _units("g/mol"))
    mass_dims = _registry.Quantity(Decimal(1), _units("g/L")).dimensionality
    return quantity / molar_mass if quantity.dimensionality == mass_dims else quantity * molar_mass


@_bounded_cache
def _units(ucum: str):
    parsed = _registry.from_ucum(ucum)
    if not hasattr(parsed, "units"):
        raise UnitError(f"cannot read the UCUM unit '{ucum}'")
    return parsed.units


@_bounded_cache
def conversion_factor(test: LabTest, from_ucum: str, to_ucum: str) -> Decimal:
    return factor_to_si(test, from_ucum) / factor_to_si(test, to_ucum)


def convert(test: LabTest, value: float, from_unit: str, to_unit: str) -> float:
    source, target = canonical_unit(test, from_unit), canonical_unit(test, to_unit)
    if source == target:
        return value
    return float(Decimal(str(value)) * conversion_factor(test, source, target))


def convert_ucum(value: float, from_ucum: str, to_ucum: str) -> float:
    """A measurement that is not a lab test (body weight, height) from one UCUM unit to
    another of the same dimension, by the same UCUM registry as the lab tests."""
    try:
        quantity = _registry.Quantity(Decimal(str(value)), _units(from_ucum))
        return float(quantity.to(_units(to_ucum)).magnitude)
    except UnitError:
        raise
    except Exception:
        raise UnitError(f"'{from_ucum}' cannot be converted to {to_ucum}") from None


def to_si(test: LabTest, value: float, unit: str) -> float:
    return convert(test, value, unit, LAB_DEFINITIONS[test].si_unit)


def to_conventional(test: LabTest, value: float, unit: str) -> float:
    return convert(test, value, unit, LAB_DEFINITIONS[test].conventional_unit)


def unit_system(test: LabTest, ucum: str) -> UnitSystem | None:
    """Which printed CTCAE column a value in `ucum` is graded against directly, if any."""
    definition = LAB_DEFINITIONS[test]
    if ucum == definition.si_unit:
        return UnitSystem.SI
    if ucum == definition.conventional_unit:
        return UnitSystem.CONVENTIONAL
    return None


_DISPLAY_UNITS = {"10*9/L": "x10^9/L", "10*3/uL": "x10^3/uL", "umol/L": "µmol/L", "1": ""}


def display_unit(ucum: str) -> str:
    """How people write a UCUM unit on a report."""
    return _DISPLAY_UNITS.get(ucum, ucum)


def display_result(test: LabTest, value: float, ucum: str) -> str:
    """'ANC 0.9 x10^9/L'."""
    return f"{LAB_DEFINITIONS[test].label} {value:g} {display_unit(ucum)}".rstrip()
