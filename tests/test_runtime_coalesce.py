"""The coalescer: concurrent calls join waves, each caller gets exactly its own rows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.errors import NotReady, Overloaded
from service.runtime.coalesce import Coalescer, Rows


class Recorder:
    """A row-wise wave function (`value = key * 1000 + item`) that records each wave."""

    def __init__(self, gate: asyncio.Event | None = None, fail: Exception | None = None) -> None:
        self.waves: list[tuple[int, list[int]]] = []
        self.gate = gate
        self.fail = fail

    async def __call__(self, key: int, items: list[int]) -> Rows:
        self.waves.append((key, list(items)))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {"value": np.asarray([key * 1000 + i for i in items]), "n": np.ones(len(items))}


def test_concurrent_calls_join_one_wave_and_get_their_own_rows() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        run = Recorder(gate)
        waves = Coalescer(run, model="toy", name="t", max_in_flight=1)
        first = asyncio.create_task(waves.submit(1, [0]))  # starts a wave at once, held
        await asyncio.sleep(0)
        rest = [asyncio.create_task(waves.submit(1, [10 * k + 1, 10 * k + 2])) for k in range(5)]
        await asyncio.sleep(0)
        gate.set()
        out = await asyncio.gather(first, *rest)
        assert out[0]["value"].tolist() == [1000]
        for k, rows in enumerate(out[1:]):
            assert rows["value"].tolist() == [1000 + 10 * k + 1, 1000 + 10 * k + 2]
            assert rows["n"].tolist() == [1.0, 1.0]
        assert [len(items) for _, items in run.waves] == [1, 10]  # the five waited together

    asyncio.run(main())


def test_different_keys_never_share_a_wave() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        run = Recorder(gate)
        waves = Coalescer(run, model="toy", name="t", max_in_flight=1)
        held = asyncio.create_task(waves.submit(9, [0]))
        await asyncio.sleep(0)
        calls = [asyncio.create_task(waves.submit(k % 2, [k])) for k in range(6)]
        await asyncio.sleep(0)
        gate.set()
        out = await asyncio.gather(held, *calls)
        assert [rows["value"].tolist() for rows in out[1:]] == [
            [k % 2 * 1000 + k] for k in range(6)
        ]
        assert sorted(run.waves[1:]) == [(0, [0, 2, 4]), (1, [1, 3, 5])]

    asyncio.run(main())


def test_a_wave_takes_whole_calls_up_to_max_items() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        run = Recorder(gate)
        waves = Coalescer(run, model="toy", name="t", max_items=4, max_in_flight=1, capacity=100)
        held = asyncio.create_task(waves.submit(0, [0]))
        await asyncio.sleep(0)
        sizes = [3, 3, 1, 6, 2]
        calls = [asyncio.create_task(waves.submit(0, list(range(n)))) for n in sizes]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(held, *calls)
        # oldest first, never split: [3], [3, 1], [6] alone (larger than the bound), [2]
        assert [len(items) for _, items in run.waves[1:]] == [3, 4, 6, 2]

    asyncio.run(main())


def test_a_failed_wave_fails_each_of_its_calls_and_the_next_wave_runs() -> None:
    async def main() -> None:
        run = Recorder(fail=NotReady("store down"))
        waves = Coalescer(run, model="toy", name="t")
        results = await asyncio.gather(
            *(waves.submit(0, [k]) for k in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, NotReady) for r in results)
        run.fail = None
        assert (await waves.submit(0, [7]))["value"].tolist() == [7]

    asyncio.run(main())


def test_rows_that_do_not_follow_the_items_are_an_error_not_a_wrong_answer() -> None:
    async def short(key: int, items: list[int]) -> Rows:
        return {"value": np.zeros(len(items) - 1)}

    async def main() -> None:
        with pytest.raises(ValueError, match="no axis of 2 rows"):
            await Coalescer(short, model="toy", name="t").submit(0, [1, 2])

    asyncio.run(main())


def test_too_many_waiting_items_is_overloaded_and_a_cancelled_call_is_skipped() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        run = Recorder(gate)
        waves = Coalescer(run, model="toy", name="t", max_items=4, max_in_flight=1, capacity=8)
        held = asyncio.create_task(waves.submit(0, [0]))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(waves.submit(0, [1] * 8))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await waves.submit(0, [2])
        waiting.cancel()
        later = asyncio.create_task(waves.submit(0, [3]))
        await asyncio.sleep(0)
        gate.set()
        assert (await later)["value"].tolist() == [3]
        await held
        assert [items for _, items in run.waves] == [[0], [3]]  # the cancelled call never ran

    asyncio.run(main())


def test_a_loop_closed_mid_wave_leaves_the_coalescer_usable() -> None:
    run = Recorder(asyncio.Event())  # the first loop's wave waits for ever
    waves = Coalescer(run, model="toy", name="t")

    async def abandoned() -> None:
        asyncio.get_running_loop().create_task(waves.submit(0, [1]))
        await asyncio.sleep(0.01)  # the wave starts and is held; the loop then closes

    old = asyncio.new_event_loop()
    old.run_until_complete(abandoned())  # stops with the wave pending on the old loop
    try:
        run.gate = None
        rows = asyncio.run(asyncio.wait_for(waves.submit(0, [2]), 5.0))  # not stuck behind it
        assert rows["value"].tolist() == [2]
        assert [items for _, items in run.waves] == [[1], [2]]
    finally:
        pending = asyncio.all_tasks(old)
        for task in pending:
            task.cancel()
        old.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        old.close()


def test_calls_waiting_for_a_wave_are_in_the_queue_depth_the_autoscaler_reads() -> None:
    from prometheus_client import REGISTRY

    def depth() -> float | None:
        labels = {"model": "depth-test", "graph": "wave"}
        return REGISTRY.get_sample_value("salecast_batch_queue_depth", labels)

    async def main() -> None:
        gate = asyncio.Event()
        waves = Coalescer(Recorder(gate), model="depth-test", name="t")
        held = asyncio.create_task(waves.submit(0, [0]))  # taken into the first wave at once
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(waves.submit(0, [k])) for k in range(3)]
        await asyncio.sleep(0)
        assert depth() == 3
        waiting[0].cancel()
        await asyncio.sleep(0)
        assert depth() == 2  # a caller that went away is no longer waiting
        gate.set()
        await asyncio.gather(held, *waiting[1:])
        assert depth() == 0

    asyncio.run(main())
