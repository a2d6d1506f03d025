"""The model registry: newest valid version, refusals, atomic swaps under load, hooks, polling."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.errors import InvalidInput, NotFound, NotReady
from service.metrics import MODEL_LOADS
from service.runtime.registry import LoadedModel, ModelRegistry
from tests.test_runtime_batcher import WINDOW, scale_artifact, table_graph
from training.artifacts import write_artifact


def settings(root: Path, **kw: object) -> Settings:
    base: dict[str, object] = {
        "artifacts_dir": root,
        "execution_provider": "cpu",
        "intra_op_threads": 1,
        "poll_interval_s": 0,
        "batch_max_wait_ms": 1.0,
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def x(rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.ones((rows, 3), np.float32)}


def corrupt(version_dir: Path) -> None:
    graph = version_dir / "score.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))


def mismatch(version_dir: Path) -> None:
    """Say in the manifest that output y is int64 (the graph makes float32)."""
    path = version_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["graphs"]["score"]["outputs"][0]["dtype"] = "int64"
    path.write_text(json.dumps(manifest))


def test_no_models_means_not_ready_per_model(tmp_path: Path) -> None:
    async def main() -> None:
        registry = ModelRegistry(settings(tmp_path / "missing"))
        await registry.start()
        assert registry.list() == []
        with pytest.raises(NotReady):
            registry.get("toy")
        with pytest.raises(NotFound):
            await registry.reload("toy")
        await registry.stop()

    asyncio.run(main())


def test_newest_valid_version_loads_and_staging_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)
    scale_artifact(root, "0002", 2.0, tmp=tmp_path)
    (root / "toy" / ".0003-staging").mkdir()

    async def main() -> None:
        registry = ModelRegistry(settings(root))
        await registry.start()
        loaded = registry.get("toy")
        assert loaded.version == "0002" and loaded.warm
        assert loaded.provider == "CPUExecutionProvider"
        out = await loaded.infer("score", x(2))
        np.testing.assert_allclose(out["y"], 2.0)
        np.testing.assert_allclose(loaded.run_direct("score", x())["y"], 2.0)
        await registry.stop()

    asyncio.run(main())


def unreadable(version_dir: Path) -> None:
    (version_dir / "manifest.json").write_text("{")


@pytest.mark.parametrize(
    "damage", [corrupt, mismatch, unreadable], ids=["sha", "manifest-vs-graph", "bad-json"]
)
def test_broken_version_is_refused_and_old_keeps_serving(
    tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)

    async def main() -> None:
        registry = ModelRegistry(settings(root))
        await registry.start()
        assert registry.get("toy").version == "0001"
        bad = scale_artifact(root, "0002", 2.0, tmp=tmp_path)
        damage(bad)  # type: ignore[operator]
        with caplog.at_level(logging.ERROR, logger="service.runtime.registry"):
            [outcome] = await registry.reload("toy")
        assert outcome.status == "refused" and outcome.version == "0001"
        assert outcome.reason is not None and outcome.reason.startswith("0002: ")
        loaded = registry.get("toy")
        assert loaded.version == "0001"
        np.testing.assert_allclose((await loaded.infer("score", x()))["y"], 1.0)
        [refusal] = registry.refused("toy")["toy"]
        assert refusal.version == "0002"
        assert any(w in refusal.reason for w in ("score.onnx", "output y", "manifest.json"))
        record = next(r for r in caplog.records if r.getMessage() == "model version refused")
        assert record.version == "0002" and str(bad) in record.path  # type: ignore[attr-defined]
        await registry.stop()

    asyncio.run(main())


def test_startup_falls_back_to_older_valid_version(tmp_path: Path) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)
    mismatch(scale_artifact(root, "0002", 2.0, tmp=tmp_path))

    async def main() -> None:
        registry = ModelRegistry(settings(root))
        await registry.start()
        assert registry.get("toy").version == "0001"
        assert [r.version for r in registry.refused("toy")["toy"]] == ["0002"]
        await registry.stop()

    asyncio.run(main())


def test_swap_under_concurrent_requests_loses_none(tmp_path: Path) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)

    async def main() -> None:
        registry = ModelRegistry(settings(root, batch_max_size=16))

        async def one(i: int) -> float:
            loaded = registry.get("toy")  # a request takes its version once
            await asyncio.sleep(0.001 * (i % 7))  # ... and may use it after a swap
            out = await loaded.infer("score", {"x": np.full((1, 3), 1.0, np.float32)})
            return float(out["y"][0, 0])

        await registry.start()
        old = registry.get("toy")
        first = [asyncio.create_task(one(i)) for i in range(150)]
        await asyncio.sleep(0)
        scale_artifact(root, "0002", 2.0, tmp=tmp_path)
        reload = asyncio.create_task(registry.reload())
        during = [asyncio.create_task(one(i)) for i in range(150)]
        [outcome] = await reload
        after = [asyncio.create_task(one(i)) for i in range(50)]
        results = await asyncio.gather(*first, *during, *after)
        assert outcome.status == "loaded" and registry.get("toy").version == "0002"
        assert set(results) == {1.0, 2.0}
        assert results[-50:] == [2.0] * 50
        # The retired version still answers a late caller (directly, its batcher is closed).
        await asyncio.sleep(0.05)
        np.testing.assert_allclose((await old.infer("score", x()))["y"], 1.0)
        await registry.stop()

    asyncio.run(main())


def shared_artifact(root: Path, tmp: Path, version: str) -> Path:
    src = table_graph(tmp / f"table-{version}.onnx")
    return write_artifact(
        root,
        "tab",
        {"score": src},
        data_window=WINDOW,
        shared_inputs={"score": ["table"]},
        version=version,
    )


def test_load_hook_sets_shared_inputs_and_a_failing_hook_refuses(tmp_path: Path) -> None:
    root = tmp_path / "art"
    shared_artifact(root, tmp_path, "0001")
    table = np.eye(5, 4, dtype=np.float32)
    seen: list[tuple[str, bool]] = []

    async def main() -> None:
        registry = ModelRegistry(settings(root))

        async def hook(loaded: LoadedModel) -> None:
            seen.append((loaded.version, loaded.warm))
            if loaded.version == "0002":
                raise ValueError("table file unreadable")
            loaded.set_shared_inputs("score", {"table": table})

        registry.add_load_hook("tab", hook)
        await registry.start()
        loaded = registry.get("tab")
        assert loaded.warm
        out = await loaded.infer("score", {"x": np.ones((3, 4), np.float32)})
        np.testing.assert_allclose(out["scores"], np.ones((3, 4)) @ table.T)
        with pytest.raises(Exception, match="table"):
            await loaded.infer("score", {"x": np.ones((1, 4), np.float32), "table": table})
        shared_artifact(root, tmp_path, "0002")
        [outcome] = await registry.reload("tab")
        assert outcome.status == "refused" and registry.get("tab").version == "0001"
        assert "table file unreadable" in registry.refused("tab")["tab"][0].reason
        await registry.stop()

    asyncio.run(main())
    assert seen == [("0001", False), ("0002", False)]


def test_graph_with_unset_shared_input_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "art"
    shared_artifact(root, tmp_path, "0001")

    async def main() -> None:
        registry = ModelRegistry(settings(root))
        await registry.start()  # no hook sets `table`
        with pytest.raises(NotReady):
            registry.get("tab")
        assert "shared inputs" in registry.refused("tab")["tab"][0].reason
        await registry.stop()

    asyncio.run(main())


def test_poller_picks_up_a_new_version(tmp_path: Path) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)

    async def main() -> None:
        registry = ModelRegistry(settings(root, poll_interval_s=0.05))
        await registry.start()
        scale_artifact(root, "0002", 2.0, tmp=tmp_path)
        for _ in range(100):
            if registry.get("toy").version == "0002":
                break
            await asyncio.sleep(0.05)
        assert registry.get("toy").version == "0002"
        await registry.stop()

    asyncio.run(main())


def test_inputs_are_checked_against_the_manifest(tmp_path: Path) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)

    async def main() -> None:
        registry = ModelRegistry(settings(root))
        await registry.start()
        loaded = registry.get("toy")
        with pytest.raises(InvalidInput) as info:
            await loaded.infer("score", {"x": np.ones((2, 5), np.float32)})
        assert info.value.field == "x"
        with pytest.raises(InvalidInput):
            await loaded.infer("score", {})
        with pytest.raises(NotFound):
            await loaded.infer("nope", x())
        await registry.stop()

    asyncio.run(main())


def test_a_version_copied_in_pieces_is_served_once_complete(tmp_path: Path) -> None:
    """`cp -r` into the artifacts folder is not atomic: the poller meets the manifest before
    the graph. The half-copied version is refused (old keeps serving), not re-hashed while
    nothing changes, and served once the copy completes."""
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)
    staged = scale_artifact(tmp_path / "elsewhere", "0002", 2.0, tmp=tmp_path)

    async def main() -> None:
        registry = ModelRegistry(settings(root, poll_interval_s=0.05))
        await registry.start()
        target = root / "toy" / "0002"
        target.mkdir()
        (target / "manifest.json").write_bytes((staged / "manifest.json").read_bytes())
        for _ in range(100):  # the poller has seen the incomplete copy
            if registry.refused("toy")["toy"]:
                break
            await asyncio.sleep(0.05)
        [refusal] = registry.refused("toy")["toy"]
        assert refusal.version == "0002" and registry.get("toy").version == "0001"
        refusals = MODEL_LOADS.labels(model="toy", outcome="refused")
        seen = refusals._value.get()
        await asyncio.sleep(0.3)  # six polls over unchanged files: refused once, not retried
        assert refusals._value.get() == seen
        for part in staged.iterdir():
            if part.name != "manifest.json":
                (target / part.name).write_bytes(part.read_bytes())
        for _ in range(100):
            if registry.get("toy").version == "0002":
                break
            await asyncio.sleep(0.05)
        assert registry.get("toy").version == "0002"
        np.testing.assert_allclose((await registry.get("toy").infer("score", x()))["y"], 2.0)
        await registry.stop()

    asyncio.run(main())
