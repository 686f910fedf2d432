"""The CDISC SDTM adapter: LB, AE, EX and DM datasets (CSV and SAS transport v5) to ingest
requests, row by row, each refusal named by row and column."""

import csv
import io
import math
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyreadstat
import pytest

from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabResultIn,
    SubmissionIn,
    drugs_outside_regimen,
    event_id_of,
    lab_event,
)
from services.ingest.interop import sdtm
from services.ingest.interop.common import (
    Conversion,
    Directory,
    InteropError,
    Problem,
    load_directory,
)
from shared.events import Visit
from shared.labs import LabTest
from shared.protocol import study_protocol
from tests.unit.factories import STUDY

REPO = Path(__file__).resolve().parents[2]
PILOT = REPO / "tests" / "data" / "interop" / "sdtm_cdiscpilot01"
CHINA = timezone(timedelta(hours=8))
US_EASTERN_WINTER = "-05:00"
NO_OFFSET = (
    "has no UTC offset: SDTM --DTC carries none; give the site's offset (utc_offset, e.g. +08:00)"
)
# SDTM numeric variables: written as SAS numerics in the XPT files the tests make.
NUMERIC = {
    "LBSEQ",
    "LBSTRESN",
    "LBSTNRLO",
    "LBSTNRHI",
    "VISITNUM",
    "LBDY",
    "AESEQ",
    "AESTDY",
    "AEENDY",
    "EXSEQ",
    "EXDOSE",
    "EXSTDY",
    "EXENDY",
    "AGE",
    "WEIGHT",
    "HEIGHT",
    "CREATBL",
}


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    """The study's sites; two demo subjects and the two pilot subjects (CDISC001 at GZ01,
    CDISC002 at SH02) in the enrolment map."""
    enrolment_map = tmp_path / "enrolment.csv"
    enrolment_map.write_text(
        "subject_id,site_id,patient_id,usubjid\n"
        "GZ01-001,GZ01,GZ0700037,NCT05173246-GZ01-001\n"
        "SH02-006,SH02,SH0700222,NCT05173246-SH02-006\n"
        "GZ01-901,GZ01,,CDISC001\n"
        "SH02-902,SH02,,CDISC002\n"
    )
    return load_directory(REPO / "interop" / "NCT05173246.yaml", enrolment_map)


def lb_row(**cells: str) -> dict[str, str | None]:
    row = {
        "STUDYID": "NCT05173246",
        "DOMAIN": "LB",
        "USUBJID": "NCT05173246-GZ01-001",
        "LBSEQ": "12",
        "LBTESTCD": "NEUT",
        "LBORRES": "0.9",
        "LBORRESU": "10^9/L",
        "LBORNRLO": "1.8",
        "LBORNRHI": "6.3",
        "LBSTRESC": "0.9",
        "LBSTRESN": "0.9",
        "LBSTRESU": "10^9/L",
        "LBSTNRLO": "1.8",
        "LBSTNRHI": "6.3",
        "VISIT": "CYCLE 2 DAY 1",
        "LBDTC": "2025-04-14T07:30:00+08:00",
    }
    return _cells(row | cells)


def ae_row(**cells: str) -> dict[str, str | None]:
    row = {
        "STUDYID": "NCT05173246",
        "DOMAIN": "AE",
        "USUBJID": "NCT05173246-GZ01-001",
        "AESEQ": "3",
        "AETERM": "Lung inflammation",
        "AEDECOD": "PNEUMONITIS",
        "AETOXGR": "2",
        "AESER": "N",
        "AEREL": "POSSIBLE",
        "AERELDRG": "TORIPALIMAB",
        "AEIMMUNE": "Y",
        "AESTDTC": "2025-05-10",
        "AEENDTC": "2025-05-30",
    }
    return _cells(row | cells)


def ex_row(**cells: str) -> dict[str, str | None]:
    row = {
        "STUDYID": "NCT05173246",
        "DOMAIN": "EX",
        "USUBJID": "NCT05173246-GZ01-001",
        "EXSEQ": "5",
        "EXTRT": "TORIPALIMAB",
        "EXDOSE": "240",
        "EXDOSU": "mg",
        "VISIT": "CYCLE 2 DAY 1",
        "EXSTDTC": "2025-04-14T10:00+08:00",
    }
    return _cells(row | cells)


def dm_row(**cells: str) -> dict[str, str | None]:
    row = {
        "STUDYID": "NCT05173246",
        "DOMAIN": "DM",
        "USUBJID": "NCT05173246-GZ01-001",
        "SITEID": "GZ01",
        "RFICDTC": "2025-03-01",
        "RFSTDTC": "2025-03-03",
        "SEX": "F",
        "AGE": "52",
        "AGEU": "YEARS",
        "WEIGHT": "55",
        "HEIGHT": "158",
        "CREATBL": "50",
        "CREATBLU": "umol/L",
        "LIVERMET": "N",
        "PLATINUM": "CISPLATIN",
    }
    return _cells(row | cells)


