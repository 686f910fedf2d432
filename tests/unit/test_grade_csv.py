"""`safetymon grade IN.csv [-o OUT.csv]` and `safetymon grade TEST VALUE UNIT`, through the CLI.

Every input row comes out (one row per CTCAE term its test feeds, or one refused row saying why),
with its columns unchanged; a missing LLN/ULN is taken from the configured reference ranges and the
reason names them; a file that cannot be graded at all exits 2 naming what is missing.
"""

import csv
import io
import json
from pathlib import Path

import pytest

from services.cli import main

HEADER = "Subject_ID,Site_ID,SEX,Age,LBTESTCD,Loinc,VALUE,Unit,LLN,ULN,Baseline,Fasting"
OUT = ["ctcae_term", "grade", "reason"]
NATIONAL_ALT_M = (
    "configured reference range (male, age >= 18; WS/T 404.1-2012 adult reference intervals "
    "(China); confirm with the site laboratory)"
)
NATIONAL_CREAT_F60 = (
    "configured reference range (female, age >= 60; WS/T 404.5-2015 adult reference intervals "
    "(China); confirm with the site laboratory)"
)


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def row(text: str) -> list[str]:
    return next(csv.reader([text]))


def test_grades_every_row_one_row_per_term_refusing_what_cannot_be_graded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(
        tmp_path / "labs.csv",
        HEADER,
        "GZ01-005,GZ01,M,54,NEUT,,0.9,10^9/L,1.8,6.3,,",  # SI
        "GZ01-005,GZ01,M,54,,751-8,900,/mm3,1800,6300,,",  # LOINC, conventional
        "GZ01-006,GZ01,F,61,K,,5.8,mmol/L,3.5,5.3,,",  # potassium: two terms
        'GZ01-006,GZ01,F,61,K,,"2,8",mmol/L,3.5,5.3,,',  # decimal comma
        "GZ01-007,GZ01,F,61,ANC,,<0.1,10^9/L,1.8,6.3,,",  # a bound, not a value
        "GZ01-008,GZ01,M,47,ALT,,180,U/L,,,,",  # no LLN/ULN: configured range
        "SH02-002,SH02,F,66,CREAT,,1.5,mg/dL,,,,",  # configured range, converted to mg/dL
        "SH02-003,SH02,M,52,HGB,,9.5,g/dL,13,17.5,,",
        "BJ03-002,BJ03,M,70,,1975-2,2.0,mg/dL,0.3,1.2,,",  # bilirubin by LOINC, conventional
        "BJ03-001,BJ03,F,45,GLUC,,7.2,mmol/L,3.9,6.1,,Y",  # fasting
        "SH02-005,SH02,M,40,ALT,,pending,U/L,9,50,,",
        "SH02-006,SH02,M,40,XYZ,,1.2,U/L,,,,",
        "SH02-007,SH02,M,40,HGB,,9.5,mg,13,17.5,,",
        "SH02-008,SH02,M,40,GLUC,,-1,mmol/L,3.9,6.1,,Y",
    )
    target = tmp_path / "graded.csv"

    assert main(["grade", str(source), "-o", str(target)]) == 0

    assert read(target) == [
        [*row(HEADER), *OUT],
        [
            *row("GZ01-005,GZ01,M,54,NEUT,,0.9,10^9/L,1.8,6.3,,"),
            "Neutrophil count decreased",
            "3",
            "0.9 x10^9/L meets grade 3: <1000 - 500/mm3; <1.0 - 0.5 x 10e9 /L",
        ],
        [
            *row("GZ01-005,GZ01,M,54,,751-8,900,/mm3,1800,6300,,"),
            "Neutrophil count decreased",
            "3",
            "900 /mm3 meets grade 3: <1000 - 500/mm3; <1.0 - 0.5 x 10e9 /L",
        ],
        [
            *row("GZ01-006,GZ01,F,61,K,,5.8,mmol/L,3.5,5.3,,"),
            "Hyperkalemia",
            "2",
            "5.8 mmol/L meets grade 2: >5.5 - 6.0 mmol/L",
        ],
        [
            *row("GZ01-006,GZ01,F,61,K,,5.8,mmol/L,3.5,5.3,,"),
            "Hypokalemia",
            "0",
            "5.8 mmol/L is within the normal limit for this term",
        ],
        [
            *row('GZ01-006,GZ01,F,61,K,,"2,8",mmol/L,3.5,5.3,,'),
            "Hyperkalemia",
            "0",
            "2.8 mmol/L is within the normal limit for this term",
        ],
        [
            *row('GZ01-006,GZ01,F,61,K,,"2,8",mmol/L,3.5,5.3,,'),
            "Hypokalemia",
            "3",
            "2.8 mmol/L meets grade 3: <3.0 - 2.5 mmol/L; hospitalization indicated",
        ],
        [
            *row("GZ01-007,GZ01,F,61,ANC,,<0.1,10^9/L,1.8,6.3,,"),
            "Neutrophil count decreased",
            "4",
            "0.1 x10^9/L meets grade 4: <500/mm3; <0.5 x 10e9 /L; reported as <0.1: every value "
            "on that side has this grade",
        ],
        [
            *row("GZ01-008,GZ01,M,47,ALT,,180,U/L,,,,"),
            "Alanine aminotransferase increased",
            "2",
            f"180 U/L meets grade 2: >3.0 - 5.0 x ULN; {NATIONAL_ALT_M}",
        ],
        [
            *row("SH02-002,SH02,F,66,CREAT,,1.5,mg/dL,,,,"),
            "Creatinine increased",
            "2",  # ULN 81 umol/L = 0.916 mg/dL: 1.64 x ULN
            f"1.5 mg/dL meets grade 2: >1.5 - 3.0 x ULN; {NATIONAL_CREAT_F60}; baseline not "
            "known: graded without the baseline criterion",
        ],
        [
            *row("SH02-003,SH02,M,52,HGB,,9.5,g/dL,13,17.5,,"),
            "Anemia",
            "2",
            "9.5 g/dL meets grade 2: Hgb <10.0 - 8.0 g/dL; <6.2 - 4.9 mmol/L; <100 - 80g/L",
        ],
        [
            *row("SH02-003,SH02,M,52,HGB,,9.5,g/dL,13,17.5,,"),
            "Hemoglobin increased",
            "0",
            "9.5 g/dL is within the normal limit for this term",
        ],
        [
            *row("BJ03-002,BJ03,M,70,,1975-2,2.0,mg/dL,0.3,1.2,,"),
            "Blood bilirubin increased",
            "2",
            "2 mg/dL meets grade 2: >1.5 - 3.0 x ULN",
        ],
        [
            *row("BJ03-001,BJ03,F,45,GLUC,,7.2,mmol/L,3.9,6.1,,Y"),
            "Hyperglycemia",
            "1",
            "7.2 mmol/L meets grade 1: Fasting glucose value >ULN - 160 mg/dL; Fasting glucose "
            "value >ULN - 8.9 mmol/L",
        ],
        [
            *row("BJ03-001,BJ03,F,45,GLUC,,7.2,mmol/L,3.9,6.1,,Y"),
            "Hypoglycemia",
            "0",
            "7.2 mmol/L is within the normal limit for this term",
        ],
        [
            *row("SH02-005,SH02,M,40,ALT,,pending,U/L,9,50,,"),
            "",
            "",
            "value 'pending' is not a numeric result",
        ],
        [
            *row("SH02-006,SH02,M,40,XYZ,,1.2,U/L,,,,"),
            "",
            "",
            "unknown lab test 'XYZ': not an LBTESTCD, short name or LOINC code",
        ],
        [
            *row("SH02-007,SH02,M,40,HGB,,9.5,mg,13,17.5,,"),
            "",
            "",
            "'mg' is not a unit for HGB; use a unit convertible to g/L or g/dL",
        ],
        [
            *row("SH02-008,SH02,M,40,GLUC,,-1,mmol/L,3.9,6.1,,Y"),
            "",
            "",
            "value '-1' is negative: no graded lab value can be",
        ],
    ]
    captured = capsys.readouterr()
    assert captured.out == ""
    # No progress bar (stderr is not a terminal): only the summary.
    assert captured.err == (f"graded {source}: 14 rows in, 18 rows out, 4 refused, 0 undecided\n")


