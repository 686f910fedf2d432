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
    )
    return 0


def grade(
    test: str,
    value: float,
    unit: str,
    lln: float | None,
    uln: float | None,
    baseline: float | None,
    as_json: bool,
) -> int:
    from shared.ctcae import References, grade_lab
    from shared.labs import LAB_DEFINITIONS, LabTest, UnitError, to_si

    try:
        lab = LabTest(test.upper())
        si = [None if v is None else to_si(lab, v, unit) for v in (value, lln, uln, baseline)]
    except (ValueError, UnitError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = grade_lab(lab, si[0], References(lln=si[1], uln=si[2], baseline=si[3]))
    for result in results:
        if as_json:
            print(json.dumps(result.model_dump(mode="json")))
        else:
            shown = "undecided" if result.grade is None else str(result.grade)
            print(
                f"{result.term}: grade {shown} ({LAB_DEFINITIONS[lab].si_unit}) - {result.reason}"
            )
    return 0


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

    grade_cmd = commands.add_parser("grade", help="CTCAE v4.03 grade of one lab value")
    grade_cmd.add_argument("test", help="ANC, PLT, HGB, ALT, AST, TBIL or CREAT")
    grade_cmd.add_argument("value", type=float)
    grade_cmd.add_argument("unit", help="e.g. 10^9/L, /mm3, g/L, g/dL, U/L, umol/L, mg/dL")
    grade_cmd.add_argument("--lln", type=float, help="lower limit of normal, same unit")
    grade_cmd.add_argument("--uln", type=float, help="upper limit of normal, same unit")
    grade_cmd.add_argument("--baseline", type=float, help="subject's baseline, same unit")
    grade_cmd.add_argument("--json", action="store_true")

    commands.add_parser("migrate", help="bring the alert database to the newest schema")
    commands.add_parser("create-topics", help="create the Kafka topics if missing")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service, args.port)
    if args.command == "grade":
        return grade(args.test, args.value, args.unit, args.lln, args.uln, args.baseline, args.json)
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
