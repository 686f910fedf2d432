"""The laboratory tests safetymon understands, and the one unit converter.

Values are converted with decimal arithmetic so that a value sent exactly at a CTCAE threshold in
one unit lands exactly on it in the other (900 /mm3 is 0.9 x10^9/L, never 0.8999...).

Conversion factors (to the SI unit), source: SI conversion tables (JAMA / AMA Manual of Style SI
table, as collected in ../shared/reference/dose_rules.md section 5, source S32):
  counts        10^9/L = 10^3/uL = G/L;  /mm3 = cells/uL = 10^-3 x 10^9/L
  haemoglobin   g/dL x 10 = g/L;  Hb(Fe) mmol/L x 16.114 = g/L  (g/dL x 0.6206 = mmol/L)
  ALT, AST      IU/L = U/L;  ukat/L x 60 = U/L  (1 U = 1 umol/min, 1 ukat = 60 umol/min)
  bilirubin     mg/dL x 17.1 = umol/L  (MW 584.7)
  creatinine    mg/dL x 88.4 = umol/L  (MW 113.1);  mmol/L x 1000 = umol/L
"""

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class LabTest(StrEnum):
    ANC = "ANC"
    PLATELETS = "PLT"
    HEMOGLOBIN = "HGB"
    ALT = "ALT"
    AST = "AST"
    TOTAL_BILIRUBIN = "TBIL"
    CREATININE = "CREAT"


class UnitError(ValueError):
    """A unit that is not a unit of the given test."""


@dataclass(frozen=True)
class LabDefinition:
    test: LabTest
    name: str
    loinc: str
    si_unit: str
    conventional_unit: str
    # canonical unit spelling -> factor that converts a value in that unit to the SI unit
    factors_to_si: dict[str, Decimal]
    # lower-cased, space-free spellings seen in lab feeds -> canonical unit spelling
    aliases: dict[str, str]


_COUNT_FACTORS = {"10^9/L": Decimal(1), "/mm3": Decimal("0.001")}
_COUNT_ALIASES = {
    "10^9/l": "10^9/L",
    "x10^9/l": "10^9/L",
    "10*9/l": "10^9/L",
    "10e9/l": "10^9/L",
    "g/l": "10^9/L",
    "10^3/ul": "10^9/L",
    "x10^3/ul": "10^9/L",
    "10*3/ul": "10^9/L",
    "k/ul": "10^9/L",
    "thou/ul": "10^9/L",
    "/mm3": "/mm3",
    "/mm^3": "/mm3",
    "cells/mm3": "/mm3",
    "/ul": "/mm3",
    "cells/ul": "/mm3",
}
_ENZYME_FACTORS = {"U/L": Decimal(1), "ukat/L": Decimal(60)}
_ENZYME_ALIASES = {"u/l": "U/L", "iu/l": "U/L", "[iu]/l": "U/L", "ukat/l": "ukat/L"}

LAB_DEFINITIONS: dict[LabTest, LabDefinition] = {
    LabTest.ANC: LabDefinition(
        LabTest.ANC,
        "Absolute neutrophil count",
        "751-8",
        "10^9/L",
        "/mm3",
        _COUNT_FACTORS,
        _COUNT_ALIASES,
    ),
    LabTest.PLATELETS: LabDefinition(
        LabTest.PLATELETS,
        "Platelet count",
        "777-3",
        "10^9/L",
        "/mm3",
        _COUNT_FACTORS,
        _COUNT_ALIASES,
    ),
    LabTest.HEMOGLOBIN: LabDefinition(
        LabTest.HEMOGLOBIN,
        "Hemoglobin",
        "718-7",
        "g/L",
        "g/dL",
        {"g/L": Decimal(1), "g/dL": Decimal(10), "mmol/L": Decimal("16.114")},
        {"g/l": "g/L", "g/dl": "g/dL", "mmol/l": "mmol/L"},
    ),
    LabTest.ALT: LabDefinition(
        LabTest.ALT,
        "Alanine aminotransferase",
        "1742-6",
        "U/L",
        "U/L",
        _ENZYME_FACTORS,
        _ENZYME_ALIASES,
    ),
    LabTest.AST: LabDefinition(
        LabTest.AST,
        "Aspartate aminotransferase",
        "1920-8",
        "U/L",
        "U/L",
        _ENZYME_FACTORS,
        _ENZYME_ALIASES,
    ),
    LabTest.TOTAL_BILIRUBIN: LabDefinition(
        LabTest.TOTAL_BILIRUBIN,
        "Total bilirubin",
        "14631-6",
        "umol/L",
        "mg/dL",
        {"umol/L": Decimal(1), "mg/dL": Decimal("17.1")},
        {"umol/l": "umol/L", "mg/dl": "mg/dL"},
    ),
    LabTest.CREATININE: LabDefinition(
        LabTest.CREATININE,
        "Creatinine",
        "14682-9",
        "umol/L",
        "mg/dL",
        {"umol/L": Decimal(1), "mg/dL": Decimal("88.4"), "mmol/L": Decimal(1000)},
        {"umol/l": "umol/L", "mg/dl": "mg/dL", "mmol/l": "mmol/L"},
    ),
}


def canonical_unit(test: LabTest, unit: str) -> str:
    """The canonical spelling of `unit` for `test`; UnitError if it is not a unit of that test."""
    definition = LAB_DEFINITIONS[test]
    key = unit.strip().replace(" ", "").replace("µ", "u").replace("μ", "u").lower()
    if key in definition.aliases:
        return definition.aliases[key]
    accepted = ", ".join(definition.factors_to_si)
    raise UnitError(f"'{unit}' is not a unit for {test.value}; accepted: {accepted}")


def convert(test: LabTest, value: float, from_unit: str, to_unit: str) -> float:
    definition = LAB_DEFINITIONS[test]
    source = canonical_unit(test, from_unit)
    target = canonical_unit(test, to_unit)
    in_si = Decimal(str(value)) * definition.factors_to_si[source]
    return float(in_si / definition.factors_to_si[target])


def to_si(test: LabTest, value: float, unit: str) -> float:
    return convert(test, value, unit, LAB_DEFINITIONS[test].si_unit)


def to_conventional(test: LabTest, value: float, unit: str) -> float:
    return convert(test, value, unit, LAB_DEFINITIONS[test].conventional_unit)