def _cells(row: dict[str, str]) -> dict[str, str | None]:
    return {name: value or None for name, value in row.items()}


def convert(domain: str, row: dict, directory: Directory, **options: Any) -> Conversion:
    return sdtm.convert_row(domain, row, 1, directory, **options)


def request_of(conversion: Conversion) -> SubmissionIn:
    assert conversion.problems == [] and conversion.skipped == []
    ((where, request),) = conversion.requests
    assert where == "row 1"
    return request


def problems_of(conversion: Conversion) -> list[tuple[str, str]]:
    assert conversion.requests == []
    return [(problem.where, problem.reason) for problem in conversion.problems]


def csv_bytes(rows: list[dict[str, str | None]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: v or "" for k, v in row.items()} for row in rows)
    return buffer.getvalue().encode()


def xpt_bytes(tmp_path: Path, rows: list[dict[str, str | None]], member: str) -> bytes:
    """The rows as a SAS transport v5 file (numeric variables as SAS numerics)."""

    def column(name: str) -> list[Any]:
        cells = [row[name] for row in rows]
        if name in NUMERIC:
            return [math.nan if cell is None else float(cell) for cell in cells]
        return [cell or "" for cell in cells]

    frame = pd.DataFrame({name: column(name) for name in rows[0]})
    path = tmp_path / f"{member.lower()}.xpt"
    pyreadstat.write_xport(frame, str(path), table_name=member, file_format_version=5)
    return path.read_bytes()


def pilot(name: str) -> sdtm.Dataset:
    path = PILOT / f"{name}.csv"
    return sdtm.read_dataset(path.read_bytes(), path.name)


def outcomes(
    dataset: sdtm.Dataset, directory: Directory, utc_offset: str | None = None
) -> list[tuple[int, Conversion]]:
    return list(sdtm.convert_dataset(dataset, directory, utc_offset))


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def test_a_csv_is_read_with_or_without_bom_columns_uppercased_and_empty_cells_none() -> None:
    text = "studyid,domain,usubjid,lbseq,lbtestcd,lbstresn\nS1,LB,U1,1,NEUT, \n\n"
    for data in (text.encode(), b"\xef\xbb\xbf" + text.encode()):
        dataset = sdtm.read_dataset(data, "labs.csv")
        assert (dataset.domain, dataset.format, dataset.first_row) == ("LB", "csv", 1)
        assert dataset.rows == [
            {
                "STUDYID": "S1",
                "DOMAIN": "LB",
                "USUBJID": "U1",
                "LBSEQ": "1",
                "LBTESTCD": "NEUT",
                "LBSTRESN": None,
            }
        ]


def test_the_domain_comes_from_the_domain_column_else_the_file_name() -> None:
    without_column = b"STUDYID,USUBJID,EXSEQ,EXTRT\nS1,U1,1,CISPLATIN\n"
    assert sdtm.read_dataset(without_column, "ex.csv").domain == "EX"
    with pytest.raises(InteropError) as error:
        sdtm.read_dataset(without_column, "doses.csv")
    assert str(error.value) == (
        "doses.csv: no DOMAIN column, and its name 'doses' is not a domain safetymon imports "
        "(LB, AE, EX, DM)"
    )


@pytest.mark.parametrize(
    ("data", "filename", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "lb.csv", "lb.csv: not UTF-8 text (byte 0x89 at offset 0)"),
        (
            b"STUDYID,DOMAIN\n",
            "lb.xpt",
            "lb.xpt: not a SAS transport file: it does not begin with an XPORT library header",
        ),
        (b"", "lb.csv", "lb.csv: empty: an SDTM CSV starts with a header row"),
        (
            b"<html><body>LB</body></html>\n",
            "lb.csv",
            "lb.csv: not an SDTM CSV: the first row must name the variables "
            "(STUDYID,DOMAIN,USUBJID,...); '<HTML><BODY>LB</BODY></HTML>' is not a variable name",
        ),
        (
            b"STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD\nS1,LB,U1,1\n",
            "lb.csv",
            "lb.csv: row 1 has 4 fields, the header 5",
        ),
        (
            b"STUDYID,DOMAIN,USUBJID,VSSEQ,VSTESTCD\nS1,VS,U1,1,SYSBP\n",
            "vs.csv",
            "vs.csv: DOMAIN 'VS' is not one safetymon imports (LB, AE, EX, DM)",
        ),
        (
            b"STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD\nS1,LB,U1,1,NEUT\nS1,AE,U1,2,PLAT\n",
            "lb.csv",
            "lb.csv: DOMAIN has more than one value (AE, LB): one domain per dataset",
        ),
        (
            b"STUDYID,DOMAIN,USUBJID,LBTEST\nS1,LB,U1,Neutrophils\n",
            "lb.csv",
            "lb.csv: no LBSEQ, LBTESTCD columns: SDTM requires them in LB, and each row is "
            "read by them",
        ),
        (
            b"STUDYID,DOMAIN,USUBJID,AESEQ,AEDECOD\nS1,AE,U1,1,Nausea\n",
            "ae.csv",
            "ae.csv: no AETERM column: SDTM requires it in AE, and each row is read by it",
        ),
    ],
)
def test_a_file_that_is_not_a_readable_dataset_is_refused_with_the_reason(
    data: bytes, filename: str, reason: str
) -> None:
    with pytest.raises(InteropError) as error:
        sdtm.read_dataset(data, filename)
    assert str(error.value) == reason


