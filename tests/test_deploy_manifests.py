"""Kubernetes manifests are validated against the official OpenAPI schemas, not only parsed.

`kubernetes-validate` ships the JSON schemas of each Kubernetes release, so this runs offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S_DIR = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents, f"{path.name} holds no resource"
    for doc in documents:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_kustomization_lists_every_core_manifest() -> None:
    listed = set(yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"])
    optional = {"deployment-gpu.yaml", "prometheus-adapter-rules.yaml"}
    assert {p.name for p in MANIFESTS} - optional == listed


def test_deployment_probes_use_health_routes() -> None:
    deployment = yaml.safe_load((K8S_DIR / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    gpu = yaml.safe_load((K8S_DIR / "deployment-gpu.yaml").read_text())
    limits = gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


def test_broken_manifest_is_rejected() -> None:
    """The validator really checks: a Deployment without a selector must fail."""
    deployment = yaml.safe_load((K8S_DIR / "deployment.yaml").read_text())
    del deployment["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.37.0", strict=True)
