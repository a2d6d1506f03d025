"""The Dockerfile keeps the properties the images promise, checked without a Docker daemon.

CI machines have no daemon, so the images are not built here; this reads the Dockerfile's
stages and checks what an operator relies on: serving images without torch, running as a
non-root user, with a HEALTHCHECK on the liveness route, a GPU image whose CUDA base
matches the onnxruntime-gpu wheel (built for CUDA 13), every install pinned by
constraints.txt, and a .dockerignore that keeps a local virtual environment, artifacts and
data out of the build context without leaving out what the stages copy.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SERVING = ("cpu", "gpu")


def stages() -> dict[str, dict[str, object]]:
    """Stage name -> its base and instructions, with line continuations joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out: dict[str, dict[str, object]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            current = []
            out[match.group(2)] = {"base": match.group(1), "lines": current}
        elif out:
            current.append(line)
    return out


def lines_of(name: str) -> list[str]:
    lines = stages()[name]["lines"]
    assert isinstance(lines, list)
    return lines


def test_multi_stage_with_serving_gpu_and_trainer_targets() -> None:
    assert {"wheels", "cpu", "cpu-baked", "gpu", "trainer"} <= set(stages())


@pytest.mark.parametrize("name", SERVING)
def test_serving_image_has_no_torch_runs_as_non_root_and_checks_liveness(name: str) -> None:
    lines = lines_of(name)
    installs = " ".join(line for line in lines if line.startswith("RUN"))
    assert "torch" not in installs and "[train]" not in installs
    users = [line.split()[1] for line in lines if line.startswith("USER")]
    assert users and users[-1] not in {"root", "0"}
    health = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert len(health) == 1 and "/health/live" in health[0]
    assert any(line.startswith("CMD") and "serve" in line for line in lines)


def test_gpu_image_pairs_cuda13_runtime_with_onnxruntime_gpu() -> None:
    base = str(stages()["gpu"]["base"])
    assert base.startswith("nvidia/cuda:13.") and "runtime" in base
    installs = " ".join(line for line in lines_of("gpu") if line.startswith("RUN"))
    assert "onnxruntime-gpu" in installs
    # Both wheels provide the `onnxruntime` module; the CPU one must be gone.
    assert "pip uninstall -y onnxruntime" in installs


def test_baked_image_takes_artifacts_from_a_named_context() -> None:
    """.dockerignore leaves artifacts/ out of the default context, so the baked image copies
    them from `--build-context artifacts=./artifacts` instead."""
    assert stages()["cpu-baked"]["base"] == "cpu"
    copies = [line for line in lines_of("cpu-baked") if line.startswith("COPY")]
    assert copies and all("--from=artifacts" in line for line in copies)
    assert "artifacts" in _ignored()


def _pip_installs(name: str) -> list[str]:
    return [
        part.strip()
        for line in lines_of(name)
        if line.startswith("RUN")
        for part in line.split("&&")
        if "pip install" in part
    ]


@pytest.mark.parametrize("name", ["cpu", "gpu", "trainer"])
def test_every_install_takes_the_constraints_file(name: str) -> None:
    installs = _pip_installs(name)
    assert installs
    for install in installs:
        assert "-c /wheels/constraints.txt" in install or "--no-deps" in install, install
    wheels = " ".join(lines_of("wheels"))
    assert "constraints.txt" in wheels


def test_trainer_takes_the_cpu_build_of_the_pinned_torch() -> None:
    (torch_install,) = [i for i in _pip_installs("trainer") if " torch" in i]
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_install
    assert "-c /wheels/constraints.txt" in torch_install
    pins = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert "torch==2.13.0" in pins


def test_constraints_pin_every_direct_dependency_exactly() -> None:
    """Every requirement of salecast and its train/batch/dev extras has an `==` pin."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in ("train", "batch", "dev"):
        wanted += project["optional-dependencies"][extra]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[_canonical(name)] = version
    missing = {req for req in wanted if _canonical(re.split(r"[\[<>=!~ ;]", req)[0]) not in pins}
    assert not missing, f"not in constraints.txt (run `make constraints`): {sorted(missing)}"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _ignored() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_local_state_out_and_what_the_stages_copy_in() -> None:
    ignored = _ignored()
    for path in (".venv", ".git", "artifacts", "var", "**/__pycache__", "bench/results", ".env"):
        assert path in ignored, path
    assert not any(p.startswith("!") for p in ignored), "exceptions make the list hard to read"
    copied = [
        line.split()[1:-1]
        for stage in stages()
        for line in lines_of(stage)
        if line.startswith("COPY") and "--from=" not in line
    ]
    for sources in copied:
        for source in sources:
            source = source.rstrip("/")
            assert (ROOT / source).exists(), source
            hits = [p for p in ignored if fnmatch.fnmatch(source, p) or source.startswith(p + "/")]
            assert not hits, f"{source} is copied but .dockerignore leaves it out ({hits})"
