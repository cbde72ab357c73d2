"""The Helm chart: it renders for every value set in its ci/ folder, every manifest
is valid against the Kubernetes schemas, and every container runs a command and
exposes ports that the services accept, checked with the services' own parsers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from syncline.cluster import _entrypoints

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "syncline"
VALUE_SETS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBERNETES_VERSION = "1.31"
WORKLOADS = ("Deployment", "StatefulSet")
PARSERS: dict[str, Callable[[list[str]], Any]] = {
    "txn": _entrypoints.txn_config,
    "sync": _entrypoints.sync_config,
    "gateway": _entrypoints.gateway_config,
    "scheduler": _entrypoints.scheduler_config,
}
TLS_DIR = "/etc/syncline/tls/"


def _helm() -> str:
    helm = os.environ.get("SYNCLINE_HELM") or shutil.which("helm")
    if not helm or not Path(helm).exists():
        pytest.fail("helm was not found: run the README's test command, which fetches it")
    return helm


def _render(values: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_helm(), "template", "syncline", str(CHART), "-f", str(values), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _manifests(values: Path) -> list[dict[str, Any]]:
    rendered = _render(values)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


DEPENDENCIES = ("zookeeper", "redis")
"""Components the chart may run for Syncline (in-cluster dependencies), not Syncline's."""


