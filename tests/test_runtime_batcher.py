"""The micro-batcher over real ONNX Runtime sessions of tiny graphs built with `onnx.helper`.

Also holds the graph/artifact factories the registry and API tests import (no torch needed).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from service.errors import InvalidInput, NotReady, Overloaded
from service.runtime.batcher import MicroBatcher
from service.runtime.manifest import DataWindow
from service.runtime.session import GraphSession
from training.artifacts import graph_spec, write_artifact

WINDOW = DataWindow(start="2026-01-01T00:00:00Z", end="2026-01-31T00:00:00Z", sha256="0" * 64)


def scale_graph(path: Path, scale: float, dims: Sequence[int | str] = ("N", 3)) -> Path:
    """`y = x * scale`, x and y float32 of shape `dims` (a string dim is dynamic)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [float(scale)])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "scale", [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def table_graph(path: Path, items: int = 5, dim: int = 4) -> Path:
    """`scores = x @ table^T`; `table` [items, dim] is a shared (per-version) input."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])
    table = helper.make_tensor_value_info("table", TensorProto.FLOAT, [items, dim])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", items])
    nodes = [
        helper.make_node("Transpose", ["table"], ["table_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "table_t"], ["scores"]),
    ]
    graph = helper.make_graph(nodes, "table", [x, table], [scores])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def scale_artifact(
    root: Path, version: str, scale: float, model: str = "toy", tmp: Path | None = None
) -> Path:
    """A one-graph (`score`) artifact that multiplies by `scale` (tells versions apart)."""
    work = tmp or root
    work.mkdir(parents=True, exist_ok=True)
    src = scale_graph(work / f"src-{model}-{version}.onnx", scale)
    out = write_artifact(
        root,
        model,
        {"score": src},
        data_window=WINDOW,
        metrics={"auc": 0.5 + scale / 100},
        version=version,
    )
    src.unlink()
    return out


def session_for(path: Path, shared: Mapping[str, list[str]] | None = None) -> GraphSession:
    spec = graph_spec(path, (shared or {}).get("g"))
    return GraphSession(path, spec, provider="cpu", intra_op_threads=1)


def test_concurrent_requests_share_calls_and_get_their_own_rows(tmp_path: Path) -> None:
    session = session_for(scale_graph(tmp_path / "g.onnx", 2.0))
    calls: list[int] = []

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(feeds["x"].shape[0])
        return session.run(feeds)

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = MicroBatcher(run, model="t", graph="g", max_rows=64, max_wait_s=0.005)
        inputs = [np.full((1 + i % 3, 3), i, dtype=np.float32) for i in range(40)]
        try:
            outs = await asyncio.gather(*(batcher.submit({"x": x}) for x in inputs))
        finally:
            await batcher.close()
        for x, out in zip(inputs, outs, strict=True):
            np.testing.assert_allclose(out["y"], x * 2)
        return outs

    asyncio.run(main())
    assert sum(calls) == sum(1 + i % 3 for i in range(40))
    assert len(calls) < 40, "concurrent requests were not coalesced"
    assert max(calls) <= 64


def test_different_trailing_shapes_are_not_concatenated(tmp_path: Path) -> None:
    session = session_for(scale_graph(tmp_path / "g.onnx", 3.0, dims=("N", "D")))
    seen: list[tuple[int, ...]] = []

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(feeds["x"].shape)
        return session.run(feeds)

    async def main() -> None:
        batcher = MicroBatcher(run, model="t", graph="g", max_rows=64, max_wait_s=0.005)
        a = [np.ones((2, 3), np.float32) * i for i in range(5)]
        b = [np.ones((1, 5), np.float32) * i for i in range(5)]
        mixed = [x for pair in zip(a, b, strict=True) for x in pair]
        outs = await asyncio.gather(*(batcher.submit({"x": x}) for x in mixed))
        await batcher.close()
        for x, out in zip(mixed, outs, strict=True):
            np.testing.assert_allclose(out["y"], x * 3)

    asyncio.run(main())
    assert {shape[1] for shape in seen} == {3, 5}
    assert len(seen) < 10


def test_full_queue_raises_overloaded_and_close_finishes_queued(tmp_path: Path) -> None:
    session = session_for(scale_graph(tmp_path / "g.onnx", 1.0))
    entered, release = threading.Event(), threading.Event()

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        entered.set()
        release.wait(10)
        return session.run(feeds)

    async def main() -> None:
        batcher = MicroBatcher(run, model="t", graph="g", max_rows=1, max_wait_s=0, capacity=2)
        first = asyncio.create_task(batcher.submit({"x": np.ones((1, 3), np.float32)}))
        await asyncio.to_thread(entered.wait, 10)  # the worker holds request 1 in ORT
        queued = [
            asyncio.create_task(batcher.submit({"x": np.full((1, 3), i, np.float32)}))
            for i in (2, 3)
        ]
        await asyncio.sleep(0.01)
        assert batcher.depth == 2
        with pytest.raises(Overloaded) as info:
            await batcher.submit({"x": np.ones((1, 3), np.float32)})
        assert info.value.retry_after_s > 0
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0.01)
        with pytest.raises(NotReady):
            await batcher.submit({"x": np.ones((1, 3), np.float32)})
        release.set()
        await closing
        results = [await first] + [await q for q in queued]
        assert [float(r["y"][0, 0]) for r in results] == [1.0, 2.0, 3.0]

    asyncio.run(main())


def test_one_call_never_exceeds_max_rows_unless_one_request_does(tmp_path: Path) -> None:
    session = session_for(scale_graph(tmp_path / "g.onnx", 1.0))
    calls: list[int] = []

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(feeds["x"].shape[0])
        return session.run(feeds)

    async def main() -> None:
        batcher = MicroBatcher(run, model="t", graph="g", max_rows=8, max_wait_s=0.002)
        sizes = [3, 3, 3, 3, 20, 1]
        outs = await asyncio.gather(
            *(batcher.submit({"x": np.ones((n, 3), np.float32)}) for n in sizes)
        )
        await batcher.close()
        assert [o["y"].shape[0] for o in outs] == sizes

    asyncio.run(main())
    assert all(n <= 8 for n in calls if n != 20)
    assert sum(calls) == 33


def test_bad_inputs_are_invalid_input(tmp_path: Path) -> None:
    session = session_for(scale_graph(tmp_path / "g.onnx", 1.0))

    async def main() -> None:
        batcher = MicroBatcher(session.run, model="t", graph="g")
        with pytest.raises(InvalidInput):
            await batcher.submit({"x": np.ones((0, 3), np.float32)})
        with pytest.raises(InvalidInput):
            await batcher.submit({})
        await batcher.close()

    asyncio.run(main())
    with pytest.raises(InvalidInput) as info:
        session.coerce("x", np.ones((2, 4), np.float32))
    assert info.value.field == "x"
    with pytest.raises(InvalidInput):
        session.coerce("x", np.ones((2, 3), np.complex64))
    assert session.coerce("x", np.ones((2, 3), np.float64)).dtype == np.float32


def test_shared_inputs_are_bound_once_not_concatenated(tmp_path: Path) -> None:
    path = table_graph(tmp_path / "t.onnx")
    session = session_for(path, {"g": ["table"]})
    assert not session.shared_ready
    table = np.arange(20, dtype=np.float32).reshape(5, 4)
    session.set_shared_inputs({"table": table})

    async def main() -> None:
        batcher = MicroBatcher(session.run, model="t", graph="g", max_wait_s=0.002)
        xs = [np.full((2, 4), i, np.float32) for i in range(6)]
        outs = await asyncio.gather(*(batcher.submit({"x": x}) for x in xs))
        await batcher.close()
        for x, out in zip(xs, outs, strict=True):
            np.testing.assert_allclose(out["scores"], x @ table.T)

    asyncio.run(main())


def _thread_recording_run(session: GraphSession, threads: list[str], delay_s: float = 0.0) -> Any:
    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread().name)
        if delay_s:
            time.sleep(delay_s)
        return session.run(feeds)

    return run


def test_cheap_joined_calls_run_on_the_loop_once_measured(tmp_path: Path) -> None:
    """The first joined call goes to the thread (no measurement yet), later cheap ones run on
    the loop with the same answers; a plain call always queues; bound 0 never inlines."""
    session = session_for(scale_graph(tmp_path / "g.onnx", 3.0))
    threads: list[str] = []

    async def main(bound_s: float) -> int:
        batcher = MicroBatcher(
            _thread_recording_run(session, threads), model="t", graph="g", inline_below_s=bound_s
        )
        try:
            for i in range(4):
                x = np.full((2, 3), i, dtype=np.float32)
                out = await batcher.submit({"x": x}, joined=True)
                np.testing.assert_allclose(out["y"], x * 3)
            await batcher.submit({"x": np.ones((2, 3), np.float32)})  # not joined
        finally:
            await batcher.close()
        return batcher.inline_calls

    main_thread = threading.current_thread().name
    assert asyncio.run(main(1.0)) == 3
    assert threads[0].startswith("ort-g") and threads[-1].startswith("ort-g")
    assert threads[1:4] == [main_thread] * 3
    threads.clear()
    assert asyncio.run(main(0.0)) == 0
    assert all(t.startswith("ort-g") for t in threads)


def test_joined_calls_over_the_bound_or_behind_a_running_call_use_the_thread(
    tmp_path: Path,
) -> None:
    """A call estimated over the bound (more rows than the measured calls) and a call while
    another runs on the thread both queue, so a session's calls never overlap."""
    session = session_for(scale_graph(tmp_path / "g.onnx", 2.0))
    threads: list[str] = []

    async def main() -> int:
        batcher = MicroBatcher(
            _thread_recording_run(session, threads, delay_s=0.02),
            model="t", graph="g", inline_below_s=0.05, max_wait_s=0.0,
        )  # fmt: skip
        try:
            await batcher.submit({"x": np.ones((1, 3), np.float32)}, joined=True)  # ~20 ms
            await batcher.submit({"x": np.ones((4, 3), np.float32)}, joined=True)  # ~80 ms est.
            plain = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 3), np.float32)}))
            await asyncio.sleep(0.005)  # the plain call is on the thread now
            joined = await batcher.submit({"x": np.ones((1, 3), np.float32)}, joined=True)
            await plain
            np.testing.assert_allclose(joined["y"], 2.0)
        finally:
            await batcher.close()
        return batcher.inline_calls

    assert asyncio.run(main()) == 0
    assert all(t.startswith("ort-g") for t in threads) and len(threads) == 4


def test_an_inline_call_that_fails_raises_to_its_caller(tmp_path: Path) -> None:
    session = session_for(scale_graph(tmp_path / "g.onnx", 2.0))
    fail = False

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if fail:
            raise RuntimeError("graph broke")
        return session.run(feeds)

    async def main() -> None:
        nonlocal fail
        batcher = MicroBatcher(run, model="t", graph="g", inline_below_s=1.0)
        try:
            await batcher.submit({"x": np.ones((1, 3), np.float32)}, joined=True)
            fail = True
            with pytest.raises(RuntimeError, match="graph broke"):
                await batcher.submit({"x": np.ones((1, 3), np.float32)}, joined=True)
            assert batcher.inline_calls == 1
        finally:
            await batcher.close()

    asyncio.run(main())
