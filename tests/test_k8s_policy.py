"""The rules every QuizMesh deployment keeps, checked on what kustomize renders for
each overlay, without a cluster. Schema validity is `make k8s-check`'s job; this is
what a schema cannot say: hardened pods, probes on grpc.health.v1, grace periods
that outlast the services' own, the sync CronJob's policy, who may talk to whom,
and secrets that never come from the repo.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.gateway import envoy_binary
from services.identity.keys import jwks_for
from services.identity.tokens import Role, TokenIssuer, TokenVerifier
from services.mesh.config import CommonSettings
from services.sync.config import SCHEDULE, SCHEDULE_SECONDS
from tests.k8s import (
    K8S,
    OVERLAYS,
    REPO,
    Obj,
    Peer,
    Workload,
    can_connect,
    env_of,
    find,
    one,
    parse_quantity,
    render,
    workloads,
)

# Where Prometheus scrapes Envoy (scripts/k8s-envoy.sh --stats-port).
ENVOY_METRICS_PORT = 9464
ENVOY_METRICS_PATH = "/stats/prometheus"
GRPC_SERVICES = {"quiz": 50051, "score": 50052, "leaderboard": 50053, "stream": 50054}
BACKENDS = {"redis": "redis", "nats": "client", "mariadb": "mysql"}  # dev: pod -> port name
BACKEND_PORTS = {"redis": 6379, "nats": 4222, "mysql": 3306}
OUR_IMAGE = "quizmesh"
# Closing NATS (drain), Redis and the SQL pool after the gRPC server stopped.
CLOSE_MARGIN_SECONDS = 10
# The kubelet's probes of a gRPC service may fail this long (a dependency outage
# makes health NOT_SERVING) before it restarts the pod.
MIN_LIVENESS_TOLERANCE_SECONDS = 60

RENDERED: dict[str, list[Obj]] = {}


def rendered(overlay: str) -> list[Obj]:
    if overlay not in RENDERED:
        RENDERED[overlay] = render(overlay)
    return RENDERED[overlay]


def every_workload() -> list[Any]:
    return [
        pytest.param(overlay, w, id=f"{overlay}-{w.id}")
        for overlay in OVERLAYS
        for w in workloads(rendered(overlay))
    ]


def grpc_servers() -> list[Any]:
    return [
        pytest.param(overlay, w, id=f"{overlay}-{w.name}")
        for overlay in OVERLAYS
        for w in workloads(rendered(overlay))
        if "grpc" in w.ports()
    ]


def long_running() -> list[Any]:
    return [
        pytest.param(overlay, w, id=f"{overlay}-{w.id}")
        for overlay in OVERLAYS
        for w in workloads(rendered(overlay))
        if w.kind in ("Deployment", "StatefulSet")
    ]


def prestop_sleep(container: Obj) -> int:
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
    return int(sleep.get("seconds", 0))


def test_there_is_a_dev_and_a_prod_overlay() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


# --- every pod ------------------------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "workload"), every_workload())
def test_every_pod_runs_as_non_root_with_nothing_extra(overlay: str, workload: Workload) -> None:
    spec = workload.spec
    pod_security = spec.get("securityContext", {})
    assert pod_security.get("runAsNonRoot") is True
    assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    assert not [v for v in spec.get("volumes", []) if "hostPath" in v]
    for container in workload.containers:
        security = container.get("securityContext", {})
        # A numeric user, so the kubelet can check runAsNonRoot against the image.
        user = security.get("runAsUser", pod_security.get("runAsUser"))
        assert isinstance(user, int), container["name"]
        assert user > 0, container["name"]
        assert security.get("allowPrivilegeEscalation") is False, container["name"]
        assert security.get("readOnlyRootFilesystem") is True, container["name"]
        assert security.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert not security.get("capabilities", {}).get("add"), container["name"]
        assert not security.get("privileged"), container["name"]


@pytest.mark.parametrize(("overlay", "workload"), every_workload())
def test_every_pod_has_its_own_service_account_without_an_api_token(
    overlay: str, workload: Workload
) -> None:
    name = workload.spec.get("serviceAccountName")
    assert name
    assert name != "default"
    assert workload.spec.get("automountServiceAccountToken") is False
    one(rendered(overlay), "ServiceAccount", name)


@pytest.mark.parametrize(("overlay", "workload"), every_workload())
def test_every_container_requests_and_limits_cpu_and_memory(
    overlay: str, workload: Workload
) -> None:
    for container in workload.containers:
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request, f"{container['name']}: no {resource} request"
            assert limit, f"{container['name']}: no {resource} limit"
            assert parse_quantity(request) <= parse_quantity(limit), container["name"]


@pytest.mark.parametrize(("overlay", "workload"), every_workload())
def test_every_image_is_pinned_to_a_version(overlay: str, workload: Workload) -> None:
    for container in workload.containers:
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert name, f"{image}: no tag"
        assert "/" not in tag, f"{image}: no tag"
        assert tag != "latest", image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_containers_run_console_scripts_of_the_package(overlay: str) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for workload in workloads(rendered(overlay)):
        for container in workload.containers:
            if container["image"].rpartition(":")[0].endswith(OUR_IMAGE):
                assert container["command"][0] in scripts, workload.id


# --- gRPC services --------------------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "workload"), grpc_servers())
def test_grpc_services_probe_grpc_health_on_their_port(overlay: str, workload: Workload) -> None:
    (server,) = workload.spec["containers"]
    port = workload.ports()["grpc"]
    assert port == GRPC_SERVICES[workload.name]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = server.get(kind)
        assert probe is not None, kind
        # The overall status (service ""): SERVING only while the dependencies answer.
        assert probe.get("grpc") == {"port": port}, kind
    liveness = server["livenessProbe"]
    tolerance = liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3)
    assert tolerance >= MIN_LIVENESS_TOLERANCE_SECONDS


@pytest.mark.parametrize(("overlay", "workload"), grpc_servers())
def test_grpc_services_listen_where_the_probes_and_envoy_look(
    overlay: str, workload: Workload
) -> None:
    (server,) = workload.spec["containers"]
    env = env_of(server, rendered(overlay))
    assert env["QUIZMESH_GRPC_PORT"] == str(workload.ports()["grpc"])
    assert env["QUIZMESH_GRPC_HOST"] == "0.0.0.0"


@pytest.mark.parametrize(("overlay", "workload"), grpc_servers())
def test_grpc_services_have_a_headless_service_with_a_grpc_port(
    overlay: str, workload: Workload
) -> None:
    service = one(rendered(overlay), "Service", workload.name)
    # Headless: DNS lists every ready pod, so Envoy balances calls across them.
    assert service["spec"].get("clusterIP") == "None"
    assert service["spec"]["selector"].items() <= workload.labels.items()
    grpc_port = {p["name"]: p for p in service["spec"]["ports"]}["grpc"]
    assert grpc_port["port"] == workload.ports()["grpc"]


@pytest.mark.parametrize(("overlay", "workload"), grpc_servers())
def test_grace_period_outlasts_prestop_and_the_services_shutdown(
    overlay: str, workload: Workload
) -> None:
    (server,) = workload.spec["containers"]
    env = env_of(server, rendered(overlay))
    default = CommonSettings.model_fields["shutdown_grace_seconds"].default
    shutdown_grace = float(env.get("QUIZMESH_SHUTDOWN_GRACE_SECONDS", default))
    needed = prestop_sleep(server) + shutdown_grace + CLOSE_MARGIN_SECONDS
    assert prestop_sleep(server) >= 5, "Envoy needs a moment to drop the pod from DNS"
    assert workload.spec["terminationGracePeriodSeconds"] >= needed


@pytest.mark.parametrize(("overlay", "workload"), long_running())
def test_long_running_pods_have_readiness_and_liveness_probes(
    overlay: str, workload: Workload
) -> None:
    for container in workload.spec["containers"]:
        assert "readinessProbe" in container, container["name"]
        assert "livenessProbe" in container, container["name"]


# --- Envoy ----------------------------------------------------------------------------------


def envoy_config() -> Obj:
    config: Obj = yaml.safe_load((K8S / "base" / "envoy" / "envoy.yaml").read_text())
    return config


def test_committed_envoy_config_is_what_the_render_script_makes(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "k8s-envoy.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    for name in ("envoy.yaml", "quizmesh.pb"):
        committed = (K8S / "base" / "envoy" / name).read_bytes()
        assert committed == (tmp_path / name).read_bytes(), (
            f"k8s/base/envoy/{name} is stale: run 'make k8s-envoy'"
        )


def test_envoy_upstreams_are_the_headless_grpc_services() -> None:
    clusters = envoy_config()["static_resources"]["clusters"]
    upstreams = {}
    for cluster in clusters:
        if cluster["name"] == "envoy_admin":  # the stats listener's (below)
            continue
        assert cluster["type"] == "STRICT_DNS"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        upstreams[address["address"]] = address["port_value"]
    assert upstreams == GRPC_SERVICES


def test_envoy_admin_stays_on_loopback() -> None:
    address = envoy_config()["admin"]["address"]["socket_address"]
    assert address["address"] == "127.0.0.1"


def test_envoy_stats_listener_serves_only_prometheus_stats_from_the_admin() -> None:
    config = envoy_config()
    admin = config["admin"]["address"]["socket_address"]
    listeners = {item["name"]: item for item in config["static_resources"]["listeners"]}
    clusters = {item["name"]: item for item in config["static_resources"]["clusters"]}
    stats = listeners["stats"]
    assert stats["address"]["socket_address"]["port_value"] == ENVOY_METRICS_PORT
    (chain,) = stats["filter_chains"]
    (manager,) = chain["filters"]
    (virtual_host,) = manager["typed_config"]["route_config"]["virtual_hosts"]
    scrape, rest = virtual_host["routes"]
    assert scrape["match"]["path"] == ENVOY_METRICS_PATH
    assert scrape["route"]["cluster"] == "envoy_admin"
    assert rest == {"match": {"prefix": "/"}, "direct_response": rest["direct_response"]}
    assert rest["direct_response"]["status"] == 404
    (endpoint,) = clusters["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == admin


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_pod_mounts_every_file_its_config_names(overlay: str) -> None:
    objects = rendered(overlay)
    envoy = next(w for w in workloads(objects) if w.name == "envoy")
    (container,) = envoy.spec["containers"]
    volumes = {v["name"]: v for v in envoy.spec["volumes"]}
    mounted: dict[str, str] = {}  # file path -> where it comes from
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            cm = one(objects, "ConfigMap", volume["configMap"]["name"])
            keys = [*cm.get("data", {}), *cm.get("binaryData", {})]
            mounted |= {f"{mount['mountPath']}/{k}": "configmap" for k in keys}
        elif "secret" in volume:
            items = volume["secret"]["items"]
            mounted |= {f"{mount['mountPath']}/{i['path']}": "secret" for i in items}
    config_path = container["args"][container["args"].index("--config-path") + 1]
    text = (K8S / "base" / "envoy" / "envoy.yaml").read_text()
    named = {config_path, *re.findall(r"(?:filename|proto_descriptor): (/\S+)", text)}
    assert named <= mounted.keys()
    assert mounted["/etc/quizmesh/keys/jwks.json"] == "secret"


def test_envoy_config_fits_a_configmap_that_plain_kubectl_apply_can_store() -> None:
    # Client-side apply copies the object into an annotation of at most 256 KiB;
    # beyond it, only `kubectl apply --server-side` works (the hard limit is 1 MiB).
    cm = one(rendered("prod"), "ConfigMap", envoy_config_name(rendered("prod")))
    assert len(json.dumps(cm)) < 256 * 1024


def envoy_config_name(objects: list[Obj]) -> str:
    names = [str(o["metadata"]["name"]) for o in find(objects, "ConfigMap")]
    return next(name for name in names if name.startswith("envoy-config"))


def test_envoy_accepts_the_committed_config(tmp_path: Path) -> None:
    """Envoy 1.40 validates the k8s config, with its mounted files put beside it."""
    from cryptography.hazmat.primitives.asymmetric import ec

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(jwks_for(ec.generate_private_key(ec.SECP256R1()).public_key())))
    text = (K8S / "base" / "envoy" / "envoy.yaml").read_text()
    text = text.replace("/etc/quizmesh/keys/jwks.json", str(jwks))
    text = text.replace("/etc/envoy/quizmesh.pb", str(K8S / "base" / "envoy" / "quizmesh.pb"))
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_outlives_its_prestop_drain(overlay: str) -> None:
    envoy = next(w for w in workloads(rendered(overlay)) if w.name == "envoy")
    (container,) = envoy.spec["containers"]
    assert prestop_sleep(container) >= 5
    assert envoy.spec["terminationGracePeriodSeconds"] > prestop_sleep(container)
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["tcpSocket"]["port"] == "http", kind


# --- jobs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sync_cronjob_runs_one_at_a_time_on_the_code_schedule(overlay: str) -> None:
    cron = one(rendered(overlay), "CronJob", "sync")["spec"]
    assert cron["schedule"] == SCHEDULE
    assert cron["concurrencyPolicy"] == "Forbid"
    # The controller looks every 10 s; a late run must not run beside the next one.
    assert 10 <= cron["startingDeadlineSeconds"] < SCHEDULE_SECONDS
    assert cron["successfulJobsHistoryLimit"] >= 1
    assert cron["failedJobsHistoryLimit"] >= 1
    job = cron["jobTemplate"]["spec"]
    assert 0 <= job["backoffLimit"] <= 2  # the next scheduled run is the retry
    assert job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["quizmesh-sync"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_upgrades_the_schema_with_retries(overlay: str) -> None:
    job = one(rendered(overlay), "Job", "migrate")["spec"]
    assert job["template"]["spec"]["containers"][0]["command"] == ["quizmesh-migrate"]
    assert job["backoffLimit"] >= 3
    assert job["activeDeadlineSeconds"] > 0
    assert job["template"]["spec"]["restartPolicy"] == "Never"


# --- network policies -----------------------------------------------------------------------


def peers(overlay: str) -> dict[str, Peer]:
    return {w.name: Peer.of(w) for w in workloads(rendered(overlay))}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_denied_unless_allowed(overlay: str) -> None:
    deny = one(rendered(overlay), "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_envoy_is_reachable_from_outside(overlay: str) -> None:
    objects = rendered(overlay)
    # Clients, and pods of other namespaces: their traffic is not ours to restrict.
    outside = Peer.outside()
    # A pod started in our namespace without a role (kubectl run ...): no egress at all.
    stranger = Peer("a pod of ours without a role", {"app": "debug"})
    for peer in peers(overlay).values():
        for port_name in peer.ports:
            expected = peer.name == "Deployment/envoy" and port_name == "http"
            assert can_connect(objects, outside, peer, port_name) == expected, (
                f"outside -> {peer.name}:{port_name}"
            )
            assert not can_connect(objects, stranger, peer, port_name), peer.name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_every_metrics_port_from_the_monitoring_namespace(
    overlay: str,
) -> None:
    objects = rendered(overlay)
    prometheus = Peer.in_namespace("monitoring", {"app": "prometheus"})
    elsewhere = Peer.in_namespace("default", {"app": "prometheus"})
    scraped = set()
    for workload in workloads(objects):
        if workload.kind not in ("Deployment", "StatefulSet"):
            continue
        peer = Peer.of(workload)
        annotations = workload.pod.get("metadata", {}).get("annotations", {})
        if "metrics" not in peer.ports:
            assert "prometheus.io/scrape" not in annotations, workload.id
            continue
        scraped.add(workload.name)
        assert annotations["prometheus.io/scrape"] == "true", workload.id
        assert annotations["prometheus.io/port"] == str(peer.ports["metrics"]), workload.id
        expected_path = ENVOY_METRICS_PATH if workload.name == "envoy" else "/metrics"
        assert annotations.get("prometheus.io/path", "/metrics") == expected_path, workload.id
        for port_name in peer.ports:
            allowed = port_name == "metrics" or (workload.name == "envoy" and port_name == "http")
            assert can_connect(objects, prometheus, peer, port_name) == allowed, (
                f"monitoring -> {workload.id}:{port_name}"
            )
        # Other namespaces reach Envoy's public port like any client, nothing else.
        assert not can_connect(objects, elsewhere, peer, "metrics"), workload.id
    assert scraped == {"envoy", *GRPC_SERVICES}
    envoy = next(w for w in workloads(objects) if w.name == "envoy")
    assert envoy.ports()["metrics"] == ENVOY_METRICS_PORT


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_envoy_reaches_the_grpc_services(overlay: str) -> None:
    objects = rendered(overlay)
    pods = peers(overlay)
    for name in GRPC_SERVICES:
        service = pods[name]
        for source in pods.values():
            expected = source.name == "Deployment/envoy"
            assert can_connect(objects, source, service, "grpc") == expected, source.name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_services_and_jobs_reach_redis_nats_and_mysql(overlay: str) -> None:
    objects = rendered(overlay)
    pods = peers(overlay)
    clients = {"quiz", "score", "leaderboard", "stream", "sync", "migrate"}
    in_cluster = {name: pods[name] for name in BACKENDS if name in pods}
    if overlay == "dev":
        assert set(in_cluster) == set(BACKENDS)
    for source_name, source in pods.items():
        expected = source_name in clients
        # In-cluster backends (dev) ...
        for backend_name, backend in in_cluster.items():
            port_name = BACKENDS[backend_name]
            assert can_connect(objects, source, backend, port_name) == expected, (
                f"{source_name} -> {backend_name}"
            )
        # ... and managed ones outside the cluster (prod), by their ports.
        for number in BACKEND_PORTS.values():
            assert can_connect(objects, source, Peer.outside("10.20.0.5"), number) == expected, (
                f"{source_name} -> outside:{number}"
            )
    stranger = Peer("a pod of ours without a role", {"app": "debug"})
    for backend_name, backend in in_cluster.items():
        assert not can_connect(objects, stranger, backend, BACKENDS[backend_name])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_can_resolve_names(overlay: str) -> None:
    objects = rendered(overlay)
    dns = Peer.outside("10.96.0.10")
    for peer in peers(overlay).values():
        assert can_connect(objects, peer, dns, 53, "UDP"), peer.name


# --- secrets and configuration --------------------------------------------------------------


def secret_values(objects: list[Obj]) -> list[str]:
    values = []
    for secret in find(objects, "Secret"):
        values += [base64.b64decode(v).decode() for v in secret.get("data", {}).values()]
        values += list(secret.get("stringData", {}).values())
    return values


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_token_keys_never_come_from_the_repo(overlay: str) -> None:
    objects = rendered(overlay)
    assert not find(objects, "Secret", "quizmesh-keys")
    assert not [v for v in secret_values(objects) if "PRIVATE KEY" in v]
    assert "PRIVATE KEY" not in yaml.safe_dump_all(objects)
    # ... and the pods expect them from the quizmesh-keys Secret.
    names = {
        v["secret"]["secretName"]
        for w in workloads(objects)
        for v in w.spec.get("volumes", [])
        if "secret" in v
    }
    assert names == {"quizmesh-keys"}


def test_only_the_quiz_service_holds_the_signing_key() -> None:
    for workload in workloads(rendered("prod")):
        files = [
            item["key"]
            for v in workload.spec.get("volumes", [])
            if "secret" in v
            for item in v["secret"]["items"]
        ]
        assert ("signing-key.pem" in files) == (workload.name == "quiz"), workload.name


def test_prod_takes_backends_from_a_secret_made_outside_the_repo() -> None:
    objects = rendered("prod")
    assert not find(objects, "Secret")
    for workload in workloads(objects):
        if workload.spec["containers"][0]["image"].startswith("envoyproxy/"):
            continue
        sources = workload.spec["containers"][0]["envFrom"]
        assert {"secretRef": {"name": "quizmesh-backends"}} in sources, workload.id


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configmap_makes_valid_settings(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = rendered(overlay)
    quiz = next(w for w in workloads(objects) if w.name == "quiz")
    for key, value in env_of(quiz.spec["containers"][0], objects).items():
        monkeypatch.setenv(key, value)
    settings = CommonSettings()  # production refuses dev key paths: these are not
    expected = "production" if overlay == "prod" else "development"
    assert settings.environment == expected
    assert settings.jwks_file == Path("/etc/quizmesh/keys/jwks.json")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_the_restricted_pod_security_standard(overlay: str) -> None:
    (namespace,) = find(rendered(overlay), "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- production scaling ---------------------------------------------------------------------


def test_prod_autoscales_the_stateless_services() -> None:
    objects = rendered("prod")
    targets = {}
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment"
        targets[ref["name"]] = hpa["spec"]
    assert set(targets) == {"score", "leaderboard", "stream"}
    for name, spec in targets.items():
        deployment = one(objects, "Deployment", name)
        # An applied replica count would reset what the autoscaler chose.
        assert "replicas" not in deployment["spec"], name
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
        (server,) = deployment["spec"]["template"]["spec"]["containers"]
        assert server["resources"]["requests"]["cpu"]  # utilization is relative to it


def test_prod_runs_every_deployment_redundantly_with_a_disruption_budget() -> None:
    objects = rendered("prod")
    autoscaled = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
        for h in find(objects, "HorizontalPodAutoscaler")
    }
    budgets = find(objects, "PodDisruptionBudget")
    for deployment in find(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        replicas = autoscaled.get(name, deployment["spec"].get("replicas", 1))
        assert replicas >= 2, name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, name
        assert matching[0]["spec"]["maxUnavailable"] < replicas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_envoy_has_an_externally_reachable_service(overlay: str) -> None:
    for service in find(rendered(overlay), "Service"):
        external = service["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort")
        assert external == (overlay == "prod" and service["metadata"]["name"] == "envoy")


def test_prod_runs_the_image_from_a_registry() -> None:
    for workload in workloads(rendered("prod")):
        image = workload.spec["containers"][0]["image"]
        assert "/" in image, image


# --- development backends -------------------------------------------------------------------


def test_dev_runs_redis_nats_and_mariadb_as_statefulsets_with_volumes() -> None:
    objects = rendered("dev")
    for name in BACKENDS:
        statefulset = one(objects, "StatefulSet", name)
        claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        assert claims <= {m["name"] for m in container["volumeMounts"]}, name
    (nats,) = one(objects, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"]
    assert "--jetstream" in nats["args"]
    store = nats["args"][nats["args"].index("--store_dir") + 1]
    assert store in {m["mountPath"] for m in nats["volumeMounts"]}


# --- the keys script ------------------------------------------------------------------------


def run_keys_script(*args: str) -> Obj:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "k8s_keys.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    secret: Obj = yaml.safe_load(result.stdout)
    return secret


def secret_files(secret: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def token_roundtrip(signing_pem: bytes, jwks: bytes) -> Callable[[], None]:
    def check() -> None:
        issuer = TokenIssuer(signing_pem, "quizmesh", "quizmesh")
        verifier = TokenVerifier(json.loads(jwks), "quizmesh", "quizmesh")
        caller = verifier.verify(issuer.issue(Role.PLAYER, "p1", 60, "QUIZ0001"))
        assert (caller.role, caller.subject, caller.quiz_id) == (Role.PLAYER, "p1", "QUIZ0001")

    return check


def test_keys_script_prints_a_secret_whose_keys_work_together() -> None:
    secret = run_keys_script("--namespace", "quizmesh")
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "quizmesh-keys")
    assert secret["metadata"]["namespace"] == "quizmesh"
    files = secret_files(secret)
    token_roundtrip(files["signing-key.pem"], files["jwks.json"])()


def test_keys_script_rotation_keeps_old_tokens_valid(tmp_path: Path) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    run_generate = [sys.executable, str(REPO / "scripts" / "k8s_keys.py"), "--generate"]
    subprocess.run([*run_generate, str(old)], check=True, capture_output=True)
    subprocess.run([*run_generate, str(new)], check=True, capture_output=True)
    assert old.stat().st_mode & 0o077 == 0
    # Phase 2 of a rotation: sign with the new key, still trust the old one.
    files = secret_files(run_keys_script("--signing-key", str(new), "--trust", str(old)))
    assert files["signing-key.pem"] == new.read_bytes()
    token_roundtrip(new.read_bytes(), files["jwks.json"])()
    token_roundtrip(old.read_bytes(), files["jwks.json"])()