def test_an_xpt_file_is_read_with_missing_numerics_as_none_and_its_member_as_domain(
    tmp_path: Path,
) -> None:
    rows = [lb_row(), lb_row(LBSEQ="13", LBSTRESN=None, LBSTRESC="<0.1")]
    del rows[0]["DOMAIN"], rows[1]["DOMAIN"]
    dataset = sdtm.read_dataset(xpt_bytes(tmp_path, rows, "LB"), "upload.xpt")
    assert (dataset.domain, dataset.format) == ("LB", "xpt")
    assert dataset.rows[0]["LBSTRESN"] == 0.9 and dataset.rows[0]["LBSEQ"] == 12.0
    assert dataset.rows[1]["LBSTRESN"] is None and dataset.rows[1]["LBSTRESC"] == "<0.1"
    assert dataset.rows[0]["USUBJID"] == "NCT05173246-GZ01-001"


def test_a_truncated_xpt_file_is_refused(tmp_path: Path) -> None:
    data = xpt_bytes(tmp_path, [lb_row()], "LB")
    with pytest.raises(InteropError, match=r"^lb\.xpt: not a readable SAS transport file"):
        sdtm.read_dataset(data[:300], "lb.xpt")


@pytest.mark.parametrize(
    ("domain", "rows"),
    [
        ("LB", [lb_row(), lb_row(LBSEQ="13", LBSTRESN=None, LBSTRESC="<0.1"), lb_row(LBSEQ="")]),
        ("AE", [ae_row(), ae_row(AESEQ="4", AEDECOD="Pnemonitis", AETOXGR="")]),
        ("EX", [ex_row(), ex_row(EXSEQ="6", EXDOSE="0", VISIT="WEEK 2")]),
        ("DM", [dm_row(), dm_row(USUBJID="NCT05173246-SH02-006", WEIGHT="")]),
    ],
)
def test_csv_and_xpt_of_the_same_rows_give_identical_conversions(
    domain: str, rows: list[dict], directory: Directory, tmp_path: Path
) -> None:
    from_csv = sdtm.read_dataset(csv_bytes(rows), f"{domain.lower()}.csv")
    from_xpt = sdtm.read_dataset(xpt_bytes(tmp_path, rows, domain), f"{domain.lower()}.xpt")
    as_csv, as_xpt = outcomes(from_csv, directory), outcomes(from_xpt, directory)
    assert [(n, c.requests, c.problems, c.skipped) for n, c in as_csv] == [
        (n, c.requests, c.problems, c.skipped) for n, c in as_xpt
    ]
    assert as_csv[0][1].accepted and as_csv[0][1].requests
    assert not as_csv[-1][1].accepted


def test_the_same_pilot_file_as_csv_and_xpt_gives_identical_conversions(
    directory: Directory, tmp_path: Path
) -> None:
    from_csv = pilot("lb")
    from_xpt = sdtm.read_dataset(xpt_bytes(tmp_path, from_csv.rows, "LB"), "lb.xpt")
    as_csv = outcomes(from_csv, directory, US_EASTERN_WINTER)
    assert as_csv == outcomes(from_xpt, directory, US_EASTERN_WINTER)
    assert len(as_csv) == 81 and all(c.accepted for _, c in as_csv)


def test_rows_sent_as_json_are_numbered_from_the_first_row_of_their_slice(
    directory: Directory,
) -> None:
    rows = [lb_row(LBSEQ="1"), lb_row(LBSEQ="2", LBSTRESU="furlongs", LBORRESU="furlongs")]
    dataset = sdtm.dataset_of_rows("lb", [{k.lower(): v for k, v in r.items()} for r in rows], 2001)
    ((first, good), (second, bad)) = outcomes(dataset, directory)
    assert (first, good.accepted, second) == (2001, True, 2002)
    assert [sdtm.column_of(problem) for problem in bad.problems] == ["LBSTRESU"]
    assert bad.problems[0].where == "row 2002, LBSTRESU"


def test_json_rows_of_another_domain_or_with_nested_values_are_refused() -> None:
    with pytest.raises(InteropError, match=r"^row 1: DOMAIN 'AE' in a LB dataset$"):
        sdtm.dataset_of_rows("LB", [lb_row(DOMAIN="AE")])
    with pytest.raises(InteropError, match=r"^row 5, LBSTRESN: a cell is text or a number$"):
        sdtm.dataset_of_rows("LB", [lb_row() | {"LBSTRESN": [0.9]}], 5)


# ---------------------------------------------------------------------------------------------
# LB
# ---------------------------------------------------------------------------------------------


