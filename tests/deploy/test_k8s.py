"""deploy/k8s: the base and the example overlay render, every object is valid against the
Kubernetes API's schema (or its CRD's), and what the services read is what they are given."""

import copy
import functools
import json

import pytest

from shared.topics import ALL_TOPICS, TOPIC_CONFIGS
from tests.deploy.support import (
    K8S,
    PORT_SETTINGS,
    REQUIRED,
    ROOT,
    SCHEMAS,
    SETTING_NAMES,
    command_of,
    image_env,
    of_kind,
    render,
    setting_default,
)

try:
    import jsonschema
    import kubernetes_validate
except ImportError:  # pragma: no cover - the dev extra installs both
    jsonschema = kubernetes_validate = None

RENDERED = ["base", "overlays/example"]
# Kubernetes versions the manifests are checked against: the oldest still maintained by the
# main providers, and a recent one.
KUBERNETES_VERSIONS = ["1.30", "1.34"]
# Custom resources and the vendored schema of each (tests/deploy/schemas/README.md).
CRDS = {
    ("kafka.strimzi.io/v1", "Kafka"): "kafka.strimzi.io_v1_Kafka.json",
    ("kafka.strimzi.io/v1", "KafkaNodePool"): "kafka.strimzi.io_v1_KafkaNodePool.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): "kafka.strimzi.io_v1_KafkaTopic.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_ServiceMonitor.json",
}
SECRET_KEYS = {"safetymon-secrets": {"database-url", "session-secret", "smtp-username",
                                     "smtp-password"}}  # fmt: skip
FILE_SECRETS = {"safetymon-enrolment": "enrolment.csv", "safetymon-users": "users.yaml",
                "safetymon-senders": "senders.yaml"}  # fmt: skip
CONFIG_COPIES = {
    "config/protocols/NCT05173246.yaml": "protocols/NCT05173246.yaml",
    "config/interop/NCT05173246.yaml": "interop/NCT05173246.yaml",
    "config/routing.example.yaml": "deploy/routing.example.yaml",
}


def need_validators() -> None:
    if jsonschema is None or kubernetes_validate is None:
        pytest.fail(
            "jsonschema and kubernetes-validate are missing: pip install -e '.[dev]' "
            "(or pip install jsonschema kubernetes-validate)"
        )


# ---------------------------------------------------------------------------------------------
# Rendering and schemas
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", RENDERED)
def test_renders(directory: str) -> None:
    kinds = {obj["kind"] for obj in render(directory)}
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"} <= kinds  # fmt: skip


def test_the_example_overlay_adds_kafka_by_strimzi() -> None:
    kinds = {obj["kind"] for obj in render("overlays/example")}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic"} <= kinds
    assert not {"Kafka", "KafkaNodePool", "KafkaTopic"} & {o["kind"] for o in render("base")}


def test_no_secret_is_committed() -> None:
    for directory in RENDERED:
        assert not of_kind(render(directory), "Secret"), f"{directory} renders a Secret"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("directory", RENDERED)
def test_kubernetes_objects_are_valid(directory: str, version: str) -> None:
    """Strict: an unknown field is an error, as with `kubectl apply --validate=strict`."""
    need_validators()
    checked = 0
    for obj in render(directory):
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue
        problem = None
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.path))
            problem = f"{obj['kind']} {obj['metadata']['name']}: {path}: {error.message}"
        except kubernetes_validate.SchemaNotFoundError:
            problem = f"no schema for {obj['apiVersion']} {obj['kind']} in Kubernetes {version}"
        if problem:
            pytest.fail(problem)
        checked += 1
    assert checked >= 15


