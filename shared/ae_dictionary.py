"""CTCAE v4.03 adverse-event terms, read once from shared/data/ctcae_v4_03_terms.csv (unchanged).
Source: NCI CTEP, CTCAE v4.03 (CTCAE_4.03_2010-06-14.xls), a US-government work in the public
domain; codes are MedDRA v12.0 LLT codes as NCI ships them. See ../shared/reference/CTCAE_SOURCE.md.
"""

import csv
import difflib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources

# The data file's version; no import from shared.ctcae, so that it may one day import this module.
CTCAE_VERSION = "4.03"
DATA_FILE = "data/ctcae_v4_03_terms.csv"
GRADES = (1, 2, 3, 4, 5)
NO_GRADE = "-"  # NCI's cell for a grade the term does not define
# A typo is close to its term (Pnemonitis/Pneumonitis 0.95); lower ratios mostly offer noise.
CONFIDENT_MATCH = 0.8


class IraeCategory(StrEnum):
    """Organ class of a potential immune-related AE, as the sources below group them."""

    PNEUMONITIS = "pneumonitis"
    COLITIS = "colitis"
    HEPATITIS = "hepatitis"
    PANCREATITIS = "pancreatitis"
    NEPHRITIS = "nephritis"
    ENDOCRINE = "endocrine"
    SKIN = "skin"
    MYOCARDITIS = "myocarditis"
    MYOSITIS = "myositis"
    ARTHRITIS = "arthritis"
    NEUROLOGIC = "neurologic"
    OCULAR = "ocular"
    HAEMATOLOGIC = "haematologic"
    SYSTEMIC = "systemic"  # autoimmunity not confined to one organ
    INFUSION_REACTION = "infusion_reaction"


_I = IraeCategory
# v4.03 terms under which a potential immune-related AE of an anti-PD-1 antibody is reported.
# Sources: (1) LOQTORZI (toripalimab-tpzi) US label, 5.1 "Severe and Fatal
# Immune-Mediated Adverse Reactions": pneumonitis, colitis, hepatitis, endocrinopathies (adrenal
# insufficiency, hypophysitis, thyroid disorders, type 1 diabetes), nephritis with renal
# dysfunction, dermatologic reactions (SJS/TEN), then the PD-1 class list of "other" reactions
# (myocarditis, pericarditis, vasculitis; pancreatitis with amylase/lipase increase; myositis,
# arthritis; Guillain-Barre, myelitis, encephalitis; uveitis; haemolytic anaemia), and 5.2
# infusion-related reactions. (2) ASCO guideline update, Schneider et al., J Clin Oncol
# 2021;39:4073-4126, sections 1-10 (adds bullous dermatoses, TTP, HUS).
# v4.03 has no Hypophysitis, Type 1 diabetes, Thyroiditis, Guillain-Barre or Myasthenia gravis
# term: sites report them as "Endocrine disorders - Other, specify", Hyperglycemia, Peripheral
# motor neuropathy or "Nervous system disorders - Other, specify". Left out on purpose: Hepatitis
# viral (infective), Rash acneiform (the EGFR-inhibitor rash), blood counts and Peripheral sensory
# neuropathy (expected here from nab-paclitaxel and platinum), and the other "- Other, specify"
# catch-alls, which would tag mostly non-immune events.
IRAE_TERMS: dict[str, IraeCategory] = {
    "Pneumonitis": _I.PNEUMONITIS,
    "Colitis": _I.COLITIS,
    "Diarrhea": _I.COLITIS,
    "Enterocolitis": _I.COLITIS,
    "Alanine aminotransferase increased": _I.HEPATITIS,
    "Aspartate aminotransferase increased": _I.HEPATITIS,
    "Blood bilirubin increased": _I.HEPATITIS,
    "Hepatic failure": _I.HEPATITIS,
    "Pancreatitis": _I.PANCREATITIS,
    "Lipase increased": _I.PANCREATITIS,
    "Serum amylase increased": _I.PANCREATITIS,
    "Creatinine increased": _I.NEPHRITIS,
    "Acute kidney injury": _I.NEPHRITIS,
    "Hypothyroidism": _I.ENDOCRINE,
    "Hyperthyroidism": _I.ENDOCRINE,
    "Adrenal insufficiency": _I.ENDOCRINE,
    "Hyperglycemia": _I.ENDOCRINE,  # how new type 1 diabetes presents
    "Endocrine disorders - Other, specify": _I.ENDOCRINE,  # hypophysitis, thyroiditis, T1DM
    "Rash maculo-papular": _I.SKIN,
    "Pruritus": _I.SKIN,
    "Bullous dermatitis": _I.SKIN,
    "Erythema multiforme": _I.SKIN,
    "Stevens-Johnson syndrome": _I.SKIN,
    "Toxic epidermal necrolysis": _I.SKIN,
    "Myocarditis": _I.MYOCARDITIS,
    "Pericarditis": _I.MYOCARDITIS,
    "Myositis": _I.MYOSITIS,
    "Arthritis": _I.ARTHRITIS,
    "Peripheral motor neuropathy": _I.NEUROLOGIC,  # Guillain-Barre presents as it
    "Myelitis": _I.NEUROLOGIC,
    "Encephalopathy": _I.NEUROLOGIC,  # v4.03 has only an infective encephalitis term
    "Uveitis": _I.OCULAR,
    "Hemolysis": _I.HAEMATOLOGIC,
    "Thrombotic thrombocytopenic purpura": _I.HAEMATOLOGIC,
    "Hemolytic uremic syndrome": _I.HAEMATOLOGIC,
    "Autoimmune disorder": _I.SYSTEMIC,
    "Vasculitis": _I.SYSTEMIC,
    "Infusion related reaction": _I.INFUSION_REACTION,
}