def test_a_standardised_lab_row_becomes_a_lab_result_with_range_visit_and_row_identity(
    directory: Directory,
) -> None:
    request = request_of(convert("LB", lb_row(), directory))
    assert isinstance(request, LabResultIn)
    assert (request.subject_id, request.site_id) == ("GZ01-001", "GZ01")
    assert (request.test, request.value.number, request.value.comparator) == (
        LabTest.ANC,
        0.9,
        None,
    )
    assert (request.unit, request.reference_low, request.reference_high) == ("10*9/L", 1.8, 6.3)
    assert request.collected_at == datetime(2025, 4, 14, 7, 30, tzinfo=CHINA)
    assert request.visit == Visit(cycle=2, day=1)
    assert request.source_system == "sdtm:NCT05173246"
    assert request.source_message_id == "LB|NCT05173246-GZ01-001|12"


def test_converting_the_same_row_again_gives_the_same_event_id(directory: Directory) -> None:
    first, again = (request_of(convert("LB", lb_row(), directory)) for _ in range(2))
    assert first == again
    event_ids = {event_id_of("LabResultReported", STUDY, r.source()) for r in (first, again)}
    assert len(event_ids) == 1
    other_row = request_of(convert("LB", lb_row(LBSEQ="13"), directory))
    assert event_id_of("LabResultReported", STUDY, other_row.source()) not in event_ids


def test_without_a_standardised_result_the_original_result_unit_and_range_are_used(
    directory: Directory,
) -> None:
    row = lb_row(
        LBTESTCD="CREAT",
        LBORRES="1.3",
        LBORRESU="mg/dL",
        LBORNRLO="0.5",
        LBORNRHI="1.1",
        LBSTRESC="",
        LBSTRESN="",
        LBSTRESU="",
        LBSTNRLO="",
        LBSTNRHI="",
    )
    request = request_of(convert("LB", row, directory))
    assert (request.value.number, request.unit) == (1.3, "mg/dL")
    assert (request.reference_low, request.reference_high) == (0.5, 1.1)
    bad = convert("LB", row | {"LBORRESU": "furlongs"}, directory)
    assert [w for w, _ in problems_of(bad)] == ["row 1, LBORRESU"]


def test_si_and_conventional_results_of_one_sample_give_the_same_si_value(
    directory: Directory,
) -> None:
    si = lb_row(LBTESTCD="CREAT", LBSTRESN="114.92", LBSTRESU="umol/L")
    conventional = lb_row(LBTESTCD="CREAT", LBSTRESN="1.3", LBSTRESU="mg/dL")
    events = [
        lab_event(
            request_of(convert("LB", row | {"LBSTNRLO": "", "LBSTNRHI": ""}, directory)), STUDY
        )
        for row in (si, conventional)
    ]
    assert events[0].payload.si.value == pytest.approx(events[1].payload.si.value, rel=1e-4)
    assert [e.payload.reported.unit for e in events] == ["umol/L", "mg/dL"]


def test_a_bound_in_the_standardised_character_result_is_kept_as_a_bound(
    directory: Directory,
) -> None:
    row = lb_row(LBTESTCD="GLUC", LBORRES="<40", LBORRESU="mg/dL", LBSTRESC="<2.2204")
    row |= {"LBSTRESN": None, "LBSTRESU": "mmol/L", "LBSTNRLO": "2.8", "LBSTNRHI": "13.9"}
    request = request_of(convert("LB", row, directory))
    assert (request.value.comparator, request.value.number, request.unit) == ("<", 2.2204, "mmol/L")
    assert (request.reference_low, request.reference_high) == (2.8, 13.9)


def test_a_missing_reference_range_is_left_empty(directory: Directory) -> None:
    request = request_of(convert("LB", lb_row(LBSTNRLO="", LBSTNRHI=""), directory))
    assert (request.reference_low, request.reference_high) == (None, None)


def test_a_collection_time_without_offset_is_refused_unless_the_import_gives_the_sites_offset(
    directory: Directory,
) -> None:
    row = lb_row(LBDTC="2025-04-14T07:30")
    assert problems_of(convert("LB", row, directory)) == [
        ("row 1, LBDTC", f"'2025-04-14T07:30' {NO_OFFSET}")
    ]
    request = request_of(convert("LB", row, directory, utc_offset="+08:00"))
    assert request.collected_at == datetime(2025, 4, 13, 23, 30, tzinfo=UTC)
    stated = request_of(convert("LB", lb_row(), directory, utc_offset="-05:00"))
    assert stated.collected_at.utcoffset() == timedelta(hours=8)  # a stated offset is kept


def test_a_collection_date_without_a_time_is_refused_even_with_an_offset(
    directory: Directory,
) -> None:
    conversion = convert("LB", lb_row(LBDTC="2025-04-14"), directory, utc_offset="+08:00")
    assert problems_of(conversion) == [
        (
            "row 1, LBDTC",
            "'2025-04-14' has no time of day: the instant is needed, and midnight is a guess",
        )
    ]


