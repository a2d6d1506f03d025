"""deploy/k8s runs in a namespace labelled `pod-security.kubernetes.io/enforce: restricted`.

No cluster here, so the Pod Security Standard's `restricted` profile (baseline included) is
checked as its documentation states it, on every pod template of both overlays; a negative
control shows the check refuses a template that breaks one rule. The NetworkPolicies are
evaluated the way a CNI applies ingress rules, for the flows that matter; Secrets are
referenced, never committed.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.k8s_render import (
    OVERLAYS,
    Resource,
    config_value,
    containers,
    find,
    matches,
    overlay,
    pod_templates,
)

# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (restricted)
ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}


def restricted_violations(template: dict[str, Any]) -> list[str]:
    """Why `template` would be refused under `restricted` (empty: admitted); plus our own
    rule that every container's root filesystem is read-only."""
    spec = template["spec"]
    pod_ctx = spec.get("securityContext", {})
    out: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"spec.{field}")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            out.append(f"volume {volume['name']}: {sorted(kinds)}")
    for container in containers(template):
        name = container["name"]
        ctx = container.get("securityContext", {})

        def effective(key: str, ctx: dict[str, Any] = ctx) -> Any:
            return ctx.get(key, pod_ctx.get(key))

        if ctx.get("privileged"):
            out.append(f"{name}: privileged")
        if effective("runAsNonRoot") is not True:
            out.append(f"{name}: runAsNonRoot")
        if effective("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        if (effective("seccompProfile") or {}).get("type") not in SECCOMP_TYPES:
            out.append(f"{name}: seccompProfile")
        if ctx.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities.drop ALL")
        if not set(caps.get("add", [])) <= {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities.add")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            out.append(f"{name}: hostPort")
        if ctx.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: readOnlyRootFilesystem")
    return out


def _templates() -> dict[str, dict[str, Any]]:
    return {name: t for o in OVERLAYS for name, t in pod_templates(overlay(o))}


@pytest.mark.parametrize("workload", sorted(_templates()))
def test_pod_template_meets_the_restricted_profile(workload: str) -> None:
    template = _templates()[workload]
    assert restricted_violations(template) == []
    assert template["spec"].get("automountServiceAccountToken") is False


def test_restricted_check_refuses_a_broken_template() -> None:
    template = copy.deepcopy(_templates()["Deployment/salecast-cpu"])
    template["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    del template["spec"]["securityContext"]["seccompProfile"]
    template["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    violations = restricted_violations(template)
    assert "salecast: allowPrivilegeEscalation" in violations
    assert "salecast: seccompProfile" in violations
    assert any(v.startswith("volume host") for v in violations)


@pytest.mark.parametrize(
    ("workload", "writable"),
    [
        ("Deployment/salecast-cpu", {"/tmp", "/var/lib/salecast"}),
        ("Deployment/salecast-gpu", {"/tmp", "/var/lib/salecast"}),
        ("StatefulSet/salecast-redis", {"/data"}),
        ("CronJob/salecast-train", {"/tmp", "/models"}),
    ],
)
def test_read_only_root_has_writable_mounts_where_the_process_writes(
    workload: str, writable: set[str]
) -> None:
    template = _templates()[workload]
    for container in containers(template):
        mounts = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert writable <= mounts, container["name"]


def _redis(resources: list[Resource]) -> dict[str, Any]:
    statefulset = find(resources, "StatefulSet", "salecast-redis")
    return dict(statefulset["spec"]["template"]["spec"]["containers"][0])


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _secret_env(container: dict[str, Any], name: str) -> dict[str, str]:
    entry = next(e for e in container["env"] if e["name"] == name)
    return dict(entry["valueFrom"]["secretKeyRef"])


def test_redis_is_valkey_with_a_password_a_memory_cap_and_no_eviction() -> None:
    redis = _redis(overlay("cpu"))
    assert redis["image"].startswith("valkey/valkey:8")
    args = redis["args"]
    assert _arg(args, "--requirepass") == "$(REDIS_PASSWORD)"
    assert _secret_env(redis, "REDIS_PASSWORD") == {"name": "salecast-redis", "key": "password"}
    assert _arg(args, "--maxmemory-policy") == "noeviction"
    assert _arg(args, "--maxmemory").endswith(("gb", "mb"))
    assert _arg(args, "--appendonly") == "yes"
    assert _arg(args, "--dir") in {m["mountPath"] for m in redis["volumeMounts"]}


@pytest.mark.parametrize("name", OVERLAYS)
def test_serving_redis_url_carries_the_password_from_the_secret(name: str) -> None:
    resources = overlay(name)
    container = find(resources, "Deployment", f"salecast-{name}")["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = [e["name"] for e in container["env"]]
    url = next(e["value"] for e in container["env"] if e["name"] == "REDIS_URL")
    assert url.startswith("redis://:$(REDIS_PASSWORD)@salecast-redis-0.salecast-redis:6379/")
    # kubelet expands $(VAR) only from variables defined before it.
    assert env.index("REDIS_PASSWORD") < env.index("REDIS_URL")
    assert _secret_env(container, "REDIS_PASSWORD") == {"name": "salecast-redis", "key": "password"}
    service = find(resources, "Service", "salecast-redis")
    assert service["spec"]["clusterIP"] == "None"  # the pod-0 DNS name exists
    assert (
        find(resources, "StatefulSet", "salecast-redis")["spec"]["serviceName"] == "salecast-redis"
    )


@pytest.mark.parametrize("name", OVERLAYS)
def test_api_keys_come_from_a_secret_mounted_as_a_folder(name: str) -> None:
    resources = overlay(name)
    pod = find(resources, "Deployment", f"salecast-{name}")["spec"]["template"]["spec"]
    keys_file = config_value(resources, "salecast-config", "SALECAST_API_KEYS_FILE")
    mount = next(
        m
        for m in pod["containers"][0]["volumeMounts"]
        if keys_file.startswith(m["mountPath"] + "/")
    )
    assert "subPath" not in mount, "a subPath mount never sees a rotated key file"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "salecast-api-keys"
    # `kubectl create secret generic salecast-api-keys --from-file=keys.txt` names the key so.
    assert keys_file.removeprefix(mount["mountPath"] + "/") == "keys.txt"


def test_no_secret_is_committed() -> None:
    for name in OVERLAYS:
        assert not [r for r in overlay(name) if r["kind"] == "Secret"]


# --- NetworkPolicy ------------------------------------------------------------------------------

NAMESPACE = {"kubernetes.io/metadata.name": "salecast"}
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


def ingress_allowed(
    policies: list[Resource],
    source: dict[str, str],
    source_namespace: dict[str, str],
    target: dict[str, str],
    port: int,
) -> bool:
    """Whether a TCP connection to `target`'s `port` is admitted (all pods in one namespace,
    `NAMESPACE`, the source possibly elsewhere): a pod no policy selects takes anything; a
    selected one takes what some rule of some selecting policy allows."""
    selecting = [
        p
        for p in policies
        if matches(p["spec"]["podSelector"], target) and "Ingress" in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            for peer in rule.get("from", []):
                ns_selector = peer.get("namespaceSelector")
                in_namespace = (
                    matches(ns_selector, source_namespace)
                    if ns_selector is not None
                    else source_namespace == NAMESPACE
                )
                pod_ok = matches(peer.get("podSelector", {}), source)
                if in_namespace and pod_ok:
                    return True
    return False


@pytest.mark.parametrize("name", OVERLAYS)
def test_network_policies_let_only_salecast_reach_redis(name: str) -> None:
    resources = overlay(name)
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"]
    server = find(resources, "Deployment", f"salecast-{name}")["spec"]["template"]["metadata"][
        "labels"
    ]
    redis = find(resources, "StatefulSet", "salecast-redis")["spec"]["template"]["metadata"][
        "labels"
    ]
    trainer = find(resources, "CronJob", "salecast-train")["spec"]["jobTemplate"]["spec"][
        "template"
    ]["metadata"]["labels"]
    other = {"app": "something-else"}
    assert ingress_allowed(policies, server, NAMESPACE, redis, 6379)
    assert not ingress_allowed(policies, trainer, NAMESPACE, redis, 6379)
    assert not ingress_allowed(policies, other, NAMESPACE, redis, 6379)
    assert not ingress_allowed(policies, server, {"kubernetes.io/metadata.name": "x"}, redis, 6379)
    assert not ingress_allowed(policies, server, NAMESPACE, redis, 8000)
    # salecast's HTTP port: anyone in the namespace and Prometheus; not other namespaces.
    assert ingress_allowed(policies, other, NAMESPACE, server, 8000)
    assert ingress_allowed(policies, PROMETHEUS, MONITORING, server, 8000)
    assert not ingress_allowed(policies, other, MONITORING, server, 8000)
    assert not ingress_allowed(policies, other, {"kubernetes.io/metadata.name": "x"}, server, 8000)
    assert not ingress_allowed(policies, other, NAMESPACE, server, 6379)
    # The training pods take no connections at all.
    assert not ingress_allowed(policies, server, NAMESPACE, trainer, 8000)