def _component(manifest: dict[str, Any]) -> str:
    return str(manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def _policy_target(policy: dict[str, Any]) -> str:
    return str(policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"])


def _containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for manifest in manifests:
        if manifest["kind"] in WORKLOADS:
            for container in manifest["spec"]["template"]["spec"]["containers"]:
                yield manifest, container


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.stem)
def test_the_chart_lints_and_every_manifest_is_valid(values: Path) -> None:
    lint = subprocess.run(
        [_helm(), "lint", "--strict", str(CHART), "-f", str(values)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    manifests = _manifests(values)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "NetworkPolicy"} <= kinds
    for manifest in manifests:
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator's resources: not in the Kubernetes schemas
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_monitoring_renders_a_pod_monitor_rules_and_every_dashboard() -> None:
    manifests = _manifests(CHART / "ci" / "three-region-values.yaml")
    (monitor,) = [m for m in manifests if m["kind"] == "PodMonitor"]
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s"}
    ]
    (rules,) = [m for m in manifests if m["kind"] == "PrometheusRule"]
    alerts = {rule["alert"] for rule in rules["spec"]["groups"][0]["rules"]}
    assert {"SynclineTxnLeaderless", "SynclineReplicationLagHigh"} <= alerts
    dashboards = {
        m["metadata"]["name"]: m["data"]
        for m in manifests
        if m["kind"] == "ConfigMap" and m["metadata"]["labels"].get("grafana_dashboard") == "1"
    }
    assert len(dashboards) == len(list((CHART / "dashboards").glob("*.json"))) == 4
    for data in dashboards.values():
        (body,) = data.values()
        assert json.loads(body)["panels"]


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.stem)
def test_every_container_runs_a_command_its_service_accepts(
    values: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("tls.crt", "tls.key", "ca.crt"):  # where the TLS Secret is mounted
        (tmp_path / name).write_text("PEM")
    roles_seen = set()
    for manifest, container in _containers(_manifests(values)):
        if _component(manifest) in DEPENDENCIES:
            continue
        command = container["command"]
        assert command[:3] == ["python", "-m", "syncline.cluster"], manifest["metadata"]["name"]
        role = command[3]
        roles_seen.add(role)
        env = {e["name"]: e.get("value", "from-a-secret") for e in container.get("env", [])}
        assert env["SYNCLINE_LOG_FORMAT"] == "json"
        for key, placeholder in {
            "SYNCLINE_ADMIN_SECRET": "ab" * 32,
            "SYNCLINE_PG_DSN": "postgresql://db/syncline",
            "SYNCLINE_PRIMARY_PG_DSN": "postgresql://primary/syncline",
            "POD_IP": "10.1.2.3",
        }.items():
            if key in env:
                env[key] = placeholder
        args = [
            arg.replace("$(POD_IP)", env.get("POD_IP", "$(POD_IP)")).replace(
                TLS_DIR, f"{tmp_path}/"
            )
            for arg in container["args"]
        ]
        assert not any("$(" in arg for arg in args), args
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = PARSERS[role](args)
        config = config[0] if isinstance(config, tuple) else config
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if role == "gateway":
            assert ports == {"http": config.port}
        else:
            assert ports == {"grpc": config.port, "http": config.http_port}
            assert config.advertise_host == "10.1.2.3"
        annotations = manifest["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == ports["http"]  # /metrics lives there
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports
            assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz")
        if role in ("sync", "scheduler"):
            assert config.redis_url is not None and config.redis_url.startswith("redis://")
        for key in env:
            monkeypatch.delenv(key)
    assert roles_seen == set(PARSERS)


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.stem)
def test_services_reach_ports_their_pods_expose(values: Path) -> None:
    manifests = _manifests(values)
    pods = [(m["spec"]["template"]["metadata"]["labels"], c) for m, c in _containers(manifests)]
    for service in (m for m in manifests if m["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matched = [c for labels, c in pods if selector.items() <= labels.items()]
        assert matched, f"service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for container in matched:
                assert port["targetPort"] in {p["name"] for p in container["ports"]}


def test_bad_values_are_refused_with_the_reason(tmp_path: Path) -> None:
    single = CHART / "ci" / "single-region-values.yaml"
    wrong_url = _render(single, "--set", "regions[0].redisUrl=http://redis:6379")
    assert wrong_url.returncode != 0
    assert "does not match pattern" in wrong_url.stderr
    no_replica = tmp_path / "values.yaml"
    no_replica.write_text(
        yaml.safe_dump(
            {
                "regions": [
                    {"name": "local", "redisUrl": "redis://a:6379/0", "gateway": {}, "sync": {}},
                    {"name": "far", "redisUrl": "redis://b:6379/0", "gateway": {}, "sync": {}},
                ]
            }
        )
    )
    missing = _render(single, "-f", str(no_replica))
    assert missing.returncode != 0
    assert "region far needs replicaSecret" in missing.stderr


def test_the_image_definition_matches_the_chart() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    lines = [line.split() for line in dockerfile.splitlines() if line and not line.startswith("#")]
    for parts in (p for p in lines if p[0] == "COPY"):
        for source in parts[1:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"
    chart_user = yaml.safe_load((CHART / "values.yaml").read_text())
    assert ["USER", "10001"] in lines  # the chart's pods run as 10001, not root
    assert chart_user["app"]["path"] in dockerfile
    assert '["python", "-m", "syncline.cluster"]' in dockerfile


def test_in_cluster_dependencies_are_what_the_services_reach(tmp_path: Path) -> None:
    manifests = _manifests(CHART / "ci" / "in-cluster-dependencies-values.yaml")
    services = {m["metadata"]["name"] for m in manifests if m["kind"] == "Service"}
    (ensemble,) = [
        m for m in manifests if _component(m) == "zookeeper" and m["kind"] == "StatefulSet"
    ]
    assert ensemble["spec"]["replicas"] == 3 and ensemble["spec"]["serviceName"] in services
    redis = {m["metadata"]["name"] for m in manifests if _component(m) == "redis"}
    for manifest, container in _containers(manifests):
        if _component(manifest) in DEPENDENCIES:
            continue
        args = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])
        for host in args["zk-hosts"].split(","):
            pod, service = host.removesuffix(":2181").split(".", 1)
            assert service == ensemble["metadata"]["name"] and pod.startswith(service)
        if "redis" in args:
            assert args["redis"].removeprefix("redis://").split(":")[0] in redis & services
    # Only Syncline's pods reach them; ZooKeeper servers also reach each other.
    policies = {
        _policy_target(m): m["spec"]["ingress"] for m in manifests if m["kind"] == "NetworkPolicy"
    }
    assert [p["port"] for p in policies["redis"][0]["ports"]] == [6379]
    assert [p["port"] for p in policies["zookeeper"][1]["ports"]] == [2181, 2888, 3888]
    # Without them, the chart says what is missing.
    values = yaml.safe_load((CHART / "ci" / "single-region-values.yaml").read_text())
    del values["regions"][0]["redisUrl"]
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    no_redis = _render(tmp_path / "values.yaml")
    assert no_redis.returncode != 0 and "needs a redisUrl" in no_redis.stderr
