"""HL7 v2.x ORU^R01 lab results in, the JSON API's request models out, and the ACK that answers.

Pure: no I/O. Parsing, element access, unescaping and the ACK header come from python-hl7.
Elements are named as HL7 people name them: "OBX[2]-6" is field 6 of the message's second OBX
(its ordinal in the message, which is also ERR-2's segment sequence). Of the patient only the
identifier (PID-3) is ever read: no name, birth date or address reaches a problem, log or event.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import hl7
from pydantic import ValidationError

from services.ingest.domain import (
    LabCorrectionIn,
    LabResultIn,
    RetractionIn,
    SubmissionIn,
    event_id_of,
)
from services.ingest.interop.common import (
    Conversion,
    Directory,
    InteropError,
    Problem,
    Subject,
    build,
    visit_from_label,
)
from shared.events import Source, Visit
from shared.lab_values import LabValueError, parse_lab_value
from shared.labs import LabTest

ACK_APPLICATION = "SAFETYMON"  # MSH-3 of our ACK when the sender named no receiving application
DEFAULT_VERSION = "2.5.1"  # MSH-12 of an ACK to a message whose version could not be read
# HL7 table 0211 -> Python codec. ASCII is read as UTF-8, its superset: same bytes, no failure.
CHARSETS = {
    "": "utf-8",
    "ASCII": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "8859/1": "latin-1",
    "GB 18030-2000": "gb18030",
}
# HL7 table 0357 (message error condition codes) used here.
ERROR_CODES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "204": "Unknown key identifier",
    "207": "Application internal error",
}
# HL7 table 0085 (observation result status), for the reason a status is refused.
RESULT_STATUSES = {
    "C": "corrected",
    "D": "deleted",
    "F": "final",
    "I": "pending",
    "N": "not asked",
    "O": "order detail",
    "P": "preliminary",
    "R": "not verified",
    "S": "partial",
    "U": "final without results",
    "W": "wrong patient",
    "X": "cannot be obtained",
}
# Statuses that withdraw an earlier result: X cancelled, D deleted, W posted to the wrong patient
# (a result left on the wrong subject would grade, and alert, on someone it does not belong to).
RETRACTIONS = {
    "X": "result cancelled by the laboratory (OBX-11=X)",
    "D": "result deleted by the laboratory (OBX-11=D)",
    "W": "result posted to the wrong patient (OBX-11=W)",
}
NUMERIC_TYPES = ("NM", "SN", "ST")  # ST only when it holds a number (some LIS send NM as ST)
_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2}(?:\.\d{1,4})?)?([+-]\d{4})?$")
_RANGE_SEPARATOR = re.compile(r"\s*(?:-|\bto\b)\s*", re.IGNORECASE)
_WHERE = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?")
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


@dataclass
class Hl7Result:
    """A converted message and what its ACK needs. `rejected` means MSA-1 AR: the message
    could not be read, is not ORU^R01, or comes from a sender we do not know."""

    conversion: Conversion
    control_id: str = ""  # MSH-10
    sending_application: str = ""  # MSH-3
    sending_facility: str = ""  # MSH-4
    receiving_application: str = ""  # MSH-5
    receiving_facility: str = ""  # MSH-6
    message_type: str = ""  # MSH-9.1
    trigger_event: str = ""  # MSH-9.2
    processing_id: str = "P"  # MSH-11
    version: str = ""  # MSH-12
    charset: str = ""  # MSH-18 as sent
    encoding: str = "utf-8"  # the Python codec of MSH-18: the ACK is encoded alike
    message: hl7.Message | None = None
    rejected: bool = False
    error_codes: dict[Problem, str] = field(default_factory=dict)  # table 0357, per problem
    abnormal_flags: list[tuple[str, str]] = field(default_factory=list)  # OBX-8: information only

    def refuse(self, where: str, reason: str, code: str, *, reject: bool = False) -> None:
        problem = Problem(where, reason)
        self.conversion.problems.append(problem)
        self.error_codes[problem] = code
        self.rejected = self.rejected or reject


class _Refused(Exception):
    """One element refused while reading an OBX; the others are still read and reported."""

    def __init__(self, where: str, reason: str, code: str) -> None:
        super().__init__(reason)
        self.where, self.reason, self.code = where, reason, code


# ---------------------------------------------------------------------------------------------
# Bytes -> text
# ---------------------------------------------------------------------------------------------


def _declared_charset(data: bytes) -> str:
    """MSH-18 read from the raw bytes: the character set must be known before decoding. The
    header fields before it are ASCII in practice (a GB 18030 trail byte can equal "|")."""
    header = re.split(rb"[\r\n]", data.lstrip(), maxsplit=1)[0]
    if not header.startswith(b"MSH") or len(header) < 4:
        return ""
    fields = header.split(header[3:4])  # MSH-1 is the separator: fields[n - 1] is MSH-n
    if len(fields) < 18:
        return ""
    repetition = fields[1][1:2] or b"~"
    return fields[17].split(repetition)[0].decode("ascii", "replace").strip()


def _normalised(text: str) -> str:
    return text.replace("\r\n", "\r").replace("\n", "\r").strip()


def decode_message(data: bytes) -> str:
    """The message's text, decoded in the character set MSH-18 names, with \\r segment ends.
    InteropError (naming MSH-18) for a character set we do not read or bytes not in it."""
    charset = _declared_charset(data)
    codec = CHARSETS.get(charset.upper())
    if codec is None:
        accepted = ", ".join(repr(name) for name in CHARSETS if name)
        raise InteropError(f"MSH-18: character set '{charset}' is not supported: use {accepted}")
    try:
        return _normalised(data.decode(codec))
    except UnicodeDecodeError as error:
        raise InteropError(
            f"MSH-18: the message is not valid {charset or 'UTF-8'} (byte {error.start})"
        ) from None


def convert_oru_bytes(data: bytes, directory: Directory) -> Hl7Result:
    """`decode_message` then `convert_oru`; a character set problem rejects the message (AR),
    answered with the header read as Latin-1 (every byte decodes) so MSA-2 names it."""
    try:
        text = decode_message(data)
    except InteropError as error:
        result = _parsed(_normalised(data.decode("latin-1")))
        result.conversion, result.message = Conversion(), None  # its content is unread
        result.refuse("MSH-18", str(error).removeprefix("MSH-18: "), "103", reject=True)
        return result
    return convert_oru(text, directory)


def encode(text: str, result: Hl7Result) -> bytes:
    """An ACK in the character set of the message it answers."""
    return text.encode(result.encoding, errors="replace")


# ---------------------------------------------------------------------------------------------
# Text -> requests
# ---------------------------------------------------------------------------------------------


def _element(segment: hl7.Segment, number: int, component: int = 1, repetition: int = 1) -> str:
    """One component of a field, unescaped; "" when absent (HL7: not sent = empty)."""
    try:
        value = segment.extract_field(
            field_num=number, repeat_num=repetition, component_num=component
        )
    except IndexError:
        return ""
    return str(value).strip()


def _repetitions(segment: hl7.Segment, number: int) -> int:
    return len(segment(number)) if number < len(segment) else 0


def _parsed(text: str) -> Hl7Result:
    """The parsed message and its header; a message that cannot be parsed is rejected."""
    result = Hl7Result(Conversion())
    try:
        message = hl7.parse(text)
        msh = message.segment("MSH")
    except Exception as error:  # the library raises several types; the content is not echoed
        reason = "the message does not start with an MSH segment"
        if text.startswith("MSH"):
            reason = f"not a readable HL7 v2 message ({type(error).__name__})"
        result.refuse("MSH", reason, "100", reject=True)
        return result
    result.message = message
    result.control_id, result.version = _element(msh, 10), _element(msh, 12)
    result.sending_application, result.sending_facility = _element(msh, 3), _element(msh, 4)
    result.receiving_application, result.receiving_facility = _element(msh, 5), _element(msh, 6)
    result.message_type, result.trigger_event = _element(msh, 9, 1), _element(msh, 9, 2)
    result.processing_id = _element(msh, 11) or "P"
    result.charset = _element(msh, 18)
    result.encoding = CHARSETS.get(result.charset.upper(), "utf-8")
    return result


def _site_of_sender(result: Hl7Result, directory: Directory) -> str | None:
    """The site of MSH-4, if the message is an ORU^R01 from a known facility; else rejected."""
    kind = f"{result.message_type}^{result.trigger_event}"
    if kind != "ORU^R01":
        reason = f"message type '{kind}' is not supported: only ORU^R01 accepted"
        result.refuse("MSH-9", reason, "200", reject=True)
        return None
    if not result.sending_facility:
        result.refuse("MSH-4", "no sending facility", "101", reject=True)
        return None
    try:
        return directory.site_for_facility(result.sending_facility)
    except InteropError as error:
        result.refuse("MSH-4", str(error), "204", reject=True)
        return None


def convert_oru(text: str, directory: Directory) -> Hl7Result:
    """An ORU^R01 message's results as request models (see the module's rules)."""
    result = _parsed(_normalised(text))
    if result.message is None:
        return result
    site_id = _site_of_sender(result, directory)
    if site_id is not None:
        _Reader(directory, site_id, result).read(result.message)
    return result


@dataclass
class _Order:
    """An OBR: what identifies its results, and its observation time (OBX-14's fallback)."""

    key: str | None  # OBR-3 filler order number, else OBR-2 placer
    observed_at: str  # OBR-7
    where: str  # "OBR[m]"


@dataclass
class _Reader:
    """Walks the segments in order: each OBX belongs to the PID and OBR before it."""

    directory: Directory
    site_id: str
    result: Hl7Result
    subject: Subject | None = None
    visit: Visit | None = None
    order: _Order | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def source_system(self) -> str:
        return f"hl7v2:{self.result.sending_facility}"

    def read(self, message: hl7.Message) -> None:
        readers: dict[str, Callable[[hl7.Segment, int], None]] = {
            "PID": self._patient,
            "PV1": self._patient_visit,
            "OBR": self._order,
            "OBX": self._observation,
        }
        for segment in message:
            name = str(segment[0])
            if name in readers:
                self.counts[name] = self.counts.get(name, 0) + 1
                readers[name](segment, self.counts[name])
        if not self.counts.get("PID"):
            self.result.refuse("PID", "no PID segment: the patient is not identified", "100")
        elif not self.counts.get("OBX"):
            self.result.refuse("OBX", "no OBX segment: the message holds no result", "100")

    def _patient(self, segment: hl7.Segment, number: int) -> None:
        self.subject, self.visit, self.order = None, None, None
        where = "PID-3" if number == 1 else f"PID[{number}]-3"
        ids = [_element(segment, 3, 1, r) for r in range(1, _repetitions(segment, 3) + 1)]
        errors: list[str] = []
        for patient_id in filter(None, ids):  # the first repetition the enrolment map knows
            try:
                subject = self.directory.subject_for_patient(patient_id)
            except InteropError as error:
                errors.append(str(error))
                continue
            if subject.site_id != self.site_id:
                reason = (
                    f"subject {subject.subject_id} belongs to site {subject.site_id}, "
                    f"not to the sending facility's site {self.site_id}"
                )
                self.result.refuse(where, reason, "204")
            else:
                self.subject = subject
            return
        if errors:
            self.result.refuse(where, "; ".join(errors), "204")
        else:
            self.result.refuse(where, "no patient identifier", "101")

    def _patient_visit(self, segment: hl7.Segment, number: int) -> None:
        label = _element(segment, 19)
        try:
            self.visit = visit_from_label(label)
        except ValidationError as error:  # "C0D1": a cycle and day, but not the protocol's
            self.visit = None
            where = "PV1-19" if number == 1 else f"PV1[{number}]-19"
            self.result.refuse(where, _not_a_visit(label, error), "102")

    def _order(self, segment: hl7.Segment, number: int) -> None:
        where = f"OBR[{number}]"
        key = _element(segment, 3) or _element(segment, 2) or None
        self.order = _Order(key, _element(segment, 7), where)
        if key is None:
            reason = "no filler (OBR-3) or placer (OBR-2) order number: results need one"
            self.result.refuse(f"{where}-3", reason, "101")

    def _observation(self, segment: hl7.Segment, number: int) -> None:
        where = f"OBX[{number}]"
        if not self.counts.get("PID"):
            self.result.refuse(where, "no PID segment before it", "100")
        elif self.subject is not None:  # else the patient was refused: that problem says why
            _Observation(self, segment, where).convert()


# ---------------------------------------------------------------------------------------------
# One OBX
# ---------------------------------------------------------------------------------------------


@dataclass
class _Observation:
    reader: _Reader
    segment: hl7.Segment
    where: str  # "OBX[n]"
    refused: list[_Refused] = field(default_factory=list)

    def element(self, number: int, component: int = 1) -> str:
        return _element(self.segment, number, component)

    def convert(self) -> None:
        code, alternate = self.element(3, 1), self.element(3, 4)
        if not code and not alternate:
            self.reader.result.refuse(f"{self.where}-3", "no observation identifier", "101")
            return
        test = self._test(code, alternate)
        if test is None:
            label = f"{code or alternate}^{self.element(3, 2 if code else 5)}"
            reason = f"test '{label}' is not monitored in this study: left out"
            self.reader.result.conversion.skipped.append(Problem(f"{self.where}-3", reason))
            return
        order = self.reader.order
        if order is None:  # checked after the test: a misplaced OBX we leave out is harmless
            self.reader.result.refuse(self.where, "no OBR segment before it", "100")
            return
        if flags := self.element(8):
            self.reader.result.abnormal_flags.append((f"{self.where}-8", flags))
        if order.key is not None:  # else the OBR's problem says why
            self._by_status(test, f"{order.key}|{code or alternate}|{self.element(4)}")

    def _test(self, code: str, alternate: str) -> LabTest | None:
        """The site's local code or LOINC in OBX-3.1, else in the alternate OBX-3.4."""
        for candidate in filter(None, (code, alternate)):
            if test := self.reader.directory.test_for_code(self.reader.site_id, candidate):
                return test
        return None

    def _loinc(self) -> dict[str, str]:
        for code_at, system_at in ((1, 3), (4, 6)):
            code, system = self.element(3, code_at), self.element(3, system_at)
            if code and system.upper() == "LN":
                return {"loinc": code}
        return {}

    def _by_status(self, test: LabTest, key: str) -> None:
        status = self.element(11).upper()
        if status == "F":
            self._build(LabResultIn, self._result_fields(test, key))
        elif status == "C":
            self._build(LabCorrectionIn, self._correction_fields(test, key, status))
        elif status in RETRACTIONS:
            self._build(RetractionIn, self._retraction_fields(key, status))
        elif status:
            name = RESULT_STATUSES.get(status, "not in table 0085")
            reason = f"result status {status} ({name}) is not accepted: send the final result"
            self.reader.result.refuse(f"{self.where}-11", reason, "103")
        else:
            reason = "no result status: send the final result (F)"
            self.reader.result.refuse(f"{self.where}-11", reason, "101")

    # -- fields -------------------------------------------------------------------------------

    def _common(self, message_id: str) -> dict[str, Any]:
        subject = self.reader.subject
        assert subject is not None  # an OBX is only read under an accepted patient
        return {
            "subject_id": subject.subject_id,
            "site_id": subject.site_id,
            "source_system": self.reader.source_system,
            "source_message_id": message_id,
        }

    def _result_fields(self, test: LabTest, key: str) -> dict[str, Any]:
        fields = self._common(key) | {"test": test, "unit": self.element(6)}
        fields |= {"visit": self.reader.visit} | self._loinc()
        for read in (self._value, self._reference_range, self._collected_at):
            try:
                fields |= read()
            except _Refused as refusal:
                self.refused.append(refusal)
        return fields

    def _earlier_result(self, key: str) -> UUID:
        """The event of the original result, as its own message `key` made it."""
        source = Source(system=self.reader.source_system, message_id=key)
        return event_id_of("LabResultReported", self.reader.directory.study_id, source)

    def _own_id(self, key: str, status: str) -> str:
        # A correction or cancellation is its own message: resent, it is the same event again.
        return f"{key}|{status}|{self.reader.result.control_id}"

    def _correction_fields(self, test: LabTest, key: str, status: str) -> dict[str, Any]:
        return self._common(self._own_id(key, status)) | {
            "corrected_event_id": self._earlier_result(key),
            "reason": f"corrected result (OBX-11={status})",
            "corrected": self._result_fields(test, key),
        }

    def _retraction_fields(self, key: str, status: str) -> dict[str, Any]:
        return self._common(self._own_id(key, status)) | {
            "retracted_event_id": self._earlier_result(key),
            "reason": RETRACTIONS[status],
        }

    def _value(self) -> dict[str, Any]:
        kind = self.element(2).upper()
        if not kind:
            raise _Refused(f"{self.where}-2", "no value type", "101")
        if kind not in NUMERIC_TYPES:
            reason = f"value type '{kind}' is not numeric: send NM or SN (or ST holding a number)"
            raise _Refused(f"{self.where}-2", reason, "102")
        if (count := _repetitions(self.segment, 5)) > 1:  # which one would be the result?
            raise _Refused(f"{self.where}-5", f"{count} values sent: one result expected", "102")
        value = self._structured_numeric() if kind == "SN" else self.element(5)
        if not value:
            raise _Refused(f"{self.where}-5", "no result value", "101")
        return {"value": value}

    def _structured_numeric(self) -> str:
        """SN '<^0.1' -> '<0.1'; a range ('^1^-^5') or ratio ('^1^:^128') is not one result."""
        comparator, number, separator, second = (self.element(5, c) for c in (1, 2, 3, 4))
        if separator or second:
            text = "^".join((comparator, number, separator, second))
            reason = f"structured numeric '{text}' is a range or ratio, not one result"
            raise _Refused(f"{self.where}-5", reason, "102")
        return ("" if comparator == "=" else comparator) + number

    def _reference_range(self) -> dict[str, Any]:
        text = self.element(7)
        try:
            low, high = _range(text)
        except LabValueError:
            reason = f"reference range '{text}' is not 'low-high', 'low to high', '>low' or '<high'"
            raise _Refused(f"{self.where}-7", reason, "102") from None
        return {"reference_low": low, "reference_high": high}

    def _collected_at(self) -> dict[str, Any]:
        order = self.reader.order
        assert order is not None
        raw, where = self.element(14), f"{self.where}-14"
        if not raw:  # OBR-7, the order's observation time, holds for all its results
            raw, where = order.observed_at, f"{order.where}-7"
        if not raw:
            reason = "no observation time: neither OBX-14 nor OBR-7 is given"
            raise _Refused(f"{self.where}-14", reason, "101")
        return {"collected_at": _timestamp(raw, where)}

    # -- building -----------------------------------------------------------------------------

    def _build(self, model: type[SubmissionIn], fields: dict[str, Any]) -> None:
        """Refused elements are problems as read; the model checks the rest, so one answer
        names every problem (its "Field required" for a refused element would only repeat)."""
        result = self.reader.result
        for refusal in self.refused:
            result.refuse(refusal.where, refusal.reason, refusal.code)
        target = Conversion() if self.refused else result.conversion
        build(model, fields, self.where, _element_of(self.where), target)
        if self.refused:
            result.conversion.problems += [
                problem for problem in target.problems if problem.reason != "Field required"
            ]


def _element_of(where: str) -> Callable[[str], str]:
    """Our field path -> the HL7 element it came from, for problems in the sender's terms."""
    suffixes = dict.fromkeys(("test", "loinc"), "-3") | {"value": "-5", "unit": "-6"}
    suffixes |= dict.fromkeys(("reference_low", "reference_high"), "-7")
    suffixes |= {"collected_at": "-14"}
    # A result's one whole-model check is the range order: name the range.
    suffixes |= dict.fromkeys(("(message)", "corrected"), "-7")
    elsewhere = {"subject_id": "PID-3", "visit": "PV1-19"}
    elsewhere |= dict.fromkeys(("site_id", "source_system"), "MSH-4")

    def element_of(path: str) -> str:
        name = path.removeprefix("corrected.").split(".")[0]
        return elsewhere.get(name) or where + suffixes.get(name, "")

    return element_of


def _not_a_visit(label: str, error: ValidationError) -> str:
    issues = "; ".join(f"{issue['loc'][0]}: {issue['msg']}" for issue in error.errors())
    return f"'{label}' is not a visit of the protocol ({issues})"


def _range(text: str) -> tuple[float | None, float | None]:
    """'3.5-9.5', '4.3 to 6.2', '>3.5', '<40' or '' -> (low, high); else LabValueError."""
    text = text.strip()
    if not text:
        return None, None
    if text[0] in "<>":
        bound = parse_lab_value(text)
        return (bound.number, None) if text[0] == ">" else (None, bound.number)
    parts = _RANGE_SEPARATOR.split(text, maxsplit=1)
    if len(parts) != 2:
        raise LabValueError(text)
    low, high = (parse_lab_value(part) for part in parts)
    if low.comparator or high.comparator:
        raise LabValueError(text)
    return low.number, high.number


def _timestamp(raw: str, where: str) -> datetime:
    """An HL7 TS/DTM to the minute with its UTC offset. Written here rather than with
    hl7.parse_datetime, which accepts a bare date and gets the sign of '-00MM' offsets wrong."""
    match = _TIME.match(raw)
    if match is None:
        reason = f"'{raw}' is not an HL7 time to the minute (YYYYMMDDHHMM[SS][+/-ZZZZ])"
        raise _Refused(where, reason, "102")
    year, month, day, hour, minute, seconds, offset = match.groups()
    if offset is None:
        reason = f"'{raw}' has no UTC offset: send it with one (+/-ZZZZ); no zone is guessed"
        raise _Refused(where, reason, "102")
    sign, hours, minutes = (-1 if offset[0] == "-" else 1), int(offset[1:3]), int(offset[3:5])
    try:
        if minutes >= 60:
            raise ValueError(offset)
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), tzinfo=zone)
    except ValueError:
        raise _Refused(where, f"'{raw}' is not a valid time", "102") from None
    return moment + timedelta(seconds=float(seconds or 0))