def test_an_offset_that_is_not_one_refuses_the_import_at_once(directory: Directory) -> None:
    dataset = sdtm.dataset_of_rows("LB", [lb_row()])
    with pytest.raises(InteropError, match=r"^utc_offset 'CST' is not a UTC offset such as"):
        sdtm.convert_dataset(dataset, directory, "CST")


def test_a_usubjid_not_in_the_enrolment_map_is_refused_on_usubjid(directory: Directory) -> None:
    conversion = convert("LB", lb_row(USUBJID="NCT05173246-GZ01-999"), directory)
    assert problems_of(conversion) == [
        ("row 1, USUBJID", "USUBJID 'NCT05173246-GZ01-999' is not in the enrolment map")
    ]


def test_a_test_the_study_does_not_monitor_is_left_out_not_refused(directory: Directory) -> None:
    conversion = convert("LB", lb_row(LBTESTCD="UROBIL", LBSTRESU="umol/L"), directory)
    assert conversion.accepted and conversion.requests == []
    assert conversion.skipped == [
        Problem("row 1, LBTESTCD", "'UROBIL' is not a test NCT05173246 monitors")
    ]


def test_a_local_code_unknown_to_sdtm_resolves_through_lbloinc(directory: Directory) -> None:
    request = request_of(convert("LB", lb_row(LBTESTCD="NEUTABS", LBLOINC="751-8"), directory))
    assert (request.test, request.loinc) == (LabTest.ANC, "751-8")
    conversion = convert("LB", lb_row(LBLOINC="777-3"), directory)
    assert problems_of(conversion) == [
        ("row 1, LBLOINC", "'777-3' is a code of PLAT, LBTESTCD of NEUT")
    ]


def test_a_test_not_done_is_left_out_with_its_reason(directory: Directory) -> None:
    row = lb_row(LBSTAT="NOT DONE", LBREASND="HAEMOLYSED", LBSTRESN="", LBSTRESC="", LBORRES="")
    conversion = convert("LB", row, directory)
    assert conversion.requests == [] and conversion.problems == []
    assert conversion.skipped == [Problem("row 1, LBSTAT", "not done (HAEMOLYSED): no result")]


def test_a_row_without_any_result_is_refused_on_the_original_result(directory: Directory) -> None:
    row = lb_row(LBSTRESN="", LBSTRESC="", LBORRES="")
    assert problems_of(convert("LB", row, directory)) == [
        (
            "row 1, LBORRES",
            "missing: no result in LBSTRESN, LBSTRESC or LBORRES (a test not done "
            "is LBSTAT NOT DONE)",
        )
    ]


def test_every_problem_of_a_row_is_named_by_its_column_with_the_models_reason(
    directory: Directory,
) -> None:
    row = lb_row(LBSEQ="", LBSTRESU="g/dL", LBSTNRLO="7", LBDTC="2025-04-14T07:30")
    problems = problems_of(convert("LB", row, directory))
    assert [where for where, _ in problems] == ["row 1, LBSEQ", "row 1, LBDTC", "row 1, LBSTRESU"]
    assert problems[0][1] == ("missing: it identifies the record, so a re-import is the same event")
    assert problems[2][1].startswith("'g/dL' is not a unit for NEUT; use a unit convertible to")


def test_a_reference_range_upside_down_is_refused_on_the_range_columns(
    directory: Directory,
) -> None:
    conversion = convert("LB", lb_row(LBSTNRLO="7", LBSTNRHI="1.8"), directory)
    assert problems_of(conversion) == [
        ("row 1, LBSTNRLO/LBSTNRHI", "Value error, reference_low must be below reference_high")
    ]


# ---------------------------------------------------------------------------------------------
# AE
# ---------------------------------------------------------------------------------------------


def test_an_adverse_event_row_becomes_an_adverse_event_with_its_ctcae_term_and_drugs(
    directory: Directory,
) -> None:
    request = request_of(convert("AE", ae_row(), directory))
    assert isinstance(request, AdverseEventIn)
    assert (request.term, request.verbatim, request.grade) == (
        "Pneumonitis",
        "Lung inflammation",
        2,
    )
    assert (request.serious, request.immune_related, request.related_drugs) == (
        False,
        True,
        ("toripalimab",),
    )
    assert (request.onset_date, request.resolved_date) == (date(2025, 5, 10), date(2025, 5, 30))
    assert request.source_message_id == "AE|NCT05173246-GZ01-001|3"


def test_a_meddra_term_that_is_not_a_ctcae_term_is_refused_with_the_models_reason(
    directory: Directory,
) -> None:
    conversion = convert("AE", ae_row(AEDECOD="DYSPNOEA"), directory)
    assert problems_of(conversion) == [
        ("row 1, AEDECOD", "unknown CTCAE v4.03 term 'DYSPNOEA'; did you mean: Dyspnea?")
    ]
    verbatim_only = convert("AE", ae_row(AEDECOD="", AETERM="Pnemonitis"), directory)
    assert [w for w, _ in problems_of(verbatim_only)] == ["row 1, AETERM"]