@functools.cache
def crd_validator(filename: str):
    schema = strict(json.loads((SCHEMAS / "crds" / filename).read_text()))
    return jsonschema.Draft202012Validator(schema)


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields forbidden: the API server drops (prunes) them silently,
    which would hide a misspelt field."""
    schema = copy.deepcopy(schema)

    def walk(node: object, top: bool = False) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
                and not top  # apiVersion, kind, metadata, spec, status
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema, top=True)
    schema.setdefault("required", [])
    schema["properties"]["metadata"] = {"type": "object", "required": ["name"]}
    return schema


@pytest.mark.parametrize("directory", RENDERED)
def test_custom_resources_are_valid_against_their_crds(directory: str) -> None:
    need_validators()
    for obj in render(directory):
        key = (obj["apiVersion"], obj["kind"])
        if obj["apiVersion"].split("/")[0].endswith((".strimzi.io", ".coreos.com")):
            assert key in CRDS, f"{key} has no vendored CRD schema"
        if key not in CRDS:
            continue
        errors = list(crd_validator(CRDS[key]).iter_errors(obj))
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )


def test_the_crd_check_catches_a_misspelt_field() -> None:
    need_validators()
    (topic, *_) = of_kind(render("overlays/example"), "KafkaTopic")
    broken = copy.deepcopy(topic)
    broken["spec"]["partition"] = broken["spec"].pop("partitions")
    assert not crd_validator(CRDS[("kafka.strimzi.io/v1", "KafkaTopic")]).is_valid(broken)


# ---------------------------------------------------------------------------------------------
# Deployments
# ---------------------------------------------------------------------------------------------


def deployments(directory: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in of_kind(render(directory), "Deployment")}


def configmap(directory: str, name: str) -> dict:
    """A generated ConfigMap, by its name before kustomize's hash suffix."""
    (found,) = [
        cm
        for cm in of_kind(render(directory), "ConfigMap")
        if cm["metadata"]["name"].rsplit("-", 1)[0] == name
    ]
    return found


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def environment(directory: str, deployment: dict) -> dict[str, object]:
    """Name -> value (or valueFrom) of the container's environment, envFrom ConfigMaps included."""
    env: dict[str, object] = {}
    configmaps = {cm["metadata"]["name"]: cm for cm in of_kind(render(directory), "ConfigMap")}
    for source in container(deployment).get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container(deployment).get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


@pytest.mark.parametrize("directory", RENDERED)
def test_the_four_services_run_from_the_one_image(directory: str) -> None:
    found = deployments(directory)
    assert set(found) == set(PORT_SETTINGS)
    images = {container(d)["image"] for d in found.values()}
    assert len(images) == 1
    (image,) = images
    assert ":" in image and not image.endswith(":latest"), image
    for name, deployment in found.items():
        assert command_of(container(deployment)["args"]) == name
        assert "command" not in container(deployment), "the image's ENTRYPOINT is safetymon"


@pytest.mark.parametrize("directory", RENDERED)
def test_every_variable_is_a_setting_and_secrets_come_from_the_secret(directory: str) -> None:
    for name, deployment in deployments(directory).items():
        env = environment(directory, deployment)
        unknown = set(env) - SETTING_NAMES
        assert not unknown, f"{name}: not settings of shared/settings.py: {sorted(unknown)}"
        for key, value in env.items():
            if isinstance(value, dict):
                ref = value["secretKeyRef"]
                assert ref["key"] in SECRET_KEYS[ref["name"]], f"{name}: {key}"
            if "SECRET" in key or "PASSWORD" in key or key == "DATABASE_URL":
                assert isinstance(value, dict) and "secretKeyRef" in value, (
                    f"{name}: {key} must come from a Secret"
                )


@pytest.mark.parametrize("directory", RENDERED)
def test_every_service_gets_the_settings_it_needs(directory: str) -> None:
    baked = set(image_env())
    for name, deployment in deployments(directory).items():
        env = environment(directory, deployment)
        missing = REQUIRED[name] - set(env) - baked
        assert not missing, f"{name} lacks {sorted(missing)}"
        # Required secrets are required keys; only the SMTP login may be absent.
        for key, value in env.items():
            if isinstance(value, dict) and key in REQUIRED[name]:
                assert not value["secretKeyRef"].get("optional", False), f"{name}: {key}"


@pytest.mark.parametrize("directory", RENDERED)
def test_files_named_by_settings_are_mounted(directory: str) -> None:
    for name, deployment in deployments(directory).items():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
        env = environment(directory, deployment)
        for key in ("PROTOCOL_FILE", "INTEROP_FILE", "ENROLMENT_MAP_FILE", "USERS_FILE",
                    "ROUTING_FILE", "INGEST_SENDERS_FILE"):  # fmt: skip
            if key not in env:
                continue
            path = str(env[key])
            directory_, _, filename = path.rpartition("/")
            assert directory_ in mounts, f"{name}: {key}={path} is in no mounted volume"
            mount = mounts[directory_]
            assert mount.get("readOnly") is True, f"{name}: {directory_} is writable"
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                data = {
                    cm["metadata"]["name"]: cm["data"]
                    for cm in of_kind(render(directory), "ConfigMap")
                }[volume["configMap"]["name"]]
                assert filename in data, f"{name}: {key}: no key {filename} in the ConfigMap"
            else:
                secret = volume["secret"]["secretName"]
                assert FILE_SECRETS[secret] == filename, f"{name}: {key}: {secret}"


