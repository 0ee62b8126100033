"""Lint, render and validate the demandsense Helm chart, then check the properties the app relies on.

The chart is rendered offline through helm-python-sdk (Helm 4's Go SDK over ctypes, no helm binary):
``helm_python.lint`` for ``helm lint --strict`` and ``helm_python.Chart.load(...).render`` for
``helm template``. Every rendered manifest except the Prometheus Operator CRs is validated against
the Kubernetes JSON schemas shipped by ``kubernetes_validate``; the CRs get structural checks.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is a dev dependency")

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "demandsense"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
DOCS = REPO / "docs" / "kubernetes.md"

# The schemas of a recent release shipped by kubernetes-validate; the chart needs >= 1.28 (pod-index label).
KUBE_VERSION = "1.34.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
RELEASE = "ds"
NAMESPACE = "retail"
FULLNAME = "ds-demandsense"
HEADLESS = f"{FULLNAME}-headless"
METRICS_SVC = f"{FULLNAME}-metrics"

# Metric names the app exports (runtime contract); the dashboard and the rules may use only these.
CONTRACT_METRICS = {
    "demandsense_events_in_total",
    "demandsense_dead_letters_total",
    "demandsense_alerts_out_total",
    "demandsense_triggers_out_total",
    "demandsense_event_time_lag_seconds",
    "demandsense_event_to_alert_seconds",
    "demandsense_active_keys",
    "demandsense_redis_write_failures_total",
    "demandsense_last_event_timestamp_seconds",
    "demandsense_consumer_lag",
}
# Declared in demandsense/metrics.py beyond the contract, and used by the dashboard and rules.
EXTRA_APP_METRICS = {"demandsense_delivery_errors_total", "demandsense_state_bytes"}
PROM_BUILTINS = {"up", "process_resident_memory_bytes"}
METRICS_MODULE = REPO / "demandsense" / "metrics.py"


def declared_metrics() -> set[str]:
    """Series names declared in demandsense/metrics.py (counters are exported with a `_total` suffix)."""
    if not METRICS_MODULE.exists():
        pytest.skip("demandsense/metrics.py is not there yet")
    names = set()
    for kind, name in re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(\w+)\"", METRICS_MODULE.read_text()):
        names.add(name.removesuffix("_total") + "_total" if kind == "Counter" else name)
    return names


def used_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (with `{...}` matchers), histogram suffixes removed."""
    return {re.sub("_(bucket|sum|count)$", "", name) for name in re.findall(r"\b([a-z_:]+)\{", expr)}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render like `helm template ds helm/demandsense -n retail` and parse every manifest."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def notes(chart: Any, values: dict[str, Any] | None = None) -> str:
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def processor(docs: list[dict[str, Any]]) -> dict[str, Any]:
    sts = one(docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return container


def env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in processor(docs)["env"]}


def ci_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --------------------------------------------------------------------------- lint, render, validate


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_lint_is_clean(values_file: Path) -> None:
    report = helm.lint(CHART_DIR, ci_values(values_file), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    # Severity 1 is INFO ("icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_every_manifest_is_valid_kubernetes(chart: Any, values_file: Path) -> None:
    docs = render(chart, ci_values(values_file))
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        # strict: unknown fields (typos in templates) fail too.
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_ci_values_cover_the_feature_matrix() -> None:
    cases = [ci_values(path) for path in CI_VALUES]
    assert any(c.get("replicas", 1) == 1 for c in cases)
    assert any(c.get("replicas", 1) >= 3 for c in cases)
    assert any(c.get("kafka", {}).get("sasl", {}).get("enabled") for c in cases)
    assert any(c.get("kafka", {}).get("tls", {}).get("mtls") for c in cases)
    assert any(c.get("serviceMonitor", {}).get("enabled") and c.get("prometheusRule", {}).get("enabled") for c in cases)
    assert any(c.get("networkPolicy", {}).get("enabled") for c in cases)
    assert any(c.get("dashboard", {}).get("enabled") for c in cases)


def test_defaults_render_only_the_core_resources(chart: Any) -> None:
    docs = render(chart)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        ["ConfigMap", "PodDisruptionBudget", "Pod", "Service", "Service", "ServiceAccount", "StatefulSet"]
    )
    # No Secret is ever rendered: credentials live in Secrets the operator creates.
    assert not of_kind(docs, "Secret")


