"""The CTCAE v4.03 adverse-event dictionary: NCI's terms, grades and codes, and their validation."""

import dataclasses
from collections import Counter

import pytest

from shared import ctcae
from shared.ae_dictionary import (
    CTCAE_VERSION,
    IRAE_TERMS,
    AeTerm,
    AeTermError,
    IraeCategory,
    load_ae_dictionary,
    validate_adverse_event,
)

NCI_MUSCULOSKELETAL_OTHER = "Musculoskeletal and connective tissue disorder -  Other, specify"


def term(name: str) -> AeTerm:
    found = load_ae_dictionary().lookup(name)
    assert found is not None, name
    return found


# --- the dictionary as NCI publishes it ------------------------------------------------------


def test_it_holds_nci_790_terms_in_26_socs_each_with_its_own_meddra_code() -> None:
    dictionary = load_ae_dictionary()
    assert len(dictionary) == 790
    assert len(dictionary.socs()) == 26
    assert len({t.meddra_code for t in dictionary}) == 790
    assert all(t.meddra_code.isdigit() and len(t.meddra_code) == 8 for t in dictionary)


def test_terms_and_socs_come_in_nci_order() -> None:
    dictionary = load_ae_dictionary()
    assert next(iter(dictionary)).term == "Anemia"
    socs = dictionary.socs()
    assert socs[0] == "Blood and lymphatic system disorders" and socs[-1] == "Vascular disorders"
    last_of_soc = {t.soc: t.term for t in dictionary}
    assert all(" ".join(name.split()).endswith("- Other, specify") for name in last_of_soc.values())


def test_it_is_loaded_once() -> None:
    assert load_ae_dictionary() is load_ae_dictionary()


@pytest.mark.parametrize(
    ("name", "grades"),
    [
        ("Alopecia", {1, 2}),
        ("Febrile neutropenia", {3, 4, 5}),
        ("Hyponatremia", {1, 3, 4, 5}),
        ("Alanine aminotransferase increased", {1, 2, 3, 4}),
        ("Pneumonitis", {1, 2, 3, 4, 5}),
        ("Edema cerebral", {4}),
        ("Death NOS", {5}),
    ],
)
def test_a_term_defines_exactly_the_grades_nci_gives_it(name: str, grades: set[int]) -> None:
    assert set(term(name).grades) == grades


def test_grades_carry_nci_criterion_text_and_a_dash_is_no_grade() -> None:
    assert term("Febrile neutropenia").grades[4] == (
        "Life-threatening consequences; urgent intervention indicated"
    )
    assert term("Alanine aminotransferase increased").grades[3] == ">5.0 - 20.0 x ULN"
    assert all(text not in ("", "-") for t in load_ae_dictionary() for text in t.grades.values())


def test_grade_counts_match_the_source_table() -> None:
    # CTCAE_SOURCE.md: "-" cells per grade 185, 89, 66, 262, 299 out of 790 terms.
    defined = Counter(grade for t in load_ae_dictionary() for grade in t.grades)
    assert defined == {1: 605, 2: 701, 3: 724, 4: 528, 5: 491}
    assert all(t.grades for t in load_ae_dictionary())


def test_a_term_keeps_its_soc_and_definition() -> None:
    pneumonitis = term("Pneumonitis")
    assert pneumonitis.meddra_code == "10035742"
    assert pneumonitis.soc == "Respiratory, thoracic and mediastinal disorders"
    assert pneumonitis.definition.startswith("A disorder characterized by inflammation")


def test_a_term_cannot_be_changed() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        term("Alopecia").term = "Baldness"  # type: ignore[misc]


def test_the_lab_terms_the_grader_uses_are_the_dictionarys() -> None:
    assert CTCAE_VERSION == ctcae.CTCAE_VERSION
    for criteria in ctcae.LAB_TERMS:
        ae = term(criteria.term)
        assert (ae.term, ae.meddra_code) == (criteria.term, criteria.meddra_code)
        assert {band.grade for band in criteria.bands} <= set(ae.grades), criteria.term


# --- lookup ----------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["Pneumonitis", "pneumonitis", "  PNEUMONITIS ", "pneumonitis\n"])
def test_lookup_ignores_case_and_surrounding_whitespace(typed: str) -> None:
    assert term(typed).term == "Pneumonitis"


def test_lookup_ignores_runs_of_whitespace_inside_a_term() -> None:
    assert term("Musculoskeletal and connective tissue disorder - Other, specify").term == (
        NCI_MUSCULOSKELETAL_OTHER
    )
    assert term("alanine   aminotransferase increased").term == "Alanine aminotransferase increased"