def test_without_output_writes_to_stdout_and_counts_undecided_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(
        tmp_path / "labs.csv",
        "lbtestcd,value,unit,sex",
        "ALT,180,U/L,M",  # no age: no configured range applies
        "",  # a blank line is not a row
        "INR,1.9,",  # no LLN/ULN, and no configured range for INR
    )

    assert main(["grade", str(source)]) == 0

    captured = capsys.readouterr()
    assert read_text(captured.out) == [
        ["lbtestcd", "value", "unit", "sex", *OUT],
        [
            "ALT",
            "180",
            "U/L",
            "M",
            "Alanine aminotransferase increased",
            "",
            "180 U/L: no reference range: ULN not given; grade cannot be decided",
        ],
        [
            "INR",
            "1.9",
            "",
            "",
            "INR increased",
            "",
            "1.9: no reference range: ULN not given; grade cannot be decided",
        ],
    ]
    assert captured.err == f"graded {source}: 2 rows in, 2 rows out, 0 refused, 2 undecided\n"


def read_text(text: str) -> list[list[str]]:
    return list(csv.reader(text.splitlines()))


def test_configured_range_file_most_specific_row_wins_converted_into_the_row_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ranges = write(
        tmp_path / "ranges.csv",
        "site_id,test,sex,age_min,age_max,unit,lln,uln,source",
        ",ALT,,18,,U/L,9,50,national table",
        "GZ01,ALT,,,,U/L,7,40,GZ01 laboratory 2025",
        "GZ01,CREAT,F,,,umol/L,44,80,GZ01 laboratory 2025",
    )
    source = write(
        tmp_path / "labs.csv",
        "site_id,sex,age,loinc,value,unit,lln,uln",
        "GZ01,M,50,1742-6,130,U/L,,",  # GZ01's own ULN 40: 3.25 x ULN
        "SH02,M,50,1742-6,130,U/L,,",  # national ULN 50: 2.6 x ULN
        "GZ01,F,50,2160-0,1.0,mg/dL,,",  # ULN 80 umol/L = 0.905 mg/dL: 1.1 x ULN
        "GZ01,M,50,1742-6,130,U/L,,60",  # the row's own ULN: the table is not used
    )

    assert main(["grade", str(source), "--reference-ranges", str(ranges)]) == 0

    rows = read_text(capsys.readouterr().out)
    assert [r[-3:] for r in rows[1:]] == [
        [
            "Alanine aminotransferase increased",
            "2",
            "130 U/L meets grade 2: >3.0 - 5.0 x ULN; configured reference range "
            "(site GZ01; GZ01 laboratory 2025)",
        ],
        [
            "Alanine aminotransferase increased",
            "1",
            "130 U/L meets grade 1: >ULN - 3.0 x ULN; configured reference range "
            "(age >= 18; national table)",
        ],
        [
            "Creatinine increased",
            "1",
            "1 mg/dL meets grade 1: >ULN - 1.5 x ULN; configured reference range "
            "(site GZ01, female; GZ01 laboratory 2025); baseline not known: graded without the "
            "baseline criterion",
        ],
        ["Alanine aminotransferase increased", "1", "130 U/L meets grade 1: >ULN - 3.0 x ULN"],
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("NEUT,751-8,0.9,10^9/L,1.8,6.3,,", None),  # both codes, same test: graded
        (
            "PLAT,751-8,0.9,10^9/L,1.8,6.3,,",
            "lbtestcd 'PLAT' (PLAT) and loinc '751-8' (NEUT) do not name the same test",
        ),
        (",,0.9,10^9/L,1.8,6.3,,", "no test: lbtestcd and loinc are both empty"),
        ("NEUT,,,10^9/L,1.8,6.3,,", "value is empty"),
        ("NEUT,,0.9,,1.8,6.3,,", "unit is empty: NEUT needs a unit convertible to /mm3 or 10*9/L"),
        (
            "NEUT,,0.9,g/dL,1.8,6.3,,",
            "'g/dL' is not a unit for NEUT; use a unit convertible to /mm3 or 10*9/L",
        ),
        ("NEUT,,0.9,10^9/L,6.3,1.8,,", "lln 6.3 is not below uln 1.8"),
        ("NEUT,,0.9,10^9/L,low,6.3,,", "lln 'low' is not a numeric result"),
        ("NEUT,,0.9,10^9/L,<1.8,6.3,,", "lln '<1.8' is a bound, not a number"),
        ("GLUC,,7.2,mmol/L,3.9,6.1,,maybe", "fasting 'maybe' is not Y, N or empty"),
        ("NEUT,,0.9,10^9/L,1.8,6.3,,,extra", "9 fields where the header has 8"),
    ],
)
def test_a_row_that_cannot_be_graded_says_exactly_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, reason: str | None
) -> None:
    source = write(
        tmp_path / "labs.csv", "lbtestcd,loinc,value,unit,lln,uln,baseline,fasting", line
    )

    assert main(["grade", str(source)]) == 0

    rows = read_text(capsys.readouterr().out)
    assert len(rows) == 2
    assert rows[1][: len(row(line))] == row(line)  # the input columns, unchanged
    if reason is None:
        assert rows[1][-3:-1] == ["Neutrophil count decreased", "3"]
    else:
        assert rows[1][-3:] == ["", "", reason]