# --------------------------------------------------------------------------- Bytewax cluster topology


@pytest.mark.parametrize("replicas", [1, 3])
def test_cluster_addresses_follow_replicas_and_headless_service(chart: Any, replicas: int) -> None:
    docs = render(chart, {"replicas": replicas, "workers": 2})
    sts = one(docs, "StatefulSet")
    headless = one(docs, "Service", HEADLESS)
    cluster_port = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "cluster")

    assert sts["spec"]["replicas"] == replicas
    assert sts["spec"]["serviceName"] == HEADLESS
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert headless["spec"]["clusterIP"] == "None"
    # Peers must resolve each other before any of them is ready.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert matches(headless["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])

    addresses = env(docs)["DEMANDSENSE_ADDRESSES"]["value"].split(";")
    assert addresses == [
        f"{FULLNAME}-{i}.{HEADLESS}.{NAMESPACE}.svc.cluster.local:{cluster_port}" for i in range(replicas)
    ]
    assert env(docs)["DEMANDSENSE_WORKERS"]["value"] == "2"
    container_ports = {p["name"]: p["containerPort"] for p in processor(docs)["ports"]}
    assert container_ports["cluster"] == cluster_port == 2101


def test_cluster_port_and_domain_are_configurable(chart: Any) -> None:
    docs = render(chart, {"replicas": 2, "cluster": {"port": 3000}, "clusterDomain": "k8s.example"})
    addresses = env(docs)["DEMANDSENSE_ADDRESSES"]["value"].split(";")
    assert addresses == [f"{FULLNAME}-{i}.{HEADLESS}.{NAMESPACE}.svc.k8s.example:3000" for i in range(2)]
    headless = one(docs, "Service", HEADLESS)
    assert {"name": "cluster", "port": 3000, "targetPort": "cluster", "protocol": "TCP"} in headless["spec"]["ports"]


def test_process_id_comes_from_the_pod_index(chart: Any) -> None:
    process_id = env(render(chart, {"replicas": 3}))["DEMANDSENSE_PROCESS_ID"]
    assert "value" not in process_id
    assert process_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}


def test_fullname_leaves_room_for_statefulset_labels(chart: Any) -> None:
    docs = render(chart, {"nameOverride": "x" * 60})
    name = one(docs, "StatefulSet")["metadata"]["name"]
    assert len(name) <= 52
    # <name>-headless and <name>-metrics stay valid Service names (63 characters).
    assert all(len(svc["metadata"]["name"]) <= 63 for svc in of_kind(docs, "Service"))


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("sasl", "tls", "protocol"),
    [(False, False, "PLAINTEXT"), (False, True, "SSL"), (True, False, "SASL_PLAINTEXT"), (True, True, "SASL_SSL")],
)
def test_security_protocol_follows_the_switches(chart: Any, sasl: bool, tls: bool, protocol: str) -> None:
    kafka: dict[str, Any] = {"tls": {"enabled": tls}}
    if sasl:
        kafka["sasl"] = {"enabled": True, "username": "demandsense", "existingSecret": "kafka-creds"}
    variables = env(render(chart, {"kafka": kafka}))
    assert variables["DEMANDSENSE_KAFKA_SECURITY_PROTOCOL"]["value"] == protocol
    assert ("DEMANDSENSE_KAFKA_SASL_PASSWORD" in variables) is sasl