# ---------------------------------------------------------------------------------------------
# The acknowledgement
# ---------------------------------------------------------------------------------------------


def _escaped(text: str) -> str:
    """Delimiters as HL7 escapes (the ACK uses the standard ones); line breaks as \\.br\\.
    Other characters are kept for the reply's character set: the library's escape() writes a
    code point as \\Xhh\\, which HL7 reads as bytes, not as a character."""
    text = "".join(_ESCAPES.get(character, character) for character in text)
    return text.replace("\r\n", "\\.br\\").replace("\r", "\\.br\\").replace("\n", "\\.br\\")


def _header_of(result: Hl7Result) -> hl7.Message:
    """The original's header rebuilt from what was read, for create_ack: a rejected message
    may have no usable MSH (or an MSH-9 without components, which create_ack cannot read)."""
    sender = [result.sending_application, result.sending_facility]
    receiver = [result.receiving_application or ACK_APPLICATION, result.receiving_facility]
    kind = [result.message_type or "ORU", result.trigger_event or "R01"]
    rest = [result.control_id, result.processing_id, result.version or DEFAULT_VERSION]
    fields = [*map(_escaped, sender + receiver), "", "", "^".join(map(_escaped, kind))]
    fields += map(_escaped, rest)
    return hl7.parse("MSH|^~\\&|" + "|".join(fields))