def test_short_rows_and_a_semicolon_file_with_decimal_commas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(
        tmp_path / "labs.csv",
        "LBTESTCD;VALUE;UNIT;LLN;ULN",
        "HGB;7,5;g/dL;12;16",
        "PLT;40",  # unit and the rest left out
    )

    assert main(["grade", str(source)]) == 0

    out = capsys.readouterr().out
    assert list(csv.reader(out.splitlines(), delimiter=";")) == [
        ["LBTESTCD", "VALUE", "UNIT", "LLN", "ULN", *OUT],
        [
            "HGB",
            "7,5",
            "g/dL",
            "12",
            "16",
            "Anemia",
            "3",
            "7.5 g/dL meets grade 3: Hgb <8.0 g/dL; <4.9 mmol/L; <80 g/L; transfusion indicated; "
            "grade 4 (life-threatening consequences; urgent intervention indicated) is not defined "
            "by the value",
        ],
        [
            "HGB",
            "7,5",
            "g/dL",
            "12",
            "16",
            "Hemoglobin increased",
            "0",
            "7.5 g/dL is within the normal limit for this term",
        ],
        # the left-out fields come back empty, so every row has the header's columns
        [
            "PLT",
            "40",
            "",
            "",
            "",
            "",
            "",
            "unit is empty: PLAT needs a unit convertible to /mm3 or 10*9/L",
        ],
    ]