def test_sasl_password_comes_from_the_named_secret(chart: Any) -> None:
    docs = render(
        chart,
        {"kafka": {"sasl": {"enabled": True, "existingSecret": "my-secret", "usernameKey": "user"}}},
    )
    variables = env(docs)
    assert variables["DEMANDSENSE_KAFKA_SASL_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "my-secret", "key": "password"}
    }
    assert variables["DEMANDSENSE_KAFKA_SASL_USERNAME"]["valueFrom"] == {
        "secretKeyRef": {"name": "my-secret", "key": "user"}
    }
    assert variables["DEMANDSENSE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert not of_kind(docs, "Secret")


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_credentials_are_never_plain_env_values(chart: Any, values_file: Path) -> None:
    for name, item in env(render(chart, ci_values(values_file))).items():
        if re.search("PASSWORD|SECRET|TOKEN", name):
            assert "value" not in item, name
            assert "secretKeyRef" in item["valueFrom"], name


def test_no_value_accepts_a_credential(chart: Any) -> None:
    """Keys that mention a password or secret only name a Secret or a key inside it."""

    def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield f"{path}{key}", value
                yield from walk(value, f"{path}{key}.")

    suspicious = [
        path
        for path, value in walk(chart.values)
        if re.search("(?i)pass|secret|token|credential", path.split(".")[-1]) and not isinstance(value, bool)
    ]
    assert suspicious, "expected the Secret references to be found"
    for path in suspicious:
        leaf = path.split(".")[-1]
        # existingSecret / imagePullSecrets name Secrets; *Key names a key inside one.
        assert leaf in {"existingSecret", "imagePullSecrets"} or leaf.endswith("Key"), path

    for values in (
        {"kafka": {"sasl": {"password": "S3cr3t-canary"}}},
        {"redis": {"auth": {"password": "S3cr3t-canary"}}},
        {"redis": {"password": "S3cr3t-canary"}},
        {"redis": {"url": "redis://default:S3cr3t-canary@redis:6379/0"}},
        {"kafka": {"schemaRegistryUrl": "https://user:S3cr3t-canary@registry:8081"}},
    ):
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka": {"sasl": {"enabled": True, "username": "u"}}}, "kafka.sasl.existingSecret"),
        ({"kafka": {"sasl": {"enabled": True, "existingSecret": "s"}}}, "kafka.sasl.username"),
        ({"kafka": {"tls": {"enabled": True, "mtls": True}}}, "kafka.tls.existingSecret"),
        ({"kafka": {"tls": {"mtls": True, "existingSecret": "s"}}}, "kafka.tls.enabled"),
        ({"redis": {"url": "redis://r:6379", "auth": {"enabled": True}}}, "redis.auth.existingSecret"),
        ({"redis": {"url": "redis://r:6379", "tls": {"existingSecret": "ca"}}}, "rediss://"),
        ({"extraEnv": [{"name": "DEMANDSENSE_KAFKA_SASL_PASSWORD", "value": "S3cr3t-canary"}]}, "secretKeyRef"),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_mtls_mounts_the_secret_and_points_librdkafka_at_it(chart: Any) -> None:
    docs = render(
        chart,
        {"kafka": {"tls": {"enabled": True, "existingSecret": "kafka-tls", "mtls": True, "keyKey": "client.key"}}},
    )
    container = processor(docs)
    variables = env(docs)
    assert variables["DEMANDSENSE_KAFKA_SECURITY_PROTOCOL"]["value"] == "SSL"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-tls")
    assert mount["readOnly"] is True
    volume = next(
        v for v in one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-tls"
    )
    assert volume["secret"]["secretName"] == "kafka-tls"
    assert volume["secret"]["defaultMode"] == 0o440
    files = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    assert files == {"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "client.key"}
    for name, filename in [
        ("DEMANDSENSE_KAFKA_SSL_CA_LOCATION", "ca.crt"),
        ("DEMANDSENSE_KAFKA_SSL_CERTIFICATE_LOCATION", "tls.crt"),
        ("DEMANDSENSE_KAFKA_SSL_KEY_LOCATION", "tls.key"),
    ]:
        assert variables[name]["value"] == f"{mount['mountPath']}/{filename}"
    assert "DEMANDSENSE_KAFKA_SSL_KEY_PASSWORD" not in variables  # an unencrypted key by default


def test_an_encrypted_client_key_gets_its_password_from_the_secret(chart: Any) -> None:
    tls = {"enabled": True, "existingSecret": "kafka-tls", "mtls": True, "keyPasswordKey": "key.password"}
    variables = env(render(chart, {"kafka": {"tls": tls}}))
    ref = variables["DEMANDSENSE_KAFKA_SSL_KEY_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "kafka-tls", "key": "key.password"}


def test_tls_without_a_secret_uses_the_system_ca_bundle(chart: Any) -> None:
    docs = render(chart, {"kafka": {"tls": {"enabled": True}}})
    assert "DEMANDSENSE_KAFKA_SSL_CA_LOCATION" not in env(docs)
    assert all(m["name"] != "kafka-tls" for m in processor(docs)["volumeMounts"])


def test_redis_credentials_and_ca_come_from_secrets(chart: Any) -> None:
    path = CHART_DIR / "ci" / "mtls-values.yaml"
    docs = render(chart, ci_values(path))
    variables = env(docs)
    assert variables["DEMANDSENSE_REDIS_URL"]["value"].startswith("rediss://")
    assert variables["DEMANDSENSE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "demandsense-redis",
        "key": "password",
    }
    assert variables["DEMANDSENSE_REDIS_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    mount = next(m for m in processor(docs)["volumeMounts"] if m["name"] == "redis-tls")
    assert variables["DEMANDSENSE_REDIS_SSL_CA_CERTS"]["value"] == f"{mount['mountPath']}/ca.crt"


def test_no_redis_env_without_a_url(chart: Any) -> None:
    assert not [name for name in env(render(chart)) if name.startswith("DEMANDSENSE_REDIS")]


# --------------------------------------------------------------------------- pod hardening and lifecycle


def test_security_context_is_restricted(chart: Any) -> None:
    docs = render(chart)
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["fsGroup"] == 999
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = processor(docs)["securityContext"]
    assert container["runAsNonRoot"] is True
    assert container["runAsUser"] == 999
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    # With a read-only root, /tmp and the recovery directory are volumes.
    mounts = {m["mountPath"]: m["name"] for m in processor(docs)["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    assert mounts["/var/lib/demandsense"] == "recovery"
    assert env(docs)["DEMANDSENSE_RECOVERY_DIR"]["value"] == "/var/lib/demandsense"


def test_test_pod_is_hardened_too(chart: Any) -> None:
    pod = one(render(chart), "Pod")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_resources_are_not_set_by_default(chart: Any) -> None:
    assert "resources" not in processor(render(chart))
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert processor(render(chart, {"resources": resources}))["resources"] == resources


def test_probes_hit_health_endpoints_on_the_metrics_port(chart: Any) -> None:
    docs = render(chart, {"metrics": {"port": 9200}})
    container = processor(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == 9200
    assert env(docs)["DEMANDSENSE_METRICS_PORT"]["value"] == "9200"
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
        assert "enabled" not in container[probe]


def test_pdb_selects_exactly_the_processor_pods(chart: Any) -> None:
    docs = render(chart, {"replicas": 3})
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert matches(selector, one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"])
    assert not matches(selector, one(docs, "Pod")["metadata"]["labels"])


def test_selectors_leave_out_the_chart_version(chart: Any) -> None:
    docs = render(chart, {"networkPolicy": {"enabled": True}})
    selectors = [
        one(docs, "StatefulSet")["spec"]["selector"]["matchLabels"],
        one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        *(svc["spec"]["selector"] for svc in of_kind(docs, "Service")),
    ]
    for selector in selectors:
        assert "helm.sh/chart" not in selector
        assert "app.kubernetes.io/version" not in selector


def test_helm_test_hook_checks_every_process(chart: Any) -> None:
    pod = one(render(chart, {"replicas": 3}), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    urls = pod["spec"]["containers"][0]["args"][1:]
    assert urls == [
        *(f"http://{FULLNAME}-{i}.{HEADLESS}.{NAMESPACE}.svc.cluster.local:9100/readyz" for i in range(3)),
        f"http://{METRICS_SVC}.{NAMESPACE}.svc.cluster.local:9100/metrics",
    ]


def test_checksum_annotation_follows_the_policy(chart: Any) -> None:
    def checksum(policy: str) -> str:
        sts = one(render(chart, {"policy": policy}), "StatefulSet")
        return sts["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    strict = "[governance]\nmax_auto_qty = 100\n"
    assert re.fullmatch("[0-9a-f]{64}", checksum(strict))
    assert checksum(strict) == checksum(strict)
    assert checksum(strict) != checksum("[governance]\nmax_auto_qty = 500\n")


def test_policy_is_mounted_where_the_env_points(chart: Any) -> None:
    policy = "[governance]\nmax_auto_qty = 100\n"
    docs = render(chart, {"policy": policy})
    configmap = one(docs, "ConfigMap", f"{FULLNAME}-config")
    assert tomllib.loads(configmap["data"]["policy.toml"]) == {"governance": {"max_auto_qty": 100}}
    mount = next(m for m in processor(docs)["volumeMounts"] if m["name"] == "config")
    assert env(docs)["DEMANDSENSE_POLICY"]["value"] == f"{mount['mountPath']}/policy.toml"
    # The default policy is valid TOML as well (comments only: the application defaults apply).
    assert tomllib.loads(one(render(chart), "ConfigMap")["data"]["policy.toml"]) == {}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_policy_files_are_accepted_by_the_app(chart: Any, values_file: Path) -> None:
    """The policy each example installs parses with the app's own loader (unknown keys stop the process)."""
    policy_module = pytest.importorskip("operators.policy")
    configmap = one(render(chart, ci_values(values_file)), "ConfigMap", f"{FULLNAME}-config")
    policy_module.Policy.from_dict(tomllib.loads(configmap["data"]["policy.toml"]))


def test_recovery_volume_is_a_kept_claim_per_pod(chart: Any) -> None:
    sts = one(render(chart), "StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "recovery"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}

    ephemeral = one(render(chart, {"recovery": {"persistence": {"enabled": False}}}), "StatefulSet")
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    volumes = {v["name"]: v for v in ephemeral["spec"]["template"]["spec"]["volumes"]}
    assert volumes["recovery"] == {"name": "recovery", "emptyDir": {}}


def test_image_defaults_to_app_version_and_a_digest_pins_it(chart: Any) -> None:
    app_version = chart.metadata["appVersion"]
    assert processor(render(chart))["image"].endswith(f":{app_version}")
    digest = "sha256:" + "a" * 64
    assert processor(render(chart, {"image": {"digest": digest}}))["image"].endswith(f"@{digest}")


def test_app_version_matches_the_python_package() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    chart_yaml = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart_yaml["appVersion"] == pyproject["project"]["version"]


def test_contract_env_is_complete(chart: Any) -> None:
    names = set(env(render(chart, ci_values(CHART_DIR / "ci" / "mtls-values.yaml"))))
    assert {
        "DEMANDSENSE_BOOTSTRAP_SERVERS",
        "DEMANDSENSE_FORMAT",
        "DEMANDSENSE_SALES_TOPIC",
        "DEMANDSENSE_INVENTORY_TOPIC",
        "DEMANDSENSE_ITEMS_TOPIC",
        "DEMANDSENSE_ALERTS_TOPIC",
        "DEMANDSENSE_TRIGGERS_TOPIC",
        "DEMANDSENSE_DEAD_LETTER_TOPIC",
        "DEMANDSENSE_GROUP_ID",
        "DEMANDSENSE_KAFKA_SECURITY_PROTOCOL",
        "DEMANDSENSE_KAFKA_SSL_CA_LOCATION",
        "DEMANDSENSE_KAFKA_SSL_CERTIFICATE_LOCATION",
        "DEMANDSENSE_KAFKA_SSL_KEY_LOCATION",
        "DEMANDSENSE_REDIS_URL",
        "DEMANDSENSE_REDIS_USERNAME",
        "DEMANDSENSE_REDIS_PASSWORD",
        "DEMANDSENSE_REDIS_SSL_CA_CERTS",
        "DEMANDSENSE_POLICY",
        "DEMANDSENSE_RECOVERY_DIR",
        "DEMANDSENSE_SNAPSHOT_INTERVAL",
        "DEMANDSENSE_METRICS_PORT",
        "DEMANDSENSE_WORKERS",
        "DEMANDSENSE_PROCESS_ID",
        "DEMANDSENSE_ADDRESSES",
        "DEMANDSENSE_LOG_FORMAT",
    } <= names


# --------------------------------------------------------------------------- optional integrations


def test_servicemonitor_scrapes_the_metrics_service(chart: Any) -> None:
    docs = render(chart, ci_values(CHART_DIR / "ci" / "monitoring-values.yaml"))
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(docs, "Service", METRICS_SVC)
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    # The headless Service must not be scraped as well (every pod would be scraped twice).
    headless = one(docs, "Service", HEADLESS)
    assert not matches(monitor["spec"]["selector"]["matchLabels"], headless["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["interval"] == "30s"


def test_prometheus_rules_cover_lag_dead_letters_and_stalls(chart: Any) -> None:
    docs = render(chart, ci_values(CHART_DIR / "ci" / "monitoring-values.yaml"))
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "DemandsenseConsumerLagHigh",
        "DemandsenseDeadLetterRateHigh",
        "DemandsenseProcessingStalled",
        "DemandsenseDeliveryErrors",
        "DemandsenseTargetDown",
    }
    for name, alert in alerts.items():
        assert alert["expr"].strip(), name
        assert re.fullmatch(r"[0-9]+[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        # Every series is scoped to this release's job and namespace.
        assert f'job="{METRICS_SVC}"' in alert["expr"] and f'namespace="{NAMESPACE}"' in alert["expr"], name
        assert used_metrics(alert["expr"]) <= CONTRACT_METRICS | EXTRA_APP_METRICS | PROM_BUILTINS, name
        # Helm did not swallow Prometheus' own templating.
        assert "{{ $" in alert["annotations"]["description"], name
    assert "demandsense_consumer_lag{" in alerts["DemandsenseConsumerLagHigh"]["expr"]
    assert "> 50000" in alerts["DemandsenseConsumerLagHigh"]["expr"]
    assert "demandsense_dead_letters_total{" in alerts["DemandsenseDeadLetterRateHigh"]["expr"]
    stalled = alerts["DemandsenseProcessingStalled"]["expr"]
    assert "demandsense_last_event_timestamp_seconds{" in stalled and "> 900" in stalled  # 15 minutes


def test_prometheus_rule_accepts_additional_rules(chart: Any) -> None:
    extra = {"alert": "DemandsenseNoAlerts", "expr": "sum(rate(demandsense_alerts_out_total[1h])) == 0"}
    docs = render(chart, {"prometheusRule": {"enabled": True, "additionalRules": [extra]}})
    assert extra in one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]


def test_grafana_dashboard_configmap(chart: Any) -> None:
    docs = render(chart, {"dashboard": {"enabled": True, "annotations": {"grafana_folder": "Retail"}}})
    configmap = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Retail"}
    dashboard = json.loads(configmap["data"]["demandsense.json"])
    assert dashboard["uid"] == "demandsense"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            used |= used_metrics(target["expr"])
    assert used <= CONTRACT_METRICS | EXTRA_APP_METRICS | PROM_BUILTINS
    assert used >= CONTRACT_METRICS, f"not on the dashboard: {sorted(CONTRACT_METRICS - used)}"


def test_monitoring_uses_only_metrics_the_app_declares(chart: Any) -> None:
    declared = declared_metrics()
    assert CONTRACT_METRICS <= declared, f"missing from demandsense/metrics.py: {sorted(CONTRACT_METRICS - declared)}"
    docs = render(chart, ci_values(CHART_DIR / "ci" / "monitoring-values.yaml"))
    exprs = [r["expr"] for r in one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]]
    dashboard = json.loads(one(docs, "ConfigMap", f"{FULLNAME}-dashboard")["data"]["demandsense.json"])
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(used_metrics(expr) for expr in exprs)) - PROM_BUILTINS
    assert used <= declared, f"not declared in demandsense/metrics.py: {sorted(used - declared)}"


def test_network_policy(chart: Any) -> None:
    docs = render(chart, ci_values(CHART_DIR / "ci" / "networkpolicy-values.yaml"))
    policy = one(docs, "NetworkPolicy")
    pod_labels = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    test_labels = one(docs, "Pod")["metadata"]["labels"]
    assert matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    (peer,) = by_port["cluster"]["from"]
    assert matches(peer["podSelector"]["matchLabels"], pod_labels)
    metrics_peers = by_port["metrics"]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in metrics_peers
    assert any(matches(p.get("podSelector", {}).get("matchLabels", {"x": "y"}), test_labels) for p in metrics_peers)
    egress_ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
    assert 53 in egress_ports and 2101 in egress_ports and 9092 in egress_ports and 6379 in egress_ports


def test_network_policy_leaves_egress_open_unless_asked(chart: Any) -> None:
    policy = one(render(chart, {"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]


def test_notes_warn_about_the_default_broker(chart: Any) -> None:
    assert "WARNING: kafka.bootstrapServers" in notes(chart)
    assert "WARNING" not in notes(chart, {"kafka": {"bootstrapServers": "b1:9092"}})


# --------------------------------------------------------------------------- values documentation


def values_keys() -> list[tuple[str, int, bool]]:
    """(dotted path, line index, has an inline value) of every block-style key in values.yaml."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    keys: list[tuple[str, int, bool]] = []
    stack: list[tuple[int, str]] = []
    scalar_indent: int | None = None
    for index, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" "))
        if scalar_indent is not None:
            if not line.strip() or indent > scalar_indent:
                continue  # inside a block scalar (`policy: |`)
            scalar_indent = None
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^( *)([A-Za-z_][\w]*):(.*)$", line)
        assert match, f"values.yaml:{index + 1}: unexpected line {line!r}"
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(key for _, key in stack), match.group(2)])
        rest = match.group(3).split(" #")[0].strip()
        keys.append((path, index, bool(rest)))
        if rest.startswith(("|", ">")):
            scalar_indent = indent
        elif not rest:
            stack.append((indent, match.group(2)))
    return keys


def test_every_value_has_a_doc_comment() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    for path, index, _ in values_keys():
        above = index - 1
        while above >= 0 and lines[above].lstrip().startswith("#") and not lines[above].lstrip().startswith("# --"):
            above -= 1
        if above < 0 or not lines[above].lstrip().startswith("# --"):
            undocumented.append(path)
        # The `# --` comment must belong to this key (contiguous comment block right above it).
        elif any(not line.lstrip().startswith("#") for line in lines[above:index]):
            undocumented.append(path)
    assert undocumented == []


def test_docs_table_lists_every_value() -> None:
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("|")]
    documented = set()
    for row in rows:
        match = re.match(r"^\|\s*`([^`]+)`\s*\|", row)
        if match:
            documented.add(match.group(1))
    leaves = {path for path, _, inline in values_keys() if inline}
    assert leaves, "no values parsed"
    assert sorted(leaves - documented) == []
    assert sorted(documented - {path for path, _, _ in values_keys()}) == []


def test_values_file_is_the_charts_defaults(chart: Any) -> None:
    """values_keys() parses the same keys Helm sees (guards the line parser above)."""
    keys = values_keys()
    inline = {path for path, _, has_value in keys if has_value}

    def walk(node: dict[str, Any], path: str = "") -> Iterator[str]:
        for key, value in node.items():
            yield f"{path}{key}"
            if isinstance(value, dict) and f"{path}{key}" not in inline:
                yield from walk(value, f"{path}{key}.")

    assert {path for path, _, _ in keys} == set(walk(chart.values))