@pytest.mark.parametrize(
    ("aerel", "aereldrg", "related"),
    [
        ("PROBABLE", "TORIPALIMAB, NAB-PACLITAXEL", ("toripalimab", "nab-paclitaxel")),
        ("Y", "cisplatin", ("cisplatin",)),
        ("", "CARBOPLATIN", ("carboplatin",)),
        ("NOT RELATED", "", ()),
        ("UNLIKELY RELATED", "", ()),
        ("REMOTE", "", ()),
    ],
)
def test_causality_names_the_related_drugs_through_aereldrg(
    aerel: str, aereldrg: str, related: tuple[str, ...], directory: Directory
) -> None:
    request = request_of(convert("AE", ae_row(AEREL=aerel, AERELDRG=aereldrg), directory))
    assert request.related_drugs == related


@pytest.mark.parametrize(
    ("aerel", "aereldrg", "where", "reason"),
    [
        (
            "RELATED",
            "",
            "AERELDRG",
            "missing: AEREL 'RELATED' says related, but SDTM's AEREL names no drug: give the "
            "study drugs it is related to, comma-separated (attribution is never guessed)",
        ),
        (
            "NOT RELATED",
            "CISPLATIN",
            "AERELDRG",
            "names CISPLATIN, but AEREL 'NOT RELATED' says not related",
        ),
        (
            "",
            "",
            "AEREL",
            "missing: causality (related or not, and AERELDRG the drugs) is needed for the dose "
            "rules and related-AE counts; it is never assumed",
        ),
    ],
)
def test_causality_that_names_no_drug_or_contradicts_itself_is_refused(
    aerel: str, aereldrg: str, where: str, reason: str, directory: Directory
) -> None:
    conversion = convert("AE", ae_row(AEREL=aerel, AERELDRG=aereldrg), directory)
    assert problems_of(conversion) == [(f"row 1, {where}", reason)]


def test_a_causality_safetymon_cannot_read_is_refused_listing_what_it_reads(
    directory: Directory,
) -> None:
    ((where, reason),) = problems_of(convert("AE", ae_row(AEREL="MAYBE"), directory))
    assert where == "row 1, AEREL"
    assert reason.startswith("'MAYBE' is not a causality safetymon reads: related (DEFINITE")


def test_a_serious_event_needs_the_time_the_site_learned_of_it(directory: Directory) -> None:
    row = ae_row(AEDECOD="Febrile neutropenia", AETOXGR="3", AESER="Y", AEIMMUNE="N")
    assert problems_of(convert("AE", row, directory)) == [
        (
            "row 1, AEAWRDTC",
            "a serious or fatal adverse event needs site_aware_at (when the site learned of it): "
            "the 24-hour reporting clock starts then",
        )
    ]
    aware = convert("AE", row | {"AEAWRDTC": "2025-05-10T18:00"}, directory, utc_offset="+08:00")
    assert request_of(aware).site_aware_at == datetime(2025, 5, 10, 10, 0, tzinfo=UTC)


def test_grade_seriousness_and_dates_are_needed_and_checked(directory: Directory) -> None:
    row = ae_row(AETOXGR="", AESER="", AESTDTC="2025-05", AEENDTC="2025-05-01", AEIMMUNE="X")
    assert problems_of(convert("AE", row, directory)) == [
        (
            "row 1, AETOXGR",
            "missing: the CTCAE v4.03 grade (1-5); AESEV (mild/moderate/severe) is not one",
        ),
        ("row 1, AESER", "missing: Y or N: a serious event starts the 24-hour reporting clock"),
        ("row 1, AEIMMUNE", "'X' is not Y or N"),
        ("row 1, AESTDTC", "'2025-05' is a partial date: the day is needed"),
    ]


def test_an_event_resolved_before_its_onset_is_refused_on_the_end_date(
    directory: Directory,
) -> None:
    conversion = convert("AE", ae_row(AEENDTC="2025-05-01"), directory)
    assert problems_of(conversion) == [
        ("row 1, AEENDTC", "Value error, resolved_date is before onset_date")
    ]


# ---------------------------------------------------------------------------------------------
# EX
# ---------------------------------------------------------------------------------------------


def test_an_exposure_row_becomes_a_dose_of_the_drug_at_its_visit(directory: Directory) -> None:
    request = request_of(convert("EX", ex_row(), directory))
    assert isinstance(request, DoseIn)
    assert (request.drug, request.dose, request.dose_unit) == ("toripalimab", 240.0, "mg")
    assert request.visit == Visit(cycle=2, day=1)
    assert request.administered_at == datetime(2025, 4, 14, 2, 0, tzinfo=UTC)
    assert request.source_message_id == "EX|NCT05173246-GZ01-001|5"
    paclitaxel = ex_row(EXTRT="NAB-PACLITAXEL", EXDOSE="125", EXDOSU="MG/M2", VISIT="C2D8")
    request = request_of(convert("EX", paclitaxel, directory))
    assert (request.drug, request.dose_unit, request.visit) == (
        "nab-paclitaxel",
        "mg/m2",
        Visit(cycle=2, day=8),
    )


