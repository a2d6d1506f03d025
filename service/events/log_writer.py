"""`LogAppendWriter`: the events pipeline's writes in the single-writer mode (`events_mode=log`).

Why a second design beside compare-and-set (`AtomicWaveWriter`): there, every replica reads,
computes and conditionally writes every state itself, so the read, the Python pass and the
script of a wave happen one after the other, and a wave cannot start before the previous one's
answer (measured in bench/results/speed-events-ingest.md). Here a request only appends:

* One `append_log.lua` call per joined pass decides each event's answer from its user's keys
  alone (a repeated id is `duplicate`, an event older than the user's newest is `rejected`
  stale), writes the user side (idempotency key, sequence, counts: the intent and CVR
  features see the event at once) and appends the event to the log, numbered by the store's
  commit counter. The answer is `accepted` with that `commit`.
* The model states (IMN's user and item states, popularity) are written later by the one
  `LogApplier` holding the log's lease, in commit order, so no two writers ever race for a
  state and no write needs a compare-and-set.

What a client gives up: an `accepted` event's model states are written after the answer, not
before (the lag is `salecast_event_log_lag_seconds`; `GET /v1/events/log` says which commit
is applied). What it keeps: never lost (the append is durable before the answer), never
applied twice, per-user order, and the final states equal one serial replay in commit order.
docs/consistency.md states the model; the mode needs one Redis server, not a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from service.errors import Overloaded
from service.events import outcomes
from service.events.event_log import EventLog
from service.events.outcomes import EventOutcome
from service.events.schema import Event
from service.events.updater import StateUpdater


class LogAppendWriter:
    """Answers ordered, validated events by appending them to the event log."""

    def __init__(
        self,
        log: EventLog,
        *,
        on_append: Callable[[], None] | None = None,
        retry_after_s: float = 1.0,
    ) -> None:
        self.log = log
        self.store = log.store
        self.on_append = on_append  # the local applier's wakeup
        self.retry_after_s = retry_after_s

    async def apply(
        self, events: Sequence[Event], updaters: Sequence[StateUpdater]
    ) -> list[EventOutcome]:
        """Append `events`; `updaters` are the applier's business, not this writer's."""
        del updaters
        out: list[EventOutcome] = []
        results = await self.log.append(events)
        if self.on_append is not None and any(r.code == 1 for r in results):
            self.on_append()
        for e, res in zip(events, results, strict=True):
            if res.code == 1 and res.commit is not None:
                out.append(outcomes.accepted(e, res.commit))
            elif res.code == 0:  # with the commit it was accepted with, where known
                out.append(outcomes.duplicate(e.index, e.event_id, "already accepted", res.commit))
            elif res.code == -1:
                out.append(outcomes.stale(e, res.newer or e.order))
            else:  # -3: the log is full and nothing of the pass was written
                raise Overloaded(
                    f"event log is full ({self.log.max_entries} entries not yet applied)",
                    retry_after_s=self.retry_after_s,
                )
        return out