@dataclass(frozen=True, slots=True)
class AeTerm:
    meddra_code: str
    soc: str
    term: str  # as NCI spells it
    grades: dict[int, str] = field(hash=False)  # only the grades the term defines
    definition: str
    irae_category: IraeCategory | None

    def defines(self, grade: int) -> bool:
        return grade in self.grades


class AeTermError(ValueError):
    """A term that is not in CTCAE v4.03, or a grade the term does not define."""


def normalise(term: str) -> str:
    """The key terms match on: case and whitespace runs ignored (NCI has a double space)."""
    return " ".join(term.split()).casefold()


class AeDictionary:
    def __init__(self, terms: list[AeTerm]) -> None:
        self._terms = terms
        self._by_name = {normalise(t.term): t for t in terms}
        self._by_code = {t.meddra_code: t for t in terms}

    def lookup(self, term: str) -> AeTerm | None:
        return self._by_name.get(normalise(term))

    def by_meddra_code(self, code: str) -> AeTerm | None:
        return self._by_code.get(code.strip())

    def suggest(self, term: str, n: int = 3, cutoff: float = 0.6) -> list[str]:
        """NCI's spelling of the terms closest to `term`, best first."""
        matches = difflib.get_close_matches(normalise(term), self._by_name, n, cutoff)
        return [self._by_name[match].term for match in matches]

    def socs(self) -> list[str]:
        """System organ classes in NCI's order."""
        return list(dict.fromkeys(t.soc for t in self._terms))

    def __len__(self) -> int:
        return len(self._terms)

    def __iter__(self) -> Iterator[AeTerm]:
        return iter(self._terms)


def _term_of(row: dict[str, str]) -> AeTerm:
    grades = {g: row[f"grade{g}"] for g in GRADES if row[f"grade{g}"] != NO_GRADE}
    return AeTerm(
        meddra_code=row["meddra_code"],
        soc=row["soc"],
        term=row["term"],
        grades=grades,
        definition=row["definition"],
        irae_category=IRAE_TERMS.get(row["term"]),
    )


@cache
def load_ae_dictionary() -> AeDictionary:
    text = resources.files("shared").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return AeDictionary([_term_of(row) for row in csv.DictReader(io.StringIO(text))])


def _compact(grades: list[int]) -> str:
    """[1, 3, 4, 5] -> '1, 3-5'."""
    runs: list[list[int]] = []
    for grade in sorted(grades):
        if runs and grade == runs[-1][-1] + 1:
            runs[-1].append(grade)
        else:
            runs.append([grade])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _unknown_term(term: str, dictionary: AeDictionary) -> AeTermError:
    message = f"unknown CTCAE v{CTCAE_VERSION} term {term!r}"
    # " or " because NCI terms themselves contain commas ("... - Other, specify").
    if suggestions := dictionary.suggest(term, cutoff=CONFIDENT_MATCH):
        message += f"; did you mean: {' or '.join(suggestions)}?"
    return AeTermError(message)


def _undefined_grade(ae: AeTerm, grade: int) -> AeTermError:
    plural = "s" if len(ae.grades) > 1 else ""
    defined = f"grade{plural} {_compact(list(ae.grades))}"
    message = f"CTCAE v{CTCAE_VERSION} {ae.term!r} has no grade {grade}; it defines {defined}"
    return AeTermError(message)


def require_term(term: str) -> AeTerm:
    """The v4.03 term named `term`, in any case or spacing; AeTermError if there is none."""
    dictionary = load_ae_dictionary()
    ae = dictionary.lookup(term)
    if ae is None:
        raise _unknown_term(term, dictionary)
    return ae


def validate_adverse_event(term: str, grade: int) -> AeTerm:
    """The v4.03 term named `term`, if it defines `grade`; AeTermError otherwise."""
    ae = require_term(term)
    if not ae.defines(grade):
        raise _undefined_grade(ae, grade)
    return ae