def test_a_dose_row_is_refused_on_each_column_that_is_wrong(directory: Directory) -> None:
    row = ex_row(VISIT="WEEK 2", EXDOSE="0", EXDOSU="mL", EXSTDTC="2025-04-14")
    assert problems_of(convert("EX", row, directory)) == [
        (
            "row 1, VISIT",
            "'WEEK 2' names no cycle and day (C2D1, CYCLE 2 DAY 1): a dose is given at a visit "
            "of a treatment cycle",
        ),
        (
            "row 1, EXSTDTC",
            "'2025-04-14' has no time of day: the instant is needed, and midnight is a guess",
        ),
        ("row 1, EXDOSE", "Input should be greater than 0"),
        ("row 1, EXDOSU", "Input should be 'mg', 'mg/m2' or 'AUC'"),
    ]


def test_a_drug_the_study_does_not_give_is_refused_by_the_app_on_extrt(
    directory: Directory,
) -> None:
    request = request_of(convert("EX", ex_row(EXTRT="XANOMELINE"), directory))
    regimen = set(study_protocol(STUDY).regimen.drugs)
    ((field, reason),) = drugs_outside_regimen(request, regimen)
    assert reason.startswith("'xanomeline' is not a drug of this study")
    refusal = Problem(f"row 1 ({'.'.join(field)})", reason)  # as the publisher names it
    assert sdtm.column_of(refusal) == "EXTRT"


# ---------------------------------------------------------------------------------------------
# DM
# ---------------------------------------------------------------------------------------------


def test_a_demographics_row_with_the_studys_baseline_columns_becomes_an_enrolment(
    directory: Directory,
) -> None:
    request = request_of(convert("DM", dm_row(), directory))
    assert isinstance(request, EnrolmentIn)
    assert (request.enrolled_on, request.sex, request.age_years) == (date(2025, 3, 1), "F", 52)
    assert (request.weight_kg, request.height_cm, request.liver_metastases) == (55, 158, False)
    assert (request.baseline_creatinine.value, request.baseline_creatinine.unit) == (50, "umol/L")
    assert request.platinum == "cisplatin"
    assert request.source_message_id == "DM|NCT05173246-GZ01-001"
    without_consent = request_of(convert("DM", dm_row(RFICDTC=""), directory))
    assert without_consent.enrolled_on == date(2025, 3, 3)


def test_a_site_other_than_the_subjects_site_in_the_map_is_refused(directory: Directory) -> None:
    assert problems_of(convert("DM", dm_row(SITEID="SH02"), directory)) == [
        (
            "row 1, SITEID",
            "'SH02' is not the site of NCT05173246-GZ01-001 in the enrolment map (GZ01)",
        )
    ]


def test_baseline_facts_sdtm_does_not_carry_are_each_refused_naming_their_column_and_use(
    directory: Directory,
) -> None:
    row = dm_row(WEIGHT="", HEIGHT="", CREATBL="", CREATBLU="", LIVERMET="", PLATINUM="")
    problems = dict(problems_of(convert("DM", row, directory)))
    columns = ["WEIGHT", "HEIGHT", "CREATBL", "CREATBLU", "LIVERMET", "PLATINUM"]
    assert list(problems) == [f"row 1, {column}" for column in columns]
    for column in columns:
        assert problems[f"row 1, {column}"].endswith(
            f"SDTM DM does not carry it: send it as column {column}"
        )
    assert "Cockcroft-Gault" in problems["row 1, WEIGHT"]
    assert "ARM/ARMCD does not name it" in problems["row 1, PLATINUM"]


def test_demographics_values_are_checked_by_the_model_on_their_columns(
    directory: Directory,
) -> None:
    row = dm_row(SEX="U", AGEU="MONTHS", CREATBL="25", CREATBLU="mg/dL", PLATINUM="OXALIPLATIN")
    problems = problems_of(convert("DM", row, directory))
    assert [where for where, _ in problems] == [
        "row 1, AGEU",
        "row 1, SEX",
        "row 1, CREATBL",
        "row 1, PLATINUM",
    ]
    assert "not a plausible baseline creatinine" in problems[2][1]


# ---------------------------------------------------------------------------------------------
# Error report
# ---------------------------------------------------------------------------------------------


def test_the_error_report_lists_row_column_and_reason(directory: Directory) -> None:
    rows = [lb_row(LBSEQ="1"), lb_row(LBSEQ="2", USUBJID="X-1"), lb_row(LBSEQ="3", LBDTC="2025")]
    dataset = sdtm.read_dataset(csv_bytes(rows), "lb.csv")
    rejections = [(n, p) for n, c in outcomes(dataset, directory) for p in c.problems]
    rejections.append((4, Problem("row 4 (drug)", "'xanomeline' is not a drug of this study")))
    assert sdtm.error_report_csv(rejections).splitlines() == [
        "row,column,reason",
        "2,USUBJID,USUBJID 'X-1' is not in the enrolment map",
        "3,LBDTC,'2025' is not an ISO 8601 date-time",
        "4,EXTRT,'xanomeline' is not a drug of this study",
    ]


