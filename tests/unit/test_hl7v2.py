"""The HL7 v2.x ORU^R01 adapter: results to request models, refusals named by element, ACKs."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import hl7
import pytest

from services.ingest.domain import (
    LabCorrectionIn,
    LabResultIn,
    RetractionIn,
    SubmissionIn,
    to_event,
)
from services.ingest.interop import hl7v2
from services.ingest.interop.common import Directory, InteropError, Problem, load_directory
from shared.events import Visit
from shared.lab_values import LabValue

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "interop" / "hl7v2"
STUDY = "NCT05173246"
CHINA = timezone(timedelta(hours=8))
PATIENT_NAME = ("Wang", "Xiaoming")  # PID-5 of the test messages: must never be echoed


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Directory:
    enrolments = tmp_path_factory.mktemp("enrolment") / "map.csv"
    enrolments.write_text(
        "subject_id,site_id,patient_id,usubjid\n"
        "GZ01-001,GZ01,GZ0700037,NCT05173246-GZ01-001\n"
        "SH02-006,SH02,SH0700222,NCT05173246-SH02-006\n"
    )
    return load_directory(ROOT / "interop" / "NCT05173246.yaml", enrolments)


def obx(
    n: int = 1,
    code: str = "NEUT#^Neutrophils^L",
    value: str = "0.9",
    unit: str = "10*9/L",
    reference: str = "1.8-6.3",
    status: str = "F",
    kind: str = "NM",
    observed: str = "202504140730+0800",
    sub_id: str = "",
) -> str:
    fields = [str(n), kind, code, sub_id, value, unit, reference, "L", "", "", status, "", ""]
    return "|".join(["OBX", *fields, observed])


def oru(
    *observations: str,
    facility: str = "GZ01-LIS",
    patient: str = "GZ0700037^^^GZ01^MR",
    control: str = "MSG0001",
    kind: str = "ORU^R01^ORU_R01",
    placer: str = "PL-1",
    filler: str = "FI-1",
    observed: str = "202504140700+0800",
    visit: str = "C2D1",
    charset: str = "",
) -> str:
    msh = ["MSH", "^~\\&", "LIS", facility, "SAFETYMON", STUDY, "20250414091500+0800", ""]
    msh += [kind, control, "P", "2.5.1"] + ([""] * 5 + [charset] if charset else [])
    return "\r".join(
        [
            "|".join(msh),
            f"PID|1||{patient}||{'^'.join(PATIENT_NAME)}||19610302|M",
            "|".join(["PV1", "1", "O", *[""] * 16, visit]),
            f"OBR|1|{placer}|{filler}|CBC^Blood count^L|||{observed}",
            *(observations or [obx()]),
        ]
    )


def convert(directory: Directory, *observations: str, **header: str) -> hl7v2.Hl7Result:
    return hl7v2.convert_oru(oru(*observations, **header), directory)


def only_request(result: hl7v2.Hl7Result) -> SubmissionIn:
    assert result.conversion.problems == []
    ((_, request),) = result.conversion.requests
    return request


def acknowledgement(result: hl7v2.Hl7Result) -> hl7.Message:
    return hl7.parse(hl7v2.ack(result))


def errors_of(ack: hl7.Message) -> list[hl7.Segment]:
    return [segment for segment in ack if str(segment[0]) == "ERR"]


def element(segment: hl7.Segment, number: int, component: int = 1) -> str:
    return str(segment.extract_field(field_num=number, component_num=component))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def test_a_final_result_becomes_a_lab_result_of_the_mapped_subject(directory: Directory) -> None:
    result = convert(directory)
    request = only_request(result)
    assert isinstance(request, LabResultIn)
    assert (request.subject_id, request.site_id, request.test) == ("GZ01-001", "GZ01", "NEUT")
    assert (request.value, request.unit) == (LabValue(0.9), "10*9/L")
    assert (request.reference_low, request.reference_high) == (1.8, 6.3)
    assert request.collected_at == datetime(2025, 4, 14, 7, 30, tzinfo=CHINA)
    assert request.visit == Visit(cycle=2, day=1)
    assert request.source().system == "hl7v2:GZ01-LIS"
    assert request.source_message_id == "FI-1|NEUT#|"  # filler order | OBX-3 | OBX-4
    assert result.conversion.requests[0][0] == "OBX[1]"
    assert result.abnormal_flags == [("OBX[1]-8", "L")]  # kept as information only


def test_a_visit_label_that_names_no_cycle_and_day_leaves_the_visit_unset(
    directory: Directory,
) -> None:
    assert only_request(convert(directory, visit="SCREENING")).visit is None


def test_the_placer_order_number_identifies_results_when_there_is_no_filler_number(
    directory: Directory,
) -> None:
    request = only_request(convert(directory, filler=""))
    assert request.source_message_id == "PL-1|NEUT#|"


def test_an_order_without_any_order_number_is_refused(directory: Directory) -> None:
    result = convert(directory, filler="", placer="")
    assert result.conversion.requests == []
    assert [p.where for p in result.conversion.problems] == ["OBR[1]-3"]


def test_each_order_identifies_its_own_results_and_obx_are_numbered_across_orders(
    directory: Directory,
) -> None:
    text = oru(obx(1)) + "\rOBR|2||FI-2|LFT^Liver^L|||202504140700+0800\r"
    text += obx(1, code="ALT^ALT^L", value="35", unit="U/L", reference="9-50")
    result = hl7v2.convert_oru(text, directory)
    assert [where for where, _ in result.conversion.requests] == ["OBX[1]", "OBX[2]"]
    keys = [request.source_message_id for _, request in result.conversion.requests]
    assert keys == ["FI-1|NEUT#|", "FI-2|ALT|"]


# ---------------------------------------------------------------------------------------------
# Result status (OBX-11)
# ---------------------------------------------------------------------------------------------


def test_a_corrected_result_corrects_the_event_of_the_original(directory: Directory) -> None:
    original = to_event(only_request(convert(directory, control="MSG1")), STUDY)
    corrected = convert(directory, obx(value="1.1", status="C"), control="MSG2")
    request = only_request(corrected)
    assert isinstance(request, LabCorrectionIn)
    assert request.corrected_event_id == original.event_id
    assert request.reason == "corrected result (OBX-11=C)"
    assert request.source_message_id == "FI-1|NEUT#||C|MSG2"
    assert request.corrected.value == LabValue(1.1)
    assert request.corrected.source_message_id == "FI-1|NEUT#|"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("X", "result cancelled by the laboratory (OBX-11=X)"),
        ("D", "result deleted by the laboratory (OBX-11=D)"),
        ("W", "result posted to the wrong patient (OBX-11=W)"),
    ],
)
def test_a_cancelled_result_retracts_the_event_of_the_original(
    directory: Directory, status: str, reason: str
) -> None:
    original = to_event(only_request(convert(directory)), STUDY)
    request = only_request(convert(directory, obx(value="", status=status), control="MSG3"))
    assert isinstance(request, RetractionIn)
    assert (request.retracted_event_id, request.reason) == (original.event_id, reason)
    assert request.source_message_id == f"FI-1|NEUT#||{status}|MSG3"


@pytest.mark.parametrize(("status", "name"), [("P", "preliminary"), ("R", "not verified")])
def test_a_result_not_yet_final_is_refused_asking_for_the_final_one(
    directory: Directory, status: str, name: str
) -> None:
    result = convert(directory, obx(status=status))
    reason = f"result status {status} ({name}) is not accepted: send the final result"
    assert result.conversion.problems == [Problem("OBX[1]-11", reason)]
    assert result.conversion.requests == []
    assert str(acknowledgement(result).segment("MSA")(1)) == "AE"


# ---------------------------------------------------------------------------------------------
# Codes and units
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facility", "patient", "code", "loinc"),
    [
        ("GZ01-LIS", "GZ0700037", "NEUT#^Neutrophils^L", None),  # GZ01's local code
        ("SH02-LAB", "SH0700222", "ANC^Neutrophils^L", None),  # SH02's local code
        ("GZ01-LIS", "GZ0700037", "751-8^Neutrophils^LN", "751-8"),
        ("GZ01-LIS", "GZ0700037", "N99^Neutro^L^751-8^Neutrophils^LN", "751-8"),  # alternate
    ],
)
def test_a_local_code_or_a_loinc_code_names_the_test(
    directory: Directory, facility: str, patient: str, code: str, loinc: str | None
) -> None:
    request = only_request(convert(directory, obx(code=code), facility=facility, patient=patient))
    assert (request.test, request.loinc) == ("NEUT", loinc)


@pytest.mark.parametrize(
    ("code", "value", "unit", "si"),
    [
        ("NEUT#^ANC^L", "0.9", "10*9/L", 0.9),
        ("NEUT#^ANC^L", "900", "/uL", 0.9),
        ("TBIL^Bilirubin^L", "25.7", "umol/L", 25.7),
        ("TBIL^Bilirubin^L", "1.5", "mg/dL", 25.655),
    ],
)
def test_si_and_conventional_units_are_kept_as_sent_and_normalised(
    directory: Directory, code: str, value: str, unit: str, si: float
) -> None:
    request = only_request(convert(directory, obx(code=code, value=value, unit=unit, reference="")))
    assert request.unit == unit
    assert to_event(request, STUDY).payload.si.value == pytest.approx(si, abs=1e-3)


def test_a_unit_foreign_to_the_test_is_refused_on_obx_6(directory: Directory) -> None:
    (problem,) = convert(directory, obx(unit="g/dL")).conversion.problems
    assert problem.where == "OBX[1]-6"
    assert problem.reason.startswith("'g/dL' is not a unit for NEUT")


def test_an_unmonitored_test_is_left_out_and_named_as_a_warning(directory: Directory) -> None:
    result = convert(directory, obx(1), obx(2, code="ESR^Sed rate^L", unit="mm/h"))
    assert only_request(result).test == "NEUT"
    reason = "test 'ESR^Sed rate' is not monitored in this study: left out"
    assert result.conversion.skipped == [Problem("OBX[2]-3", reason)]
    ack = acknowledgement(result)
    assert str(ack.segment("MSA")(1)) == "AA"
    (err,) = errors_of(ack)
    assert (element(err, 3), element(err, 4), element(err, 8)) == ("103", "W", reason)


# ---------------------------------------------------------------------------------------------
# Values and reference ranges
# ---------------------------------------------------------------------------------------------


def test_a_bound_sent_as_structured_numeric_keeps_its_comparator(directory: Directory) -> None:
    request = only_request(convert(directory, obx(kind="SN", value="<^0.1")))
    assert request.value == LabValue(0.1, "<")
    assert to_event(request, STUDY).payload.comparator == "<"


def test_a_structured_numeric_range_is_not_one_result(directory: Directory) -> None:
    (problem,) = convert(directory, obx(kind="SN", value="^1^-^5")).conversion.problems
    assert problem == Problem(
        "OBX[1]-5", "structured numeric '^1^-^5' is a range or ratio, not one result"
    )


def test_a_result_with_several_values_is_refused_not_read_as_its_first(
    directory: Directory,
) -> None:
    (problem,) = convert(directory, obx(value="0.9~1.2")).conversion.problems
    assert problem == Problem("OBX[1]-5", "2 values sent: one result expected")


def test_a_number_sent_as_text_is_read(directory: Directory) -> None:
    assert only_request(convert(directory, obx(kind="ST", value="0.9"))).value == LabValue(0.9)


def test_a_text_result_is_refused_on_obx_5_with_the_text(directory: Directory) -> None:
    (problem,) = convert(directory, obx(kind="ST", value="pending")).conversion.problems
    assert problem.where == "OBX[1]-5" and "'pending' is not a numeric result" in problem.reason


def test_a_coded_result_is_refused_on_its_value_type(directory: Directory) -> None:
    (problem,) = convert(directory, obx(kind="CWE", value="POS^Positive")).conversion.problems
    assert problem.where == "OBX[1]-2" and "'CWE' is not numeric" in problem.reason


@pytest.mark.parametrize(
    ("reference", "low", "high"),
    [
        ("1.8-6.3", 1.8, 6.3),
        ("1.8 - 6.3", 1.8, 6.3),
        ("1.8 to 6.3", 1.8, 6.3),
        (">1.8", 1.8, None),
        (">=1.8", 1.8, None),
        ("<6.3", None, 6.3),
        ("", None, None),
    ],
)
def test_reference_range_forms(
    directory: Directory, reference: str, low: float | None, high: float | None
) -> None:
    request = only_request(convert(directory, obx(reference=reference)))
    assert (request.reference_low, request.reference_high) == (low, high)


@pytest.mark.parametrize("reference", ["70_105", "negative", "<1-5"])
def test_a_reference_range_in_another_form_is_refused_on_obx_7(
    directory: Directory, reference: str
) -> None:
    (problem,) = convert(directory, obx(reference=reference)).conversion.problems
    assert problem.where == "OBX[1]-7"
    assert problem.reason.startswith(f"reference range '{reference}' is not 'low-high'")


def test_a_reference_range_upside_down_is_refused_on_obx_7(directory: Directory) -> None:
    (problem,) = convert(directory, obx(reference="6.3-1.8")).conversion.problems
    assert problem.where == "OBX[1]-7" and "reference_low must be below" in problem.reason


def test_every_refused_element_of_a_result_is_named_at_once(directory: Directory) -> None:
    bad = obx(value="pending", kind="ST", unit="g/dL", reference="n/a", observed="202504140730")
    wheres = [problem.where for problem in convert(directory, bad).conversion.problems]
    assert sorted(wheres) == ["OBX[1]-14", "OBX[1]-5", "OBX[1]-6", "OBX[1]-7"]


# ---------------------------------------------------------------------------------------------
# Observation time
# ---------------------------------------------------------------------------------------------


def test_an_observation_time_without_utc_offset_is_refused_not_guessed(
    directory: Directory,
) -> None:
    (problem,) = convert(directory, obx(observed="202504140730")).conversion.problems
    assert problem.where == "OBX[1]-14"
    assert problem.reason.startswith("'202504140730' has no UTC offset")


def test_a_time_west_of_utc_with_seconds_is_read(directory: Directory) -> None:
    request = only_request(convert(directory, obx(observed="20110103143428-0800")))
    assert request.collected_at == datetime(
        2011, 1, 3, 14, 34, 28, tzinfo=timezone(timedelta(hours=-8))
    )


@pytest.mark.parametrize("observed", ["20250414+0800", "2025041407+0800", "202513140730+0800"])
def test_a_time_not_to_the_minute_or_invalid_is_refused(
    directory: Directory, observed: str
) -> None:
    (problem,) = convert(directory, obx(observed=observed)).conversion.problems
    assert problem.where == "OBX[1]-14" and problem.reason.startswith(f"'{observed}' is not")


def test_without_obx_14_the_order_observation_time_obr_7_is_used(directory: Directory) -> None:
    request = only_request(convert(directory, obx(observed="")))
    assert request.collected_at == datetime(2025, 4, 14, 7, 0, tzinfo=CHINA)


def test_an_obr_7_without_offset_is_refused_on_obr_7(directory: Directory) -> None:
    result = convert(directory, obx(observed=""), observed="202504140700")
    ((where, reason),) = [(p.where, p.reason) for p in result.conversion.problems]
    assert where == "OBR[1]-7" and "has no UTC offset" in reason


def test_a_result_without_any_observation_time_is_refused(directory: Directory) -> None:
    result = convert(directory, obx(observed=""), observed="")
    assert [p.where for p in result.conversion.problems] == ["OBX[1]-14"]


# ---------------------------------------------------------------------------------------------
# Patient and sender
# ---------------------------------------------------------------------------------------------


def test_an_unknown_patient_is_refused_without_revealing_the_patient_name(
    directory: Directory,
) -> None:
    result = convert(directory, patient="ZZ999^^^GZ01^MR")
    (problem,) = result.conversion.problems
    assert problem.where == "PID-3"
    assert "patient identifier 'ZZ999' is not in the enrolment map" in problem.reason
    assert result.conversion.requests == []
    ack = hl7v2.ack(result)
    texts = [ack, *(p.reason for p in result.conversion.problems)]
    assert not any(name in text for name in PATIENT_NAME for text in texts)
    assert "19610302" not in ack  # nor the birth date


def test_the_first_pid_3_identifier_the_enrolment_map_knows_is_used(directory: Directory) -> None:
    request = only_request(convert(directory, patient="H123^^^HOSP^PI~GZ0700037^^^GZ01^MR"))
    assert request.subject_id == "GZ01-001"


def test_a_subject_of_another_site_is_refused(directory: Directory) -> None:
    result = convert(directory, facility="SH02-LAB")
    reason = "subject GZ01-001 belongs to site GZ01, not to the sending facility's site SH02"
    assert result.conversion.problems == [Problem("PID-3", reason)]
    assert str(acknowledgement(result).segment("MSA")(1)) == "AE"


def test_an_unknown_sending_facility_rejects_the_message(directory: Directory) -> None:
    result = convert(directory, facility="XX99-LAB")
    ((where, reason),) = [(p.where, p.reason) for p in result.conversion.problems]
    assert where == "MSH-4" and "'XX99-LAB' is not configured" in reason
    ack = acknowledgement(result)
    assert str(ack.segment("MSA")(1)) == "AR"
    assert element(errors_of(ack)[0], 3) == "204"


def test_a_message_other_than_oru_r01_is_rejected(directory: Directory) -> None:
    result = convert(directory, kind="ADT^A01^ADT_A01")
    reason = "message type 'ADT^A01' is not supported: only ORU^R01 accepted"
    assert result.conversion.problems == [Problem("MSH-9", reason)]
    ack = acknowledgement(result)
    assert str(ack.segment("MSA")(1)) == "AR"
    assert str(ack.segment("MSH")(9)) == "ACK^A01^ACK"
    assert element(errors_of(ack)[0], 3) == "200"


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x00\xff\x10garbage", b"MSH"])
def test_garbage_is_rejected_with_an_ack_that_parses(directory: Directory, data: bytes) -> None:
    result = hl7v2.convert_oru_bytes(data, directory)
    assert result.rejected and result.message is None
    assert [p.where for p in result.conversion.problems] in (["MSH"], ["MSH-18"])
    ack = acknowledgement(result)
    assert (str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))) == ("AR", "")


def test_segments_ended_by_newlines_are_read(directory: Directory) -> None:
    for ending in ("\n", "\r\n"):
        text = oru().replace("\r", ending) + ending
        assert only_request(hl7v2.convert_oru(text, directory)).test == "NEUT"


def test_a_message_without_results_is_refused(directory: Directory) -> None:
    text = oru().rsplit("\r", 1)[0]  # without its OBX
    result = hl7v2.convert_oru(text, directory)
    assert [p.where for p in result.conversion.problems] == ["OBX"]


# ---------------------------------------------------------------------------------------------
# Character sets and escapes
# ---------------------------------------------------------------------------------------------


def test_gb18030_is_decoded_as_msh_18_says(directory: Directory) -> None:
    text = oru(obx(kind="ST", value="阴性"), charset="GB 18030-2000") + "\rNTE|1||患者空腹"
    data = text.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert hl7v2.decode_message(data) == text
    result = hl7v2.convert_oru_bytes(data, directory)
    (problem,) = result.conversion.problems
    assert problem.where == "OBX[1]-5" and "'阴性' is not a numeric result" in problem.reason
    reply = hl7v2.encode(hl7v2.ack(result), result)
    assert "阴性" in reply.decode("gb18030")
    assert str(hl7.parse(reply.decode("gb18030")).segment("MSH")(18)) == "GB 18030-2000"


def test_latin_1_is_decoded_as_msh_18_says(directory: Directory) -> None:
    text = oru(obx(code="HKT^Hämatokrit^L"), charset="8859/1")
    data = text.encode("latin-1")
    assert b"H\xe4matokrit" in data
    result = hl7v2.convert_oru_bytes(data, directory)
    (skipped,) = result.conversion.skipped
    assert "'HKT^Hämatokrit'" in skipped.reason
    assert b"H\xe4matokrit" in hl7v2.encode(hl7v2.ack(result), result)


def test_an_unsupported_character_set_is_rejected_naming_msh_18(directory: Directory) -> None:
    data = oru(charset="ISO IR87").encode()
    with pytest.raises(InteropError, match=r"^MSH-18: character set 'ISO IR87' is not supported"):
        hl7v2.decode_message(data)
    result = hl7v2.convert_oru_bytes(data, directory)
    ack = acknowledgement(result)
    assert (str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))) == ("AR", "MSG0001")
    assert element(errors_of(ack)[0], 2) == "MSH"
    assert str(errors_of(ack)[0](2)) == "MSH^1^18"


def test_bytes_not_in_the_declared_character_set_are_refused(directory: Directory) -> None:
    data = oru(obx(code="HKT^Hämatokrit^L"), charset="UNICODE UTF-8").encode("latin-1")
    with pytest.raises(InteropError, match=r"^MSH-18: the message is not valid UNICODE UTF-8"):
        hl7v2.decode_message(data)


def test_escape_sequences_are_unescaped_and_escaped_again_in_the_ack(directory: Directory) -> None:
    code = r"ESR^a \F\ b \S\ c \T\ d \R\ e \E\ f \X41\^L"
    result = convert(directory, obx(1), obx(2, code=code))
    (skipped,) = result.conversion.skipped
    assert (
        skipped.reason
        == r"test 'ESR^a | b ^ c & d ~ e \ f A' is not monitored in this study: left out"
    )
    (err,) = errors_of(acknowledgement(result))
    assert element(err, 8) == skipped.reason  # ERR-8 carries the reason intact


# ---------------------------------------------------------------------------------------------
# The ACK
# ---------------------------------------------------------------------------------------------


def test_an_ack_answers_the_message_it_acknowledges(directory: Directory) -> None:
    result = convert(directory, obx(1, status="P"), obx(2, code="ESR^Sed rate^L"))
    ack = acknowledgement(result)
    msh, msa = ack.segment("MSH"), ack.segment("MSA")
    assert [str(msh(n)) for n in (3, 4, 5, 6)] == ["SAFETYMON", STUDY, "LIS", "GZ01-LIS"]
    assert (str(msh(9)), str(msh(12))) == ("ACK^R01^ACK", "2.5.1")
    assert str(msh(10)) not in ("", "MSG0001")
    assert str(msh(7)).endswith("+0000")
    assert (str(msa(1)), str(msa(2))) == ("AE", "MSG0001")
    errors = errors_of(ack)
    assert len(errors) == len(result.conversion.problems) + len(result.conversion.skipped) == 2
    assert [str(err(2)) for err in errors] == ["OBX^1^11", "OBX^2^3"]
    assert [element(err, 4) for err in errors] == ["E", "W"]
    assert str(errors[0](3)) == "103^Table value not found^HL70357"


def test_an_accepted_message_is_acknowledged_aa_without_errors(directory: Directory) -> None:
    ack = acknowledgement(convert(directory))
    assert str(ack.segment("MSA")(1)) == "AA" and errors_of(ack) == []


def test_the_caller_can_refuse_what_the_adapter_accepted(directory: Directory) -> None:
    ack = hl7.parse(hl7v2.ack(convert(directory), accepted=False))
    assert str(ack.segment("MSA")(1)) == "AE"


def test_a_failure_to_record_asks_the_sender_to_resend(directory: Directory) -> None:
    ack = hl7.parse(hl7v2.ack_for_failure(convert(directory)))
    assert (str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))) == ("AE", "MSG0001")
    (err,) = errors_of(ack)
    assert (element(err, 3), element(err, 8)) == ("207", "event log unavailable: resend")


def test_problems_found_after_conversion_are_coded_too(directory: Directory) -> None:
    result = convert(directory)
    result.conversion.problems.append(Problem("OBX[1] (payload.si.value)", "out of range"))
    (err,) = errors_of(acknowledgement(result))
    assert (str(err(2)), element(err, 3)) == ("OBX^1", "102")


# ---------------------------------------------------------------------------------------------
# Public samples (tests/data/interop/README.md): real messages, mapped to a test site
# ---------------------------------------------------------------------------------------------


def sample_directory(tmp_path: Path, local_codes: str = "{}") -> Directory:
    interop, enrolments = tmp_path / "interop.yaml", tmp_path / "enrolment.csv"
    interop.write_text(
        f"study_id: {STUDY}\nsites:\n  T01:\n"
        "    hl7_sending_facilities: [NIST Lab Facility, ELAB-3, IA Public Health Lab, LAB2]\n"
        f"    local_codes: {local_codes}\n"
    )
    enrolments.write_text(
        "subject_id,site_id,patient_id,usubjid\n"
        "T01-001,T01,PATID1234,\nT01-002,T01,555-44-4444,\nT01-003,T01,14,\nT01-004,T01,10006579,\n"
    )
    return load_directory(interop, enrolments)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_nist_cbc_sample_gives_its_monitored_results_and_leaves_out_the_rest(
    tmp_path: Path,
) -> None:
    result = hl7v2.convert_oru_bytes(sample("nist_lri_cbc_oru_r01.hl7"), sample_directory(tmp_path))
    assert result.conversion.problems == []
    tests = {where: request for where, request in result.conversion.requests}
    assert {where: request.test for where, request in tests.items()} == {
        "OBX[2]": "HGB",
        "OBX[4]": "WBC",
        "OBX[5]": "PLAT",
        "OBX[16]": "LYM",
        "OBX[18]": "NEUT",
    }
    anc = tests["OBX[18]"]
    assert (anc.subject_id, anc.value, anc.unit) == ("T01-001", LabValue(58), "10*3/uL")
    assert (anc.reference_low, anc.reference_high) == (1.5, 7.0)  # "1.5 to 7.0"
    assert anc.collected_at == datetime(
        2011, 1, 3, 14, 34, 28, tzinfo=timezone(timedelta(hours=-8))
    )
    assert anc.source_message_id == "R-991133|26499-4|"
    assert to_event(tests["OBX[4]"], STUDY).payload.si.value == pytest.approx(105.6)  # {cells}/uL
    assert tests["OBX[2]"].unit == "g/mL"  # moved as sent: the adapter never guesses a unit
    assert len(result.conversion.skipped) == 23  # percentages, indices, CWE and TX findings
    assert ("OBX[18]-8", "HH") in result.abnormal_flags
    ack = acknowledgement(result)
    assert str(ack.segment("MSA")(1)) == "AA" and len(errors_of(ack)) == 23


def test_a_sample_without_sending_facility_is_rejected_on_msh_4(tmp_path: Path) -> None:
    data = sample("fhirconv_lab_oru_r01_si_units.hl7")
    result = hl7v2.convert_oru_bytes(data, sample_directory(tmp_path))
    assert result.conversion.problems == [Problem("MSH-4", "no sending facility")]
    assert str(acknowledgement(result).segment("MSA")(1)) == "AR"


def test_a_differential_in_percent_is_left_out_and_unreadable_units_and_times_refused(
    tmp_path: Path,
) -> None:
    data = sample("fhirconv_lab_oru_r01_si_units.hl7").replace(b"SomeSystem||", b"SomeSystem|LAB2|")
    codes = '{"20509-6": HGB, "11156-7": WBC}'
    result = hl7v2.convert_oru_bytes(data, sample_directory(tmp_path, codes))
    assert len(result.conversion.skipped) == 8  # five percentages, RBC, HCT, platelets
    problems = {(p.where, p.reason.split(":")[0]) for p in result.conversion.problems}
    assert problems == {
        ("OBX[6]-14", "'201410060830' has no UTC offset"),
        ("OBX[6]-6", "'g/l-1' is not a unit for HGB; use a unit convertible to g/L or g/dL"),
        ("OBX[7]-14", "'201410060830' has no UTC offset"),
        ("OBX[7]-6", "'giga.l-1' is not a unit for WBC; use a unit convertible to /mm3 or 10*9/L"),
    }


def test_the_v24_glucose_sample_is_left_out_or_refused_with_precise_reasons(
    tmp_path: Path,
) -> None:
    data = sample("hl7_v24_glucose_oru_r01.hl7")
    unmapped = hl7v2.convert_oru_bytes(data, sample_directory(tmp_path))
    assert [p.where for p in unmapped.conversion.skipped] == ["OBX[1]-3"]
    assert str(acknowledgement(unmapped).segment("MSA")(1)) == "AA"
    mapped = hl7v2.convert_oru_bytes(data, sample_directory(tmp_path, '{"1554-5": GLUC}'))
    assert [p.where for p in mapped.conversion.problems] == ["OBX[1]-7", "OBR[1]-7"]
    assert "'70_105'" in mapped.conversion.problems[0].reason
    assert "has no UTC offset" in mapped.conversion.problems[1].reason
    assert str(acknowledgement(mapped).segment("MSA")(2)) == "CNTRL-3456"


def test_the_kitchen_sink_sample_is_refused_for_its_result_without_identifier(
    tmp_path: Path,
) -> None:
    data = sample("fhirconv_oru_r01_escape_T.hl7")
    result = hl7v2.convert_oru_bytes(data, sample_directory(tmp_path))
    assert result.conversion.problems == [Problem("OBX[2]-3", "no observation identifier")]
    assert len(result.conversion.skipped) == 4  # heart rate, culture, specimen, bacteria
    ack = hl7v2.ack(result)
    assert "Huckleberry" not in ack and "Finn" not in ack
    assert str(hl7.parse(ack).segment("MSA")(1)) == "AE"


@pytest.mark.parametrize("name", sorted(path.name for path in SAMPLES.glob("*.hl7")))
def test_every_sample_is_answered_with_an_ack_that_parses(tmp_path: Path, name: str) -> None:
    result = hl7v2.convert_oru_bytes(sample(name), sample_directory(tmp_path))
    ack = acknowledgement(result)
    assert str(ack.segment("MSA")(2)) == result.control_id != ""
    assert len(errors_of(ack)) == len(result.conversion.problems) + len(result.conversion.skipped)