@pytest.mark.parametrize("typed", ["Pnemonitis", "", "   ", "Hepatitis", "Hypophysitis"])
def test_lookup_of_a_name_not_in_v4_03_finds_nothing(typed: str) -> None:
    assert load_ae_dictionary().lookup(typed) is None


def test_a_term_is_found_by_its_meddra_code() -> None:
    dictionary = load_ae_dictionary()
    found = dictionary.by_meddra_code("10016288")
    assert found is not None and found.term == "Febrile neutropenia"
    assert dictionary.by_meddra_code("99999999") is None


def test_a_typo_gets_suggestions_in_nci_spelling_best_first() -> None:
    dictionary = load_ae_dictionary()
    assert dictionary.suggest("Pnemonitis")[0] == "Pneumonitis"
    assert dictionary.suggest("Pnemonitis", n=1) == ["Pneumonitis"]
    assert dictionary.suggest("diarrhoea") == ["Diarrhea"]
    assert dictionary.suggest("Musculoskeletal and connective tissue disorder - Other", n=1) == [
        NCI_MUSCULOSKELETAL_OTHER
    ]


def test_nonsense_gets_no_suggestion() -> None:
    assert load_ae_dictionary().suggest("xyzzy") == []


# --- immune-related categories ---------------------------------------------------------------


def test_every_term_tagged_immune_related_is_spelt_as_in_v4_03() -> None:
    for name in IRAE_TERMS:
        assert term(name).term == name


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("Pneumonitis", IraeCategory.PNEUMONITIS),
        ("Diarrhea", IraeCategory.COLITIS),
        ("Alanine aminotransferase increased", IraeCategory.HEPATITIS),
        ("Creatinine increased", IraeCategory.NEPHRITIS),
        ("Hypothyroidism", IraeCategory.ENDOCRINE),
        ("Endocrine disorders - Other, specify", IraeCategory.ENDOCRINE),
        ("Rash maculo-papular", IraeCategory.SKIN),
        ("Myocarditis", IraeCategory.MYOCARDITIS),
        ("Infusion related reaction", IraeCategory.INFUSION_REACTION),
        ("Hepatitis viral", None),  # infective, not immune
        ("Febrile neutropenia", None),  # chemotherapy
        ("Peripheral sensory neuropathy", None),  # nab-paclitaxel and platinum
    ],
)
def test_terms_carry_their_immune_related_category(
    name: str, category: IraeCategory | None
) -> None:
    assert term(name).irae_category is category


def test_every_category_has_a_term() -> None:
    assert set(IRAE_TERMS.values()) == set(IraeCategory)


# --- validating a reported adverse event -----------------------------------------------------


def test_a_known_term_with_a_grade_it_defines_is_valid() -> None:
    assert validate_adverse_event("  febrile NEUTROPENIA", 3) == term("Febrile neutropenia")


def test_an_unknown_term_is_refused_with_the_closest_term() -> None:
    with pytest.raises(AeTermError) as error:
        validate_adverse_event("Pnemonitis", 2)
    assert str(error.value) == "unknown CTCAE v4.03 term 'Pnemonitis'; did you mean: Pneumonitis?"


def test_an_unknown_term_close_to_several_names_them_all() -> None:
    with pytest.raises(AeTermError) as error:
        validate_adverse_event("Hyponatraemia", 1)
    assert str(error.value) == (
        "unknown CTCAE v4.03 term 'Hyponatraemia'; did you mean: Hyponatremia or Hypernatremia?"
    )


def test_an_unknown_term_like_no_other_is_refused_without_suggestion() -> None:
    with pytest.raises(AeTermError) as error:
        validate_adverse_event("xyzzy", 1)
    assert str(error.value) == "unknown CTCAE v4.03 term 'xyzzy'"


@pytest.mark.parametrize(
    ("name", "grade", "message"),
    [
        ("Alopecia", 3, "CTCAE v4.03 'Alopecia' has no grade 3; it defines grades 1-2"),
        ("hyponatremia", 2, "CTCAE v4.03 'Hyponatremia' has no grade 2; it defines grades 1, 3-5"),
        ("Edema cerebral", 3, "CTCAE v4.03 'Edema cerebral' has no grade 3; it defines grade 4"),
        (
            "Febrile neutropenia",
            1,
            "CTCAE v4.03 'Febrile neutropenia' has no grade 1; it defines grades 3-5",
        ),
    ],
)
def test_a_grade_the_term_does_not_define_is_refused(name: str, grade: int, message: str) -> None:
    with pytest.raises(AeTermError) as error:
        validate_adverse_event(name, grade)
    assert str(error.value) == message


def test_a_refusal_is_a_value_error() -> None:
    assert issubclass(AeTermError, ValueError)
