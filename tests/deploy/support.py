"""What the deployment checks share: the repository's files, the settings the services read, the
image's environment, the settings each command needs, and kustomize."""

import contextlib
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
K8S = ROOT / "deploy" / "k8s"

# Every environment variable the services read: the settings' validation aliases.
SETTINGS = {field.validation_alias: field for field in Settings.model_fields.values()}
SETTING_NAMES = frozenset(SETTINGS)

# The port setting of each service (`safetymon serve X` listens on it).
PORT_SETTINGS = {
    "ingest": "INGEST_PORT",
    "grader": "GRADER_PORT",
    "alerts": "ALERTS_PORT",
    "dsmb": "DSMB_PORT",
}

# What each command cannot run without, beyond the settings' defaults: the defaults of the file
# settings name files in the source tree, which the image's wheel does not carry (the image sets
# PROTOCOL_FILE and INTEROP_FILE itself), the default database is a SQLite file under the working
# directory (read-only in the containers), the alert service refuses to start without a users
# file and a session secret, and ingest without its senders file.
REQUIRED = {
    "ingest": {"KAFKA_BOOTSTRAP_SERVERS", "BIND_HOST", "PROTOCOL_FILE", "INTEROP_FILE",
               "ENROLMENT_MAP_FILE", "INGEST_SENDERS_FILE"},
    "grader": {"KAFKA_BOOTSTRAP_SERVERS", "BIND_HOST", "PROTOCOL_FILE"},
    "alerts": {"KAFKA_BOOTSTRAP_SERVERS", "BIND_HOST", "DATABASE_URL", "USERS_FILE",
               "SESSION_SECRET", "SMTP_HOST", "SMTP_PORT"},
    "dsmb": {"KAFKA_BOOTSTRAP_SERVERS", "BIND_HOST", "DATABASE_URL", "PROTOCOL_FILE"},
    "create-topics": {"KAFKA_BOOTSTRAP_SERVERS"},
    "migrate": {"DATABASE_URL"},
}  # fmt: skip

# Environment variables of the image that are not settings: the interpreter's and the
# HEALTHCHECK's.
IMAGE_ONLY_ENV = {"PATH", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
                  "MPLCONFIGDIR", "HEALTHCHECK_PORT"}  # fmt: skip


def command_of(args: list[str]) -> str:
    """`serve X` -> X; any other safetymon command -> its name."""
    return args[1] if args[:1] == ["serve"] else args[0]


def setting_default(name: str) -> object:
    field = SETTINGS[name]
    return field.get_default(call_default_factory=True)


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    result = []
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


@functools.cache
def image_env() -> dict[str, str]:
    """ENV of the image's final stage (KEY=VALUE form)."""
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_stages()[-1]:
        if instruction == "ENV":
            for match in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', arguments):
                env[match[1]] = match[2].strip('"')
    return env


# ---------------------------------------------------------------------------------------------
# Kustomize
# ---------------------------------------------------------------------------------------------

INSTALL_KUBECTL = (
    "kubectl (or kustomize) is needed to render deploy/k8s. Debian has no kubectl package: "
    "install the Kubernetes project's kubectl, or build kustomize from the Go module proxy: "
    "`GOFLAGS=-mod=mod go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0` (puts "
    "~/go/bin/kustomize)."
)


def kustomize_command() -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = shutil.which("kustomize") or shutil.which(str(Path.home() / "go/bin/kustomize"))
    if kustomize:
        return [kustomize, "build"]
    pytest.fail(INSTALL_KUBECTL)


@functools.cache
def render(directory: str) -> tuple[dict, ...]:
    """The objects `kubectl kustomize deploy/k8s/<directory>` renders."""
    result = subprocess.run(
        [*kustomize_command(), str(K8S / directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kustomize {directory} failed:\n{result.stderr}")
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


def of_kind(objects: tuple[dict, ...], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: tuple[dict, ...], kind: str, name: str) -> dict:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


# ---------------------------------------------------------------------------------------------
# Health checks, run for real against a stand-in server
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def answering(statuses: dict[str, int]) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering GET `path` with `statuses[path]` (404 otherwise);
    yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_check(command: list[str], env: dict[str, str] | None = None) -> int:
    """Exit status of a container health check command run here (`python` is this one)."""
    if command[0] == "CMD":
        command = command[1:]
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    result = subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, timeout=30, check=False
    )
    return result.returncode
