"""Every benchmark, one after the other, each in its own process; a table of all figures at the
end and one JSON document of them (`make bench`).

    .venv/bin/python bench/run.py [--smoke] [--only NAME ...] [--out DIR]

Needs the local broker and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL; `make bench`
starts them). A full run writes bench/results/latest.json (committed, so the figures travel with
the code) and one file per benchmark beside it; with `--only`, latest.json keeps the other
benchmarks' figures from the last run (each document has its own measured_at and commit);
`--smoke` runs each at a tiny size, into a temporary directory unless `--out` is given, to prove
the suite still runs.
Exit 0 when every benchmark ran; a target missed is printed, not a failure.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import Figure, host, table  # noqa: E402

# name -> script; each takes --smoke and --json PATH and reports through bench/report.py.
BENCHMARKS = {
    "core": "bench_grading.py",
    "grader": "bench_grader_kafka.py",
    "latency": "bench_latency.py",
    "rebuild": "bench_rebuild.py",
    "memory": "bench_grader_memory.py",
}
RESULTS = ROOT / "bench" / "results"


def run_one(name: str, out: Path, smoke: bool) -> dict | None:
    script = ROOT / "bench" / BENCHMARKS[name]
    target = out / f"{name}.json"
    command = [sys.executable, str(script), "--json", str(target), *(["--smoke"] if smoke else [])]
    print(f"\n### {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not target.exists():
        print(f"### {name}: FAILED (exit {done.returncode}) after {seconds:.0f} s", flush=True)
        return None
    print(f"### {name}: done in {seconds:.0f} s", flush=True)
    return json.loads(target.read_text()) | {"seconds": round(seconds, 1)}


def earlier(out: Path, smoke: bool) -> dict[str, dict]:
    """The documents of the last combined run in `out` (of the same size), by benchmark name:
    a run of some benchmarks (--only) keeps the others' latest figures beside its own."""
    try:
        previous = json.loads((out / "latest.json").read_text())
    except (OSError, ValueError):
        return {}
    if previous.get("smoke") != smoke:
        return {}
    by_script = {script: name for name, script in BENCHMARKS.items()}
    documents = {}
    for document in previous.get("benchmarks", []):
        name = by_script.get((document.get("command") or [""])[0])
        if name is not None:
            documents[name] = document | {"name": name}
    return documents


def summary(documents: list[dict]) -> str:
    lines = []
    for document in documents:
        figures = [Figure(**_fields(f)) for f in document["figures"]]
        lines.append(table(document["benchmark"], figures))
    return "\n".join(lines)


def _fields(figure: dict) -> dict:
    return {k: v for k, v in figure.items() if k not in ("ratio", "met", "target_text")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="each benchmark at a tiny size")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="just these")
    parser.add_argument("--out", type=Path, help="where the JSON goes")
    args = parser.parse_args()
    out = args.out or (Path(tempfile.mkdtemp(prefix="safetymon-bench-")) if args.smoke else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(BENCHMARKS)
    kept = {n: d for n, d in earlier(out, args.smoke).items() if n not in names}
    documents, failed = dict(kept), []
    for name in names:
        document = run_one(name, out, args.smoke)
        if document is None:
            failed.append(name)
        else:
            documents[name] = document | {"name": name}
    ordered = [documents[n] for n in BENCHMARKS if n in documents]
    print("\n" + summary(ordered))
    if kept:
        print(f"\n(kept from earlier runs, each with its measured_at: {', '.join(kept)})")
    combined = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "host": host(),
        "benchmarks": ordered,
        "kept_from_earlier_runs": sorted(kept),
        "failed": failed,
    }
    (out / "latest.json").write_text(json.dumps(combined, indent=2) + "\n")
    print(
        f"\nfigures: {out / 'latest.json'}" + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
