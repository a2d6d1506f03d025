"""`make_waves`: split time-ordered events into JODIE's t-batches."""

from __future__ import annotations

from collections.abc import Sequence

from service.events.schema import Event

WAVE_MAX = 256  # events per wave: one script call, one updater call, then the loop runs again


def make_waves(events: Sequence[Event], by_item: bool) -> list[list[Event]]:
    """Split time-ordered events into waves where no user (and no item if `by_item`) repeats.

    Event k goes to wave ``1 + max(wave of its user's previous event, wave of its item's
    previous event)``, so each entity's events stay in order across waves and every wave is
    as large as the order allows (JODIE's t-batch), cut into pieces of at most `WAVE_MAX`
    (events of one wave are independent, so a piece is a wave too). A wave is one call of
    every state updater (one ONNX call) and one atomic write; the bound keeps a large batch
    from holding the event loop, or the Redis server, for long at a time.
    """
    user_wave: dict[str, int] = {}
    item_wave: dict[str, int] = {}
    waves: list[list[Event]] = []
    for e in events:
        w = user_wave.get(e.user_id, -1) + 1
        if by_item:
            w = max(w, item_wave.get(e.item_id, -1) + 1)
        if w == len(waves):
            waves.append([])
        waves[w].append(e)
        user_wave[e.user_id] = w
        item_wave[e.item_id] = w
    return [wave[i : i + WAVE_MAX] for wave in waves for i in range(0, len(wave), WAVE_MAX)]
