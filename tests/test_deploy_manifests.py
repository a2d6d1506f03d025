"""The Kubernetes overlays: valid against the official schemas, disjoint, and shaped as promised.

`kubernetes-validate` ships the JSON schemas of each Kubernetes release, so this runs offline;
each overlay is composed from its kustomization by tests/k8s_render.py (and cross-checked
against `kubectl kustomize` where kubectl is installed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_render import (
    K8S_DIR,
    OVERLAYS,
    Resource,
    config_value,
    containers,
    find,
    listed_files,
    load_documents,
    matches,
    overlay,
    pod_templates,
    render,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S_VERSION = "1.37.0"


def _server(resources: list[Resource], accelerator: str) -> Resource:
    return find(resources, "Deployment", f"salecast-{accelerator}")


def _pod_labels(deployment: Resource) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def _container(deployment: Resource) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_overlay_resource_is_valid_kubernetes(name: str) -> None:
    resources = overlay(name)
    assert len(resources) >= 10
    for doc in resources:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_manifest_file_is_applied_by_a_kustomization() -> None:
    listed = set()
    for directory in [K8S_DIR / "overlays" / n for n in OVERLAYS] + [K8S_DIR / "monitoring"]:
        listed |= listed_files(directory)
    on_disk = {p.resolve() for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk - listed == set(), "manifests no kustomization applies"
    assert listed - on_disk == set()


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_names_each_resource_once(name: str) -> None:
    keys = [(r["kind"], r["metadata"]["name"]) for r in overlay(name)]
    assert len(keys) == len(set(keys))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("name", [*OVERLAYS, "../monitoring"])
def test_render_agrees_with_kubectl_kustomize(name: str) -> None:
    directory = (K8S_DIR / "overlays" / name).resolve()
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    key = lambda r: (r["kind"], r["metadata"]["name"])  # noqa: E731
    ours = sorted(render(directory), key=key)
    theirs = sorted((d for d in yaml.safe_load_all(out) if d), key=key)
    assert ours == theirs


def test_cpu_and_gpu_pods_each_have_their_own_selector_hpa_and_pdb() -> None:
    fleets = {name: overlay(name) for name in OVERLAYS}
    pods = {name: _pod_labels(_server(fleets[name], name)) for name in OVERLAYS}
    for name, resources in fleets.items():
        other = next(n for n in OVERLAYS if n != name)
        deployment = _server(resources, name)
        selector = deployment["spec"]["selector"]
        pdb = find(resources, "PodDisruptionBudget")
        hpa = find(resources, "HorizontalPodAutoscaler")
        assert matches(selector, pods[name]) and not matches(selector, pods[other])
        assert matches(pdb["spec"]["selector"], pods[name])
        assert not matches(pdb["spec"]["selector"], pods[other]), f"{name} PDB counts {other} pods"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment["metadata"]["name"],
        }
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        # The one Service sends traffic to CPU and GPU pods alike.
        service = {"matchLabels": find(resources, "Service", "salecast")["spec"]["selector"]}
        assert matches(service, pods["cpu"]) and matches(service, pods["gpu"])
    assert (
        _server(fleets["cpu"], "cpu")["metadata"]["name"]
        != _server(fleets["gpu"], "gpu")["metadata"]["name"]
    )


def test_overlays_share_the_base_unchanged() -> None:
    """Applying both overlays (a mixed fleet) applies the base twice: it must be the same."""
    cpu = {(r["kind"], r["metadata"]["name"]): r for r in overlay("cpu")}
    gpu = {(r["kind"], r["metadata"]["name"]): r for r in overlay("gpu")}
    shared = set(cpu) & set(gpu)
    assert {kind for kind, _ in shared} >= {"ConfigMap", "StatefulSet", "Service", "CronJob"}
    assert all(cpu[k] == gpu[k] for k in shared)


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_use_health_routes_and_gpu_pods_request_a_gpu(name: str) -> None:
    container = _container(_server(overlay(name), name))
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    limits = container["resources"]["limits"]
    assert (limits.get("nvidia.com/gpu") == "1") == (name == "gpu")


@pytest.mark.parametrize("name", OVERLAYS)
def test_shutdown_drains_within_the_grace_period(name: str) -> None:
    """preStop delay, the shutdown delay (readiness 503, still serving), then the drain: all
    end before kubelet's SIGKILL, and the readiness probe sees the 503 while the listener is
    still open."""
    resources = overlay(name)
    pod = _server(resources, name)["spec"]["template"]["spec"]
    container = _container(_server(resources, name))
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    delay = float(config_value(resources, "salecast-config", "SALECAST_SHUTDOWN_DELAY_S"))
    drain = float(config_value(resources, "salecast-config", "SALECAST_DRAIN_TIMEOUT_S"))
    assert pre_stop >= 3, "endpoints need a few seconds to drop a terminating pod"
    assert pod["terminationGracePeriodSeconds"] > pre_stop + delay + drain
    readiness = container["readinessProbe"]
    seen_after = readiness["periodSeconds"] * readiness.get("failureThreshold", 3)
    assert seen_after <= delay


@pytest.mark.parametrize("name", OVERLAYS)
def test_serving_pods_read_settings_keys_and_state_ttl_from_config(name: str) -> None:
    resources = overlay(name)
    container = _container(_server(resources, name))
    assert {"configMapRef": {"name": "salecast-config"}} in container["envFrom"]
    assert config_value(resources, "salecast-config", "SALECAST_STATE_TTL_SECONDS") == "2592000"
    # Probes and scrapes stay open: kubelet and Prometheus carry no API key.
    env_names = {e["name"] for e in container.get("env", [])}
    config = find(resources, "ConfigMap", "salecast-config")["data"]
    assert "SALECAST_AUTH_PROBES" not in env_names | set(config)


def test_cronjob_trains_and_publishes_every_model_from_the_data_volume() -> None:
    """Not `demo` (which only fills missing artifacts): `train <model>` for every model, with data
    and format from the salecast-train ConfigMap, parsed by the real CLI."""
    from training.cli import build_parser
    from training.data import FORMATS
    from training.jobs import JOBS

    resources = overlay("cpu")
    cronjob = find(resources, "CronJob", "salecast-train")
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    settings = find(resources, "ConfigMap", "salecast-train")["data"]
    trained: list[str] = []
    for container in containers(template):
        assert {"configMapRef": {"name": "salecast-train"}} in container["envFrom"]
        args = [
            re.sub(r"\$\((\w+)\)", lambda m: settings[m.group(1)], arg) for arg in container["args"]
        ]
        assert "demo" not in args
        parsed = build_parser(with_jobs=True).parse_args(args)
        assert parsed.command == "train"
        assert str(parsed.artifacts) == "/models"
        kind = FORMATS[parsed.format].kind
        assert kind in (
            {"sales", "both"} if parsed.model in {"stmp", "dinop"} else {"events", "both"}
        )
        assert all(path.startswith("/data/") for path in parsed.data)
        trained.append(parsed.model)
    assert sorted(trained) == sorted(JOBS)  # every model the CLI can train
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for c in containers(template) for m in c["volumeMounts"]}
    assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"] == (
        "salecast-models"
    )
    assert not mounts["/models"].get("readOnly", False)
    data_claim = volumes[mounts["/data"]["name"]]["persistentVolumeClaim"]["claimName"]
    find(resources, "PersistentVolumeClaim", data_claim)


def test_serving_pods_read_the_volume_the_cronjob_writes() -> None:
    for name in OVERLAYS:
        resources = overlay(name)
        spec = _server(resources, name)["spec"]["template"]["spec"]
        claims = {
            v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert claims == {"salecast-models"}
        artifacts = config_value(resources, "salecast-config", "SALECAST_ARTIFACTS_DIR")
        assert any(
            m["mountPath"] == artifacts
            for m in _container(_server(resources, name))["volumeMounts"]
        )


def test_broken_manifest_is_rejected() -> None:
    """The validator really checks: a Deployment without a selector must fail."""
    deployment = load_documents(K8S_DIR / "overlays" / "cpu" / "deployment.yaml")[0]
    del deployment["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_renderer_refuses_what_it_cannot_compose(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(ValueError, match="namePrefix"):
        render(tmp_path)


def test_every_workload_is_listed() -> None:
    names = {n for name in OVERLAYS for n, _ in pod_templates(overlay(name))}
    assert names == {
        "Deployment/salecast-cpu",
        "Deployment/salecast-gpu",
        "StatefulSet/salecast-redis",
        "CronJob/salecast-train",
    }
