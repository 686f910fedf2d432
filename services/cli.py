"""The `safetymon` command."""

import argparse
import asyncio
import json
import signal
import sys

from shared.settings import get_settings

SERVICES = {
    "ingest": ("services.ingest.app:create_app", "ingest_port"),
    "grader": ("services.ctcae_grader.app:create_app", "grader_port"),
    "alerts": ("services.alerts.app:create_app", "alerts_port"),
    "dsmb": ("services.dsmb.app:create_app", "dsmb_port"),
}


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(service: str, port: int | None) -> int:
    import uvicorn

    settings = get_settings()
    factory, port_setting = SERVICES[service]
    # uvicorn drains in-flight work on SIGTERM, then re-raises the signal to the handler it found:
    # make that handler a clean exit, so a graceful stop ends with status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        factory,
        factory=True,
        host=settings.bind_host,
        port=port or getattr(settings, port_setting),
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=20,
        loop="uvloop",
        http="httptools",
    )
    return 0


def grade(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`grade TEST VALUE UNIT`: one value, printed; `grade IN.csv [-o OUT.csv]`: a whole file."""
    if len(args.inputs) == 1:
        if args.lln is not None or args.uln is not None or args.baseline is not None or args.json:
            parser.error("--lln, --uln, --baseline and --json grade one value: TEST VALUE UNIT")
        from services.grading_csv import run
        from shared.reference_ranges import ReferenceRangeError, load_reference_ranges

        try:
            ranges = load_reference_ranges(
                args.reference_ranges or get_settings().reference_ranges_file
            )
        except (OSError, ReferenceRangeError) as error:
            print(f"error: reference ranges: {error}", file=sys.stderr)
            return 2
        return run(args.inputs[0], args.output, ranges)
    if len(args.inputs) != 3:
        parser.error(
            f"expected IN.csv (one argument) or TEST VALUE UNIT (three), got {len(args.inputs)}: "
            + " ".join(args.inputs)
        )
    if args.output is not None or args.reference_ranges is not None:
        parser.error("-o/--output and --reference-ranges are for grading a file: grade IN.csv")
    return _grade_one(*args.inputs, args.lln, args.uln, args.baseline, args.json)


def _grade_one(
    test: str,
    value: str,
    unit: str,
    lln: float | None,
    uln: float | None,
    baseline: float | None,
    as_json: bool,
) -> int:
    from shared.ctcae import References, grade_reported
    from shared.lab_values import LabValueError, parse_lab_value
    from shared.labs import UnitError, resolve_test

    try:
        lab = resolve_test(test)
        reported = parse_lab_value(value)
        results = grade_reported(
            lab, reported.number, unit, reported.comparator, References(lln, uln, baseline)
        )
    except (LabValueError, UnitError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        if as_json:
            record = {
                "test": lab.value,
                "term": result.term,
                "meddra_code": result.criteria.meddra_code,
                "grade": result.grade,
                "minimum_grade": result.minimum_grade,
                "graded_value": result.value,
                "graded_unit": result.unit,
                "criterion": result.criterion,
                "missing": list(result.missing),
                "reason": result.reason,
            }
            print(json.dumps(record))
        else:
            shown = "undecided" if result.grade is None else str(result.grade)
            print(f"{result.term}: grade {shown} ({result.unit}) - {result.reason}")
    return 0


def stopping_boundary(events: int | None, evaluable: int | None) -> int:
    """Print the boundary table n = 1..N of the study's toxicity stopping rule, and the status
    for the counts given."""
    from shared.protocol import study_protocol

    settings = get_settings()
    monitoring = study_protocol(settings.study_id, settings.protocol_file).toxicity_monitoring
    if monitoring is None:
        print(
            f"the protocol of {settings.study_id} defines no toxicity monitoring", file=sys.stderr
        )
        return 1
    rule = monitoring.rule()
    print(f"event: {monitoring.event}")
    print(
        f"stop if P(rate > {rule.max_acceptable_rate:g} | data) > {rule.posterior_threshold:g}"
        f"; prior Beta({rule.prior_a:g}, {rule.prior_b:g}) [{monitoring.status.value}]"
    )
    print("evaluable n  events that stop")
    for n, crossing in enumerate(rule.boundary(), start=1):
        print(f"{n:12d}  {'-' if crossing is None else f'>= {crossing}'}")
    if events is not None and evaluable is not None:
        probability = rule.posterior_probability(events, evaluable)
        print(
            f"{events} of {evaluable}: P = {probability:.3f} -> "
            f"{rule.status(events, evaluable).value}"
        )
    return 0


def explain_subject(subject_id: str) -> int:
    """Replay the subject's events from the log through the protocol and print why each
    decision in force stands."""
    from services.ctcae_grader.explain import explain
    from services.ctcae_grader.ledger import SubjectLedger, replay_into
    from shared.kafka import read_subject_events
    from shared.protocol import study_protocol
    from shared.reference_ranges import load_reference_ranges
    from shared.topics import CLINICAL_EVENTS

    settings = get_settings()
    protocol = study_protocol(settings.study_id, settings.protocol_file)
    ranges = load_reference_ranges(settings.reference_ranges_file)  # as the grader grades
    topic = settings.topic(CLINICAL_EVENTS)
    ledgers: dict[str, SubjectLedger] = {}
    for raw in asyncio.run(read_subject_events(settings, topic, subject_id)):
        replay_into(ledgers, raw, protocol, ranges)
    ledger = ledgers.get(subject_id)
    if ledger is None or ledger.state is None:
        print(f"no clinical events for subject {subject_id} in {topic}", file=sys.stderr)
        return 1
    print(json.dumps(explain(protocol, ledger.state), indent=2, default=str, ensure_ascii=False))
    return 0


def rebuild_read_models() -> int:
    """Empty the DSMB read models and project the whole event log again."""
    from services.alerts.db import create_engine, upgrade_schema
    from services.dsmb.rebuild import rebuild

    settings = get_settings()
    upgrade_schema(settings.database_url)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            result = await rebuild(settings, engine)
        finally:
            await engine.dispose()
        rate = result.events / result.seconds if result.seconds else 0.0
        print(
            f"rebuilt the DSMB read models from {result.events} events ({result.rows} rows, "
            f"{result.undecodable} undecodable skipped) in {result.seconds:.1f} s "
            f"({rate:,.0f} events/s)"
        )

    asyncio.run(run())
    return 0


def dsmb_report(cutoff: str, out_dir: str) -> int:
    """Write the DSMB report as of `cutoff` into `out_dir` and print its path."""
    from pathlib import Path

    from services.alerts.db import upgrade_schema
    from services.dsmb.report import report_from_database
    from services.dsmb.rollups import CutoffError, parse_cutoff
    from shared.protocol import study_protocol

    settings = get_settings()
    try:
        instant = parse_cutoff(cutoff)
    except CutoffError as error:
        print(f"error: --cutoff: {error}", file=sys.stderr)
        return 2
    upgrade_schema(settings.database_url)
    protocol = study_protocol(settings.study_id, settings.protocol_file)
    report = asyncio.run(
        report_from_database(settings.database_url, instant, protocol, Path(out_dir))
    )
    print(report.html)
    return 0


def import_command(
    paths: list[str],
    ingest_url: str | None,
    offset: str | None,
    errors: str | None,
    token: str | None,
) -> int:
    """Send files to ingest; exit 0 if every row/message was accepted, 3 if some were rejected
    (see the error report), 2 if a file could not be imported (or no token was given)."""
    import os
    from pathlib import Path

    from services.ingest.interop.importer import TOKEN_ENV, ImportFailed, import_files

    settings = get_settings()
    url = ingest_url or f"http://{settings.bind_host}:{settings.ingest_port}"
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        print(
            f"error: no token: set {TOKEN_ENV} (or pass --token) to the sending system's token",
            file=sys.stderr,
        )
        return 2
    try:
        results = import_files(
            [Path(p) for p in paths], url, offset, Path(errors) if errors else None, token=token
        )
    except ImportFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for r in results:
        print(
            f"{r.path.name}: {r.units} sent, {r.accepted} accepted, {len(r.rejected)} rejected, "
            f"{r.skipped} left out (not monitored), {r.seconds:.1f} s ({r.rate:,.0f}/s)"
        )
    return 3 if any(r.rejected for r in results) else 0


def add_dlq_parser(commands: argparse._SubParsersAction) -> None:
    """`dlq list` and `dlq replay` (services/ops/dlq.py)."""
    dlq = commands.add_parser("dlq", help="the dead letters: list them, replay them after a fix")
    actions = dlq.add_subparsers(dest="dlq_action", required=True)
    listing = actions.add_parser("list", help="the dead letters, oldest first")
    listing.add_argument("--service", help="only one service's (grader, alerts, dsmb-clinical...)")
    listing.add_argument("--json", action="store_true", help="as a JSON array")
    replay = actions.add_parser(
        "replay", help="publish dead letters again to the partition they came from"
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument("--service", help="those of one service (grader, dsmb-clinical...)")
    which.add_argument(
        "--offset",
        dest="offsets",
        action="append",
        metavar="P:O",
        help="a dead letter's partition:offset on the dead-letter topic (repeatable)",
    )
    replay.add_argument("--reason-contains", metavar="TEXT", help="only those whose reason has it")
    replay.add_argument(
        "--include-undecodable",
        action="store_true",
        help="also messages that are no safetymon event (parked again, unless fixed upstream)",
    )
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="safetymon", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a synthetic 43-subject trial through the pipeline")
    demo.add_argument("--subjects", type=int, default=43)
    demo.add_argument("--cycles", type=int, default=4)
    demo.add_argument("--seed", type=int, default=5173246)

    serve_cmd = commands.add_parser("serve", help="run one service")
    serve_cmd.add_argument("service", choices=sorted(SERVICES))
    serve_cmd.add_argument("--port", type=int)

    grade_cmd = commands.add_parser(
        "grade",
        help="CTCAE v4.03 grade of one lab value, or of every row of a CSV file",
        usage="%(prog)s TEST VALUE UNIT [--lln X] [--uln X] [--baseline X] [--json]\n"
        "       %(prog)s IN.csv [-o OUT.csv] [--reference-ranges PATH]",
    )
    grade_cmd.add_argument(
        "inputs",
        nargs="+",
        metavar="IN.csv | TEST VALUE UNIT",
        help="a CSV file (columns lbtestcd or loinc, value, unit; optional lln, uln, baseline, "
        "sex, age, site_id, fasting), or one result: test (LBTESTCD, short name such as ANC, or "
        "LOINC), value (0.9, 1,5, <0.1), unit (10^9/L, /mm3, g/L, g/dL, U/L, umol/L, mg/dL...)",
    )
    grade_cmd.add_argument("--lln", type=float, help="lower limit of normal, same unit")
    grade_cmd.add_argument("--uln", type=float, help="upper limit of normal, same unit")
    grade_cmd.add_argument("--baseline", type=float, help="subject's baseline, same unit")
    grade_cmd.add_argument("--json", action="store_true", help="one JSON object per term")
    grade_cmd.add_argument(
        "-o", "--output", metavar="OUT.csv", help="where to write the graded file (default stdout)"
    )
    grade_cmd.add_argument(
        "--reference-ranges",
        metavar="PATH",
        help="reference range table for rows without lln and uln "
        "(default: REFERENCE_RANGES_FILE, else the shipped table)",
    )

    rules_cmd = commands.add_parser("rules", help="the study protocol's rules for a subject")
    rules_cmd.add_argument("action", choices=["explain"])
    rules_cmd.add_argument("subject", help="subject id, e.g. GZ01-005")

    boundary_cmd = commands.add_parser(
        "stopping-boundary", help="the protocol's toxicity stopping boundary, and a status"
    )
    boundary_cmd.add_argument("--events", type=int, help="toxicity events so far")
    boundary_cmd.add_argument("--evaluable", type=int, help="evaluable subjects so far")

    commands.add_parser("rebuild", help="rebuild the DSMB read models from the event log")
    report_cmd = commands.add_parser(
        "dsmb-report", help="the DSMB report (HTML, CSV, plots) as of a data cut-off"
    )
    report_cmd.add_argument(
        "--cutoff",
        required=True,
        help="events recorded up to: a date (the end of that day, UTC) or a date-time with offset",
    )
    report_cmd.add_argument("--out", required=True, help="directory to write the report into")

    import_cmd = commands.add_parser(
        "import",
        help="send SDTM (.csv, .xpt), HL7 v2 (.hl7) or FHIR (.json) files to ingest",
    )
    import_cmd.add_argument("files", nargs="+", metavar="FILE")
    import_cmd.add_argument(
        "--ingest-url", help="ingest's base URL (default http://BIND_HOST:INGEST_PORT)"
    )
    import_cmd.add_argument(
        "--utc-offset",
        metavar="+08:00",
        help="the sites' UTC offset for SDTM --DTC date-times that carry none",
    )
    import_cmd.add_argument(
        "--errors", metavar="DIR", help="where to write FILE.errors.csv (default: beside FILE)"
    )
    import_cmd.add_argument(
        "--token",
        help="the sending system's ingest token (default: SAFETYMON_TOKEN; prefer the variable: "
        "a command line is visible to other users of the machine)",
    )

    add_dlq_parser(commands)
    commands.add_parser("migrate", help="bring the database to the newest schema")
    commands.add_parser("create-topics", help="create the Kafka topics if missing")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service, args.port)
    if args.command == "grade":
        return grade(args, grade_cmd)
    if args.command == "stopping-boundary":
        return stopping_boundary(args.events, args.evaluable)
    if args.command == "rules":
        return explain_subject(args.subject)
    if args.command == "rebuild":
        return rebuild_read_models()
    if args.command == "dsmb-report":
        return dsmb_report(args.cutoff, args.out)
    if args.command == "import":
        return import_command(args.files, args.ingest_url, args.utc_offset, args.errors, args.token)
    if args.command == "dlq":
        from services.ops.dlq import run_command

        return run_command(args)
    if args.command == "migrate":
        from services.alerts.db import upgrade_schema

        upgrade_schema(get_settings().database_url)
        return 0
    if args.command == "create-topics":
        from shared.kafka import ensure_topics

        created = asyncio.run(ensure_topics(get_settings()))
        print("created:", ", ".join(created) or "none (all present)")
        return 0
    from services.demo.runner import run_demo

    return run_demo(subjects=args.subjects, cycles=args.cycles, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