@pytest.mark.parametrize("directory", RENDERED)
def test_probes_ports_resources_and_security(directory: str) -> None:
    for name, deployment in deployments(directory).items():
        pod = deployment["spec"]["template"]["spec"]
        main = container(deployment)
        env = environment(directory, deployment)
        port = int(env.get(PORT_SETTINGS[name], setting_default(PORT_SETTINGS[name])))
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        assert ports["http"] == port, f"{name}: listens on {port}"
        if name == "ingest":
            assert ports["mllp"] == int(env.get("MLLP_PORT", setting_default("MLLP_PORT")))

        for probe, path in (("readinessProbe", "/health"), ("livenessProbe", "/live"),
                            ("startupProbe", "/live")):  # fmt: skip
            check = main[probe]["httpGet"]
            assert (check["path"], check["port"]) == (path, "http"), f"{name}: {probe}"

        resources = main["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name

        context = main["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        pod_context = pod["securityContext"]
        assert pod_context["runAsNonRoot"] is True, name
        assert pod_context["runAsUser"] == 10001, name
        assert pod_context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name

        tmp = [m for m in main["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp, f"{name}: /tmp is not mounted (the root filesystem is read-only)"
        volume = {v["name"]: v for v in pod["volumes"]}[tmp[0]["name"]]
        assert "emptyDir" in volume, name


@pytest.mark.parametrize("directory", RENDERED)
def test_services_and_disruption_budgets_select_the_deployments(directory: str) -> None:
    objects = render(directory)
    for name, deployment in deployments(directory).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (service,) = [s for s in of_kind(objects, "Service") if s["metadata"]["name"] == name]
        assert service["spec"]["selector"].items() <= labels.items(), name
        http = {p["name"]: p for p in service["spec"]["ports"]}["http"]
        assert http["targetPort"] == "http", name
        (budget,) = [b for b in of_kind(objects, "PodDisruptionBudget")
                     if b["metadata"]["name"] == name]  # fmt: skip
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), name


# ---------------------------------------------------------------------------------------------
# Partitions, topics, Kafka
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", RENDERED)
def test_grader_autoscaling_stops_at_the_partition_count(directory: str) -> None:
    env = configmap(directory, "safetymon-env")["data"]
    partitions = int(env.get("TOPIC_PARTITIONS", setting_default("TOPIC_PARTITIONS")))
    assert partitions == setting_default("TOPIC_PARTITIONS"), "the comments say 6"
    (hpa,) = of_kind(render(directory), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "grader"}  # fmt: skip
    assert hpa["spec"]["maxReplicas"] == partitions
    assert hpa["spec"]["minReplicas"] <= partitions
    assert "replicas" not in deployments(directory)["grader"]["spec"], "the HPA sets them"


def test_kafka_topics_are_those_of_shared_topics() -> None:
    directory = "overlays/example"
    env = configmap(directory, "safetymon-env")["data"]
    namespace = env.get("TOPIC_NAMESPACE", "")
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(render(directory), "KafkaTopic")}
    assert set(topics) == {namespace + name for name in ALL_TOPICS}
    for name in ALL_TOPICS:
        spec = topics[namespace + name]
        assert spec["partitions"] == int(env["TOPIC_PARTITIONS"]), name
        assert spec["replicas"] == int(env["TOPIC_REPLICATION_FACTOR"]), name
        assert {k: str(v) for k, v in spec.get("config", {}).items()} == TOPIC_CONFIGS[name]


def test_the_services_find_the_strimzi_cluster_and_its_topics() -> None:
    objects = render("overlays/example")
    env = configmap("overlays/example", "safetymon-env")["data"]
    (kafka,) = of_kind(objects, "Kafka")
    cluster = kafka["metadata"]["name"]
    (plain,) = [listener for listener in kafka["spec"]["kafka"]["listeners"]
                if not listener["tls"]]  # fmt: skip
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"{cluster}-kafka-bootstrap:{plain['port']}"
    for obj in of_kind(objects, "KafkaTopic") + of_kind(objects, "KafkaNodePool"):
        assert obj["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    (pool,) = of_kind(objects, "KafkaNodePool")
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}, "KRaft"
    replicas = pool["spec"]["replicas"]
    assert int(env["TOPIC_REPLICATION_FACTOR"]) <= replicas
    config = kafka["spec"]["kafka"]["config"]
    assert config["auto.create.topics.enable"] is False
    assert config["min.insync.replicas"] < int(env["TOPIC_REPLICATION_FACTOR"])
    # Strimzi copies the Kafka resource's labels to its pods: they must not be taken for
    # safetymon's by the network policies.
    assert kafka["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "safetymon"


# ---------------------------------------------------------------------------------------------
# Configuration copies, monitoring, network
# ---------------------------------------------------------------------------------------------


def test_config_copies_equal_the_originals() -> None:
    for copy_path, original in CONFIG_COPIES.items():
        copied = (K8S / "base" / copy_path).read_bytes()
        assert copied == (ROOT / original).read_bytes(), (
            f"deploy/k8s/base/{copy_path} differs from {original}: cp {original} "
            f"deploy/k8s/base/{copy_path}"
        )


def test_generated_configmaps_hold_the_original_files() -> None:
    study = configmap("base", "safetymon-study")["data"]
    assert study["protocol.yaml"] == (ROOT / "protocols/NCT05173246.yaml").read_text()
    assert study["interop.yaml"] == (ROOT / "interop/NCT05173246.yaml").read_text()
    routing = configmap("base", "safetymon-routing")["data"]
    assert routing["routing.yaml"] == (ROOT / "deploy/routing.example.yaml").read_text()
    env = configmap("base", "safetymon-env")["data"]
    assert env["STUDY_ID"] in study["protocol.yaml"]


@pytest.mark.parametrize("directory", RENDERED)
def test_service_monitor_scrapes_every_service(directory: str) -> None:
    objects = render(directory)
    (monitor,) = of_kind(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = {
        s["metadata"]["name"]: s
        for s in of_kind(objects, "Service")
        if selector.items() <= s["metadata"].get("labels", {}).items()
    }
    assert set(selected) == set(PORT_SETTINGS)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics/"
    assert endpoint["port"] == "http"
    # job = the component label, the job names deploy/prometheus/alerts.yml knows.
    job_label = monitor["spec"]["jobLabel"]
    assert {s["metadata"]["labels"][job_label] for s in selected.values()} == set(PORT_SETTINGS)


def test_network_policies() -> None:
    objects = render("base")
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "NetworkPolicy")}
    pods = {name: d["spec"]["template"]["metadata"]["labels"]
            for name, d in deployments("base").items()}  # fmt: skip

    def selects(spec: dict, labels: dict) -> bool:
        selector = spec["podSelector"]
        if not selector.get("matchLabels", {}).items() <= labels.items():
            return False
        return all(
            labels.get(e["key"]) in e["values"]
            for e in selector.get("matchExpressions", [])
            if e["operator"] == "In"
        )

    def allowed(direction: str, name: str, port: int | str) -> list[dict]:
        """The rules letting `port` in (or out) of `name`'s pods."""
        rules = []
        for spec in policies.values():
            if direction.capitalize() in spec["policyTypes"] and selects(spec, pods[name]):
                for rule in spec.get(direction, []):
                    if any(p["port"] == port for p in rule.get("ports", [])):
                        rules.append(rule)
        return rules

    deny = [s for s in policies.values() if not s.get("ingress") and not s.get("egress")]
    assert deny and all(set(s["policyTypes"]) == {"Ingress", "Egress"} for s in deny)
    for name in pods:
        assert any(selects(s, pods[name]) for s in deny), f"{name} is not denied by default"
        assert allowed("egress", name, 9092), f"{name} cannot reach Kafka"
        assert allowed("egress", name, 53), f"{name} cannot resolve names"
        monitoring = [r for r in allowed("ingress", name, "http") if r.get("from")]
        assert any(
            peer.get("namespaceSelector", {}).get("matchLabels")
            == {"kubernetes.io/metadata.name": "monitoring"}
            for rule in monitoring
            for peer in rule["from"]
        ), f"{name}: no scraping from the monitoring namespace"
    for port in (8001, 2575):
        assert any("from" not in r for r in allowed("ingress", "ingest", port)), port
    for name in ("alerts", "dsmb"):
        assert allowed("egress", name, 5432), f"{name} cannot reach PostgreSQL"
    for name in ("ingest", "grader"):
        assert not allowed("egress", name, 5432), f"{name} needs no database"
    assert not allowed("ingress", "dsmb", 8004), "the DSMB API has no login: not from outside"


def test_example_overlay_runs_in_its_namespace_from_a_registry() -> None:
    objects = render("overlays/example")
    (namespace,) = of_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == "safetymon-example"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "safetymon-example", obj["metadata"]["name"]
    for deployment in deployments("overlays/example").values():
        assert container(deployment)["image"].startswith("registry.example.org/")
