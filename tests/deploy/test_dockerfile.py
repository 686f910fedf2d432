"""The image (Dockerfile, .dockerignore): checked as text, since no Docker engine builds it here."""

import json
import os
import re
import tomllib
from pathlib import Path

from services.cli import SERVICES
from tests.deploy.support import (
    IMAGE_ONLY_ENV,
    PORT_SETTINGS,
    ROOT,
    SETTING_NAMES,
    answering,
    dockerfile_stages,
    image_env,
    run_check,
    setting_default,
)


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def arguments(instruction: str) -> list[str]:
    return [args for name, args in final_stage() if name == instruction]


def test_multi_stage_build_on_python_3_11_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    args = dict(argument.split("=", 1) for argument in _global_args() if "=" in argument)
    for stage in stages:
        base = stage[0][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), base)
        assert base.startswith("python:3.11") and "slim" in base, base
    # The runtime stage takes the virtualenv from the build stage, not the toolchain.
    assert any(name == "COPY" and "--from=build" in a for name, a in final_stage())


def _global_args() -> list[str]:
    """The arguments of the ARG instructions before the first FROM."""
    found = []
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.startswith("FROM"):
            break
        if raw.startswith("ARG "):
            found.append(raw[4:].strip())
    return found


def test_runs_as_the_unprivileged_user_10001() -> None:
    users = arguments("USER")
    assert users, "the runtime stage sets USER"
    assert users[-1].split(":")[0] == "10001"
    assert any("--uid 10001" in a for name, a in final_stage() if name == "RUN")


def test_entrypoint_is_the_safetymon_command_and_serves_ingest_by_default() -> None:
    assert json.loads(arguments("ENTRYPOINT")[-1]) == ["safetymon"]
    assert json.loads(arguments("CMD")[-1]) == ["serve", "ingest"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["safetymon"] == "services.cli:main"
    assert "ingest" in SERVICES


def test_exposes_every_service_port_and_mllp() -> None:
    exposed = {int(port) for line in arguments("EXPOSE") for port in line.split()}
    wanted = {setting_default(name) for name in PORT_SETTINGS.values()}
    wanted.add(setting_default("MLLP_PORT"))
    assert exposed == wanted


def healthcheck_command() -> list[str]:
    (healthcheck,) = arguments("HEALTHCHECK")
    return json.loads(healthcheck[healthcheck.index(" CMD ") + 5 :])


def test_healthcheck_asks_live_on_the_port_of_an_environment_variable() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    # The default port is the default command's (serve ingest).
    assert image_env()["HEALTHCHECK_PORT"] == str(setting_default("INGEST_PORT"))
    with answering({"/live": 200}) as port:
        assert run_check(command, {"HEALTHCHECK_PORT": str(port)}) == 0
    with answering({"/live": 503}) as port:
        assert run_check(command, {"HEALTHCHECK_PORT": str(port)}) != 0
    with answering({"/health": 200}) as port:  # /live is not found: unhealthy
        assert run_check(command, {"HEALTHCHECK_PORT": str(port)}) != 0


def test_environment_is_settings_or_the_interpreters() -> None:
    env = image_env()
    unknown = set(env) - SETTING_NAMES - IMAGE_ONLY_ENV
    assert not unknown, f"ENV names no setting of shared/settings.py: {sorted(unknown)}"
    # Containers listen on every interface, and the study's files are the copies in the image.
    assert env["BIND_HOST"] == "0.0.0.0"
    copied = copied_paths()
    for name in ("PROTOCOL_FILE", "INTEROP_FILE"):
        assert any(env[name].startswith(target) for target in copied.values()), name
    for name in ("ENROLMENT_MAP_FILE", "USERS_FILE", "SESSION_SECRET", "SMTP_PASSWORD",
                 "DATABASE_URL", "INGEST_SENDERS_FILE", "KAFKA_SASL_PASSWORD"):  # fmt: skip
        assert name not in env, f"{name} is given at run time, never baked in"


def copied_paths() -> dict[str, str]:
    """COPY source -> destination of the runtime stage (the build context's files only)."""
    copies = {}
    for name, args in final_stage():
        if name == "COPY" and "--from" not in args:
            *sources, destination = args.split()
            for source in sources:
                copies[source] = destination
    return copies


def test_image_holds_no_enrolment_map_and_no_secrets() -> None:
    for source in copied_paths():
        assert not source.endswith(".csv") and "enrolment" not in source, source
        assert ".env" not in source
    # The interop files are copied by a pattern that matches no enrolment map.
    interop = [s for s in copied_paths() if s.startswith("interop/")]
    assert interop == ["interop/*.yaml"]


# ---------------------------------------------------------------------------------------------
# .dockerignore: the build context
# ---------------------------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
            if pattern.startswith("/", i):
                regex += "/?"
                i += 1
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex += pattern[i : end + 1]
            i = end + 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.compile(regex)


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path (or a directory above it) decides."""
    parents = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
    included = True
    for exclude, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in parents):
            included = not exclude
    return included


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        rules.append((exclude, _pattern(line.lstrip("!").strip("/"))))
    return rules


def test_build_context_has_what_the_image_copies_and_nothing_private() -> None:
    rules = dockerignore_rules()
    files = repository_files()
    wanted = ["pyproject.toml", "README.md", "shared/settings.py", "services/cli.py",
              "protocols/NCT05173246.yaml", "interop/NCT05173246.yaml",
              "deploy/users.example.yaml", "deploy/routing.example.yaml"]  # fmt: skip
    for path in wanted:
        assert in_context(path, rules), f"{path} is copied by the Dockerfile but ignored"
    for path in files:
        private = (
            (path.endswith(".csv") and path.startswith("interop/"))
            or Path(path).name.startswith(".env")
            or path.startswith(("tests/", "docs/", "scripts/"))
        )  # fmt: skip
        if private:
            assert not in_context(path, rules), f"{path} would be sent to the Docker build"
    for path in ("interop/NCT05173246.enrolment.csv", ".env", "shared/.env",
                 ".venv/bin/python", ".local/kafka/data/meta.properties", ".git/config",
                 "services/__pycache__/cli.cpython-311.pyc"):  # fmt: skip
        assert not in_context(path, rules), f"{path} would be sent to the Docker build"


def repository_files() -> list[str]:
    """The working tree's files, less the virtualenv, local servers' data and git's store."""
    skipped = {".venv", ".local", ".git", "node_modules", "__pycache__", "test-artifacts"}
    found = []
    for directory, subdirectories, names in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in skipped]
        found += [str((Path(directory) / name).relative_to(ROOT)) for name in names]
    return found
