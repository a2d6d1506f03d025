"""deploy/k8s rendered as `kubectl apply -k` would apply it, without kubectl.

CI machines have no kubectl, so the tests compose each kustomization themselves: its
`resources`, files or folders with a kustomization of their own, depth first, in order. That is
all deploy/k8s uses; a kustomization with any other field (patches, name prefixes, generators)
is refused here, so nobody adds one and gets tests that silently check something else. Where
kubectl is on PATH, tests/test_deploy_manifests.py also renders with `kubectl kustomize` and
checks both agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

K8S_DIR = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources"}

Resource = dict[str, Any]


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization(directory: Path) -> dict[str, Any]:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(data) - KUSTOMIZATION_FIELDS
    if unsupported:
        raise ValueError(
            f"{directory}/kustomization.yaml uses {sorted(unsupported)}: tests/k8s_render.py "
            "composes `resources` only"
        )
    return data


def render(directory: Path) -> list[Resource]:
    """Every resource the kustomization in `directory` applies, in kustomize's input order."""
    out: list[Resource] = []
    for entry in kustomization(directory)["resources"]:
        target = (directory / entry).resolve()
        out.extend(render(target) if target.is_dir() else load_documents(target))
    return out


def listed_files(directory: Path) -> set[Path]:
    """The manifest files a kustomization (and those it includes) names."""
    files: set[Path] = set()
    for entry in kustomization(directory)["resources"]:
        target = (directory / entry).resolve()
        files |= listed_files(target) if target.is_dir() else {target}
    return files


def overlay(name: str) -> list[Resource]:
    return render(K8S_DIR / "overlays" / name)


def find(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    matches = [
        r
        for r in resources
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_templates(resources: list[Resource]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("Kind/name", pod template) for every workload that runs pods."""
    for r in resources:
        name = f"{r['kind']}/{r['metadata']['name']}"
        if r["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield name, r["spec"]["template"]
        elif r["kind"] == "CronJob":
            yield name, r["spec"]["jobTemplate"]["spec"]["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def config_value(resources: list[Resource], configmap: str, key: str) -> str:
    return str(find(resources, "ConfigMap", configmap)["data"][key])