# ---------------------------------------------------------------------------------------------
# CDISC pilot samples (tests/data/interop/sdtm_cdiscpilot01: CDISC001 and CDISC002, mapped to
# GZ01-901 and SH02-902 by the fixture's enrolment map)
# ---------------------------------------------------------------------------------------------


def test_pilot_lab_rows_without_offsets_are_refused_and_converted_with_the_sites_offset(
    directory: Directory,
) -> None:
    dataset = pilot("lb")
    refused = outcomes(dataset, directory)
    assert len(refused) == 81
    assert refused[0][1].problems == [Problem("row 1, LBDTC", f"'2012-11-23T11:20' {NO_OFFSET}")]
    assert all([p.where for p in c.problems] == [f"row {n}, LBDTC"] for n, c in refused)
    converted = {n: request_of_row(c) for n, c in outcomes(dataset, directory, US_EASTERN_WINTER)}
    assert len(converted) == 81
    bili = converted[3]  # CDISC001 screening bilirubin: 0.5 mg/dL, standardised 8.55 umol/L
    assert (bili.test, bili.value.number, bili.unit, bili.reference_high) == (
        LabTest.TOTAL_BILIRUBIN,
        8.55,
        "umol/L",
        21,
    )
    assert bili.collected_at == datetime(2012, 11, 23, 16, 20, tzinfo=UTC)
    assert (bili.subject_id, bili.visit) == ("GZ01-901", None)  # SCREENING 1 is no cycle day
    bound = next(r for r in converted.values() if r.source_message_id == "LB|CDISC001|87")
    assert (bound.test, bound.value.comparator, bound.value.number) == (
        LabTest.GLUCOSE,
        "<",
        2.2204,
    )


def request_of_row(conversion: Conversion) -> SubmissionIn:
    assert conversion.accepted, conversion.problems
    ((_, request),) = conversion.requests
    return request


def test_pilot_adverse_events_are_refused_row_by_row_with_precise_reasons(
    directory: Directory,
) -> None:
    refused = {
        n: [(sdtm.column_of(p), p.reason) for p in c.problems]
        for n, c in outcomes(pilot("ae"), directory)
    }
    assert len(refused) == 11 and all(refused.values())
    no_grade = "missing: the CTCAE v4.03 grade (1-5); AESEV (mild/moderate/severe) is not one"
    assert all(problems[0] == ("AETOXGR", no_grade) for problems in refused.values())
    assert refused[1][1][0] == "AERELDRG"  # INJECTION SITE REACTION, AEREL RELATED: no drug
    assert refused[4][1:] == [("AETERM", "unknown CTCAE v4.03 term 'SHOULDER PAIN'")]
    assert ("AETERM", "unknown CTCAE v4.03 term 'DYSPNOEA'; did you mean: Dyspnea?") in refused[10]
    assert refused[11][1:] == [  # CDISC002's fatal, serious SUDDEN DEATH
        ("AETERM", "unknown CTCAE v4.03 term 'SUDDEN DEATH'; did you mean: Sudden death NOS?"),
        (
            "AEAWRDTC",
            "a serious or fatal adverse event needs site_aware_at (when the site learned of it): "
            "the 24-hour reporting clock starts then",
        ),
    ]


def test_pilot_exposure_is_refused_for_its_visits_dates_and_then_its_drug(
    directory: Directory,
) -> None:
    dataset = pilot("ex")
    ((_, first), *_) = outcomes(dataset, directory, US_EASTERN_WINTER)
    assert problems_of(first) == [
        ("row 1, VISIT", "missing: the protocol visit (C2D1, CYCLE 2 DAY 1) of the dose"),
        (
            "row 1, EXSTDTC",
            "'2012-11-30' has no time of day: the instant is needed, and midnight is a guess",
        ),
    ]
    # Given a cycle visit and a time, the row converts, and the app refuses ZANOMALINE.
    completed = dataset.rows[0] | {"VISIT": "C1D1", "EXSTDTC": "2012-11-30T09:00"}
    request = request_of(convert("EX", completed, directory, utc_offset=US_EASTERN_WINTER))
    assert (request.drug, request.dose, request.dose_unit) == ("zanomaline", 54, "mg")
    ((_, reason),) = drugs_outside_regimen(request, set(study_protocol(STUDY).regimen.drugs))
    assert reason.startswith("'zanomaline' is not a drug of this study")


def test_pilot_demographics_name_the_site_and_every_baseline_fact_sdtm_lacks(
    directory: Directory,
) -> None:
    ((_, first), (_, second)) = outcomes(pilot("dm"), directory)
    columns = [sdtm.column_of(problem) for problem in first.problems]
    assert columns == ["SITEID", "WEIGHT", "HEIGHT", "CREATBL", "CREATBLU", "LIVERMET", "PLATINUM"]
    assert first.problems[0].reason == (
        "'701' is not the site of CDISC001 in the enrolment map (GZ01)"
    )
    assert [sdtm.column_of(problem) for problem in second.problems] == columns
