"""`safetymon import FILE...`: send files to ingest, with a progress bar and a per-row error
report. SDTM datasets (.csv, .xpt) are read here and sent as slices of rows, in file order (one
subject's results keep their order); HL7 v2 files (.hl7: one or more messages) and FHIR JSON
files (.json: a resource or a Bundle) go to their endpoints as they are.

Importing is idempotent: ingest derives each event's id from the row (or message), so re-running
an import publishes the same events again, which every consumer takes once.

Ingest takes submissions only with a sending system's token (Authorization: Bearer, see
services/ingest/senders.py): `safetymon import` reads it from SAFETYMON_TOKEN or --token. Rows
of a site the token's sender may not submit for come back as rejected rows."""

import csv
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from services.ingest.interop import sdtm
from services.ingest.interop.common import InteropError

ROWS_PER_REQUEST = 2000
HL7_MESSAGE_START = re.compile(rb"(?=(?:^|[\r\n])MSH\|)")
TOKEN_ENV = "SAFETYMON_TOKEN"


@dataclass
class FileResult:
    path: Path
    units: int = 0
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds else 0.0


class ImportFailed(Exception):
    """Ingest could not take a part of the file (unreadable, or unavailable): the message says
    which part; what was sent before it stays published."""


def _post(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    for attempt in range(5):
        response = client.post(path, **kwargs)
        if response.status_code == 401:  # nothing of any file would go through
            raise ImportFailed(
                f"ingest refused the token (HTTP 401: {response.text[:300]}): set {TOKEN_ENV} "
                "or --token to the sending system's token"
            )
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers.get("Retry-After", 1)) * (attempt + 1))
    return response


def import_sdtm(
    client: httpx.Client, path: Path, utc_offset: str | None, progress: Progress
) -> FileResult:
    try:
        dataset = sdtm.read_dataset(path.read_bytes(), path.name)
    except InteropError as error:
        raise ImportFailed(f"{path}: {error}") from None
    result = FileResult(path)
    task = progress.add_task(f"{path.name} ({dataset.domain})", total=len(dataset.rows))
    for start in range(0, len(dataset.rows), ROWS_PER_REQUEST):
        rows = dataset.rows[start : start + ROWS_PER_REQUEST]
        body = {
            "domain": dataset.domain,
            "first_row": start + 1,
            "utc_offset": utc_offset,
            "rows": rows,
        }
        response = _post(
            client,
            "/v1/sdtm/rows",
            content=json.dumps(body, default=str),
            headers={"content-type": "application/json"},
        )
        if response.status_code != 202:
            raise ImportFailed(
                f"{path}: rows {start + 1}-{start + len(rows)}: HTTP {response.status_code} "
                f"{response.text[:500]}"
            )
        report = response.json()
        result.accepted += report["accepted"]
        result.rejected += report["rejected"]
        result.skipped += len(report["skipped"])
        result.units += len(rows)
        progress.advance(task, len(rows))
    return result


def split_hl7(data: bytes) -> list[bytes]:
    """The messages of an HL7 v2 batch file: each starts with an MSH segment."""
    parts = HL7_MESSAGE_START.split(data)
    return [part.strip(b"\r\n") for part in parts if part.strip(b"\r\n")]


def import_hl7(client: httpx.Client, path: Path, progress: Progress) -> FileResult:
    messages = split_hl7(path.read_bytes())
    result = FileResult(path)
    task = progress.add_task(f"{path.name} (HL7 v2)", total=len(messages))
    for number, message in enumerate(messages, start=1):
        response = _post(
            client, "/v1/hl7", content=message, headers={"content-type": "x-application/hl7-v2+er7"}
        )
        result.units += 1
        if response.status_code == 200:
            result.accepted += 1
        else:
            result.rejected.append({"row": number, "column": "message", "reason": response.text})
        progress.advance(task)
    return result


def import_fhir(client: httpx.Client, path: Path, progress: Progress) -> FileResult:
    result = FileResult(path, units=1)
    task = progress.add_task(f"{path.name} (FHIR)", total=1)
    response = _post(
        client,
        "/v1/fhir",
        content=path.read_bytes(),
        headers={"content-type": "application/fhir+json"},
    )
    if response.status_code == 202:
        result.accepted = 1
    else:
        result.rejected.append({"row": 1, "column": "resource", "reason": response.text})
    progress.advance(task)
    return result


def write_error_report(result: FileResult, directory: Path) -> Path:
    path = directory / f"{result.path.name}.errors.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=["row", "column", "reason"])
        writer.writeheader()
        writer.writerows(result.rejected)
    return path


def import_files(
    paths: list[Path],
    ingest_url: str,
    utc_offset: str | None,
    errors_dir: Path | None,
    *,
    token: str,
) -> list[FileResult]:
    """Send every file to ingest as the sending system whose `token` this is."""
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    results = []
    auth = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=ingest_url, timeout=120, headers=auth) as client,
        Progress(*columns, TimeRemainingColumn(), console=console) as progress,
    ):
        for path in paths:
            started = time.perf_counter()
            suffix = path.suffix.lower()
            if suffix in (".csv", ".xpt"):
                result = import_sdtm(client, path, utc_offset, progress)
            elif suffix in (".hl7", ".er7", ".txt"):
                result = import_hl7(client, path, progress)
            elif suffix == ".json":
                result = import_fhir(client, path, progress)
            else:
                raise ImportFailed(f"{path}: not .csv, .xpt (SDTM), .hl7 (HL7 v2) or .json (FHIR)")
            result.seconds = time.perf_counter() - started
            results.append(result)
            if result.rejected:
                report = write_error_report(result, errors_dir or path.parent)
                console.print(f"{path.name}: {len(result.rejected)} rejected: see {report}")
    return results