def _location(where: str) -> tuple[str, str, str]:
    match = _WHERE.match(where)
    if match is None:
        return "", "", ""
    return match[1], match[2] or "1", match[3] or ""


def _err(problem: Problem, code: str, severity: str) -> str:
    """ERR (v2.5+): ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 the reason; ERR-1 (the
    v2.3/2.4 form) as well, for senders on those versions."""
    segment, sequence, field_number = _location(problem.where)
    text = ERROR_CODES[code]
    eld = f"{segment}^{sequence}^{field_number}^{code}&{text}&HL70357" if segment else ""
    location = f"{segment}^{sequence}^{field_number}".rstrip("^") if segment else ""
    return f"ERR|{eld}|{location}|{code}^{text}^HL70357|{severity}||||{_escaped(problem.reason)}"


def _default_code(problem: Problem) -> str:
    """The code of a problem found by the request models or the publisher (not coded here)."""
    if problem.reason == "Field required":
        return "101"
    return "103" if problem.where.endswith(("-3", "-6")) else "102"


def _ack_of(result: Hl7Result, code: str, errors: list[str]) -> str:
    message = _header_of(result).create_ack(code)
    msh = message.segment("MSH")
    # create_ack's MSH-7 is UTC without an offset, which a receiver would read as local time.
    msh.assign_field(datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000"), 7)
    if result.charset and result.charset.upper() in CHARSETS:  # the ACK is encoded in it
        msh.assign_field(_escaped(result.charset), 18)
    return "\r".join([str(message).rstrip("\r"), *errors]) + "\r"


def ack(result: Hl7Result, accepted: bool | None = None) -> str:
    """ACK^R01: MSA-1 AR (rejected), else AA or AE as `accepted` says (default: no problems);
    one ERR per problem (severity E) and per test left out (W)."""
    ok = result.conversion.accepted if accepted is None else accepted
    code = "AR" if result.rejected else ("AA" if ok else "AE")
    errors = [
        _err(problem, result.error_codes.get(problem) or _default_code(problem), "E")
        for problem in result.conversion.problems
    ]
    errors += [_err(problem, "103", "W") for problem in result.conversion.skipped]
    return _ack_of(result, code, errors)


def ack_for_failure(result: Hl7Result, reason: str = "event log unavailable: resend") -> str:
    """AE when the message was fine but could not be recorded: the sender must resend it."""
    return _ack_of(result, "AE", [_err(Problem("", reason), "207", "E")])