def test_missing_required_column_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "labs.csv", "lbtestcd,result,unit", "NEUT,0.9,10^9/L")
    target = tmp_path / "graded.csv"

    assert main(["grade", str(source), "-o", str(target)]) == 2

    assert capsys.readouterr().err == "error: missing required column: 'value'\n"
    assert not target.exists()  # nothing written for a file that cannot be graded


def test_missing_test_column_exits_2_naming_both_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "labs.csv", "test,value,unit", "NEUT,0.9,10^9/L")

    assert main(["grade", str(source)]) == 2

    captured = capsys.readouterr()
    assert captured.err == "error: missing required column: 'lbtestcd' or 'loinc' (the test)\n"
    assert captured.out == ""


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.csv"

    assert main(["grade", str(missing)]) == 2

    assert capsys.readouterr().err == f"error: no such file: {missing}\n"


def test_single_value_mode_prints_the_grade(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", "NEUT", "0.9", "10^9/L"]) == 0
    assert capsys.readouterr().out == (
        "Neutrophil count decreased: grade 3 (10*9/L) - 0.9 x10^9/L meets grade 3: "
        "<1000 - 500/mm3; <1.0 - 0.5 x 10e9 /L\n"
    )

    assert main(["grade", "K", "5.8", "mmol/L", "--lln", "3.5", "--uln", "5.3"]) == 0
    assert capsys.readouterr().out == (
        "Hyperkalemia: grade 2 (mmol/L) - 5.8 mmol/L meets grade 2: >5.5 - 6.0 mmol/L\n"
        "Hypokalemia: grade 0 (mmol/L) - 5.8 mmol/L is within the normal limit for this term\n"
    )


def test_single_value_mode_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", "ALT", "180", "U/L", "--json"]) == 0

    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {
        "test": "ALT",
        "term": "Alanine aminotransferase increased",
        "meddra_code": "10001551",
        "grade": None,
        "minimum_grade": 0,
        "graded_value": 180.0,
        "graded_unit": "U/L",
        "criterion": "",
        "missing": ["ULN"],
        "reason": "180 U/L: no reference range: ULN not given; grade cannot be decided",
    }


def test_single_value_mode_refuses_an_unknown_test(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", "XYZ", "0.9", "10^9/L"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown lab test 'XYZ': not an LBTESTCD, short name or LOINC code\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["grade", "NEUT", "0.9"],
        ["grade", "NEUT", "0.9", "10^9/L", "extra"],
        ["grade", "labs.csv", "--lln", "1.8"],
        ["grade", "NEUT", "0.9", "10^9/L", "-o", "out.csv"],
    ],
)
def test_other_argument_shapes_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)

    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_when_stderr_is_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(tmp_path / "labs.csv", "lbtestcd,value,unit", "NEUT,0.9,10^9/L")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)

    assert main(["grade", str(source), "-o", str(tmp_path / "graded.csv")]) == 0

    shown = terminal.getvalue()
    assert "grading" in shown and "━" in shown
    assert shown.endswith(f"graded {source}: 1 rows in, 1 rows out, 0 refused, 0 undecided\n")


