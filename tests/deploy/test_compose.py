"""docker-compose.yml: valid Compose, pinned images, and every safetymon container configured
with settings the services know, everything each needs, in the right order."""

import json
import re

import pytest
import yaml

from tests.deploy.support import (
    PORT_SETTINGS,
    REQUIRED,
    ROOT,
    SCHEMAS,
    SETTING_NAMES,
    answering,
    command_of,
    image_env,
    run_check,
    setting_default,
)

try:
    import jsonschema
except ImportError:  # pragma: no cover - the dev extra installs it
    jsonschema = None

INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def compose() -> dict:
    # PyYAML resolves the file's anchors and `<<` merge keys, as Compose does.
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolated(value: str) -> str:
    """The value as Compose runs it with nothing set but the required variables (`${X:?}`)."""
    return INTERPOLATION.sub(
        lambda m: m[3] if m[2] == "-" else f"<{m[1]}>" if m[2] == "?" else "", value
    )


def safetymon_services() -> dict[str, dict]:
    """The services running the safetymon image (built from this repository's Dockerfile)."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_valid_against_the_compose_specification() -> None:
    if jsonschema is None:
        pytest.fail("jsonschema is missing: pip install -e '.[dev]' (or pip install jsonschema)")
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_the_validation_catches_a_misspelt_key() -> None:
    """The vendored schema is the strict one (no unknown keys), so the check above means
    something."""
    if jsonschema is None:
        pytest.fail("jsonschema is missing: pip install -e '.[dev]' (or pip install jsonschema)")
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    broken = compose()
    broken["services"]["grader"]["helthcheck"] = broken["services"]["grader"].pop("healthcheck")
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in compose()["services"].items():
        image = interpolated(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        assert re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"


def test_the_safetymon_services_share_one_image_built_here() -> None:
    services = safetymon_services()
    assert {command_of(s["command"]) for s in services.values()} == set(REQUIRED)
    assert len({s["image"] for s in services.values()}) == 1
    assert {s["build"]["context"] for s in services.values()} == {"."}


def test_every_variable_given_to_safetymon_is_a_setting() -> None:
    for name, service in safetymon_services().items():
        unknown = set(environment(service)) - SETTING_NAMES
        assert not unknown, f"{name}: not settings of shared/settings.py: {sorted(unknown)}"


def test_every_service_gets_the_settings_it_needs() -> None:
    baked = set(image_env())
    for name, service in safetymon_services().items():
        command = command_of(service["command"])
        given = set(environment(service)) | baked
        missing = REQUIRED[command] - given
        assert not missing, f"{name} ({command}) lacks {sorted(missing)}"
        env = environment(service)
        if "DATABASE_URL" in REQUIRED[command]:
            assert env["DATABASE_URL"].startswith("postgresql+asyncpg://safetymon:")
            assert interpolated(env["DATABASE_URL"]).endswith("@postgres:5432/safetymon")
        if "KAFKA_BOOTSTRAP_SERVERS" in REQUIRED[command]:
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_secrets_are_never_written_in_the_file() -> None:
    """Secret values come from the environment of `docker compose` (required, no default)."""
    for name, service in compose()["services"].items():
        for key, value in environment(service).items():
            if re.search(r"SECRET|PASSWORD", key) or key == "DATABASE_URL":
                variables = INTERPOLATION.findall(value)
                assert variables, f"{name}: {key} is written in the file"
                for _variable, operator, _message in variables:
                    assert operator == "?", f"{name}: {key} must be required, without a default"


def test_files_named_by_settings_are_mounted_secrets() -> None:
    declared = compose()["secrets"]
    for name, service in safetymon_services().items():
        env = environment(service)
        mounted = {f"/run/secrets/{secret}": secret for secret in service.get("secrets", [])}
        for key in ("ENROLMENT_MAP_FILE", "USERS_FILE", "INGEST_SENDERS_FILE"):
            if key in env:
                assert env[key] in mounted, f"{name}: {key}={env[key]} is not a mounted secret"
                secret = declared[mounted[env[key]]]
                default = interpolated(secret["file"])
                assert (ROOT / default).is_file(), f"{name}: {default} does not exist"


def test_start_up_order() -> None:
    services = compose()["services"]
    for name, service in safetymon_services().items():
        command = command_of(service["command"])
        needs = service.get("depends_on", {})
        if "KAFKA_BOOTSTRAP_SERVERS" in REQUIRED[command]:
            assert needs["kafka"]["condition"] == "service_healthy", name
            if command != "create-topics":
                assert needs["topics"]["condition"] == "service_completed_successfully", name
        if "DATABASE_URL" in REQUIRED[command]:
            assert needs["postgres"]["condition"] == "service_healthy", name
            if command != "migrate":
                assert needs["migrate"]["condition"] == "service_completed_successfully", name
        for dependency, condition in needs.items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
    for one_shot in ("topics", "migrate"):
        assert services[one_shot]["restart"] == "no"


def test_each_service_listens_publishes_and_is_checked_on_its_own_port() -> None:
    for name, service in safetymon_services().items():
        command = command_of(service["command"])
        if command not in PORT_SETTINGS:
            continue
        env = environment(service)
        port = int(env.get(PORT_SETTINGS[command], setting_default(PORT_SETTINGS[command])))
        published = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
        assert port in published, f"{name}: port {port} not published"
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), name
        test = service["healthcheck"]["test"]
        assert any(f"http://127.0.0.1:{port}/health" in part for part in test), f"{name}: {test}"
    ingest = environment(compose()["services"]["ingest"])
    mllp = int(ingest.get("MLLP_PORT", setting_default("MLLP_PORT")))
    assert f"127.0.0.1:{mllp}:{mllp}" in compose()["services"]["ingest"]["ports"]


def test_containers_run_unprivileged() -> None:
    for name, service in safetymon_services().items():
        assert service["user"].split(":")[0] == "10001", name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_kafka_runs_kraft_and_advertises_what_the_services_use() -> None:
    kafka = compose()["services"]["kafka"]
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in advertised
    # Tools on the host use the settings' default bootstrap address.
    host_port = str(setting_default("KAFKA_BOOTSTRAP_SERVERS")).rsplit(":", 1)[1]
    assert f"PLAINTEXT_HOST://localhost:{host_port}" in advertised
    assert f"127.0.0.1:{host_port}:{host_port}" in kafka["ports"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_monitoring_mounts_the_prometheus_and_grafana_files() -> None:
    services = compose()["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_prometheus_scrapes_the_services_where_compose_runs_them() -> None:
    path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing (compose mounts deploy/prometheus/)")
    config = yaml.safe_load(path.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    services = compose()["services"]
    for command, setting in PORT_SETTINGS.items():
        port = environment(services[command]).get(setting, setting_default(setting))
        assert f"{command}:{port}" in targets, f"prometheus.yml does not scrape {command}:{port}"


def test_service_health_checks_fail_unless_health_answers_200() -> None:
    """Run each service's check against a stand-in on a free port: healthy on 200 from /health,
    unhealthy on 503 (Kafka or the database unreachable)."""
    for name, service in safetymon_services().items():
        command = command_of(service["command"])
        if command not in PORT_SETTINGS:
            continue
        env = environment(service)
        port = str(env.get(PORT_SETTINGS[command], setting_default(PORT_SETTINGS[command])))
        test = service["healthcheck"]["test"]
        for status, healthy in ((200, True), (503, False)):
            with answering({"/health": status}) as free:
                moved = [part.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{free}/") for part in test]
                assert (run_check(moved) == 0) is healthy, f"{name}: /health {status}"