def test_a_defect_while_grading_one_row_refuses_that_row_and_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.grading_csv

    real = services.grading_csv.grade_term

    def grade_term(criteria, value, system, refs):
        if value == 0.7:
            raise ZeroDivisionError("float division by zero")
        return real(criteria, value, system, refs)

    monkeypatch.setattr(services.grading_csv, "grade_term", grade_term)
    source = write(
        tmp_path / "labs.csv", "lbtestcd,value,unit", "NEUT,0.7,10^9/L", "NEUT,0.9,10^9/L"
    )

    assert main(["grade", str(source)]) == 0

    captured = capsys.readouterr()
    assert [r[-3:] for r in read_text(captured.out)[1:]] == [
        ["", "", "not graded: internal error ZeroDivisionError: float division by zero"],
        [
            "Neutrophil count decreased",
            "3",
            "0.9 x10^9/L meets grade 3: <1000 - 500/mm3; <1.0 - 0.5 x 10e9 /L",
        ],
    ]
    assert captured.err.endswith("2 rows in, 2 rows out, 1 refused, 0 undecided\n")


def test_an_unreadable_line_is_reported_in_place_and_the_file_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = "a" * (csv.field_size_limit() + 1)
    source = write(
        tmp_path / "labs.csv",
        "lbtestcd,value,unit,note",
        f'NEUT,0.9,10^9/L,"{huge}"',
        "NEUT,1.2,10^9/L,",
    )

    assert main(["grade", str(source)]) == 0

    rows = read_text(capsys.readouterr().out)
    assert rows[1] == [
        "",
        "",
        "",
        "",
        "",
        "",
        f"line 2 cannot be read as CSV: field larger than field limit ({len(huge) - 1})",
    ]
    assert rows[2][-3:-1] == ["Neutrophil count decreased", "2"]
