"""`EventLog`: the durable event log of the single-writer mode, in Redis next to the states.

The log is one Redis Stream (`keys.EVENT_LOG`). Its entry ids are the store's commit numbers
(``<commit>-0``), so the order replicas appended in, the order the one writer applies in and
the `commit` each client was answered are the same sequence. Three scripts do all the writes:

* `append_log.lua`: per event, the user side (idempotency key, order guard, sequence, counts)
  and the log entry, atomically; one call per joined pass of requests.
* `apply_log.lua`: one chunk's model states, popularity counts and the applied mark, fenced by
  the writer's lease and the previous mark; entries at or below the mark are trimmed.
* `renew_lease.lua`: take or extend the writer lease.

Single Redis server only: the append script writes a user's keys and the shared stream in one
call, which a cluster cannot do across slots (the service refuses the mode there).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.events.schema import Event
from service.state import keys, scripts
from service.state.store import SEP, StateStore, as_text


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event as the log holds it: what the applier needs, and when it was appended."""

    commit: int
    event: Event
    appended_at: float  # the appending replica's clock (Unix s): the apply lag is measured to it


@dataclass(frozen=True, slots=True)
class AppendResult:
    code: int  # 1 accepted, 0 duplicate, -1 stale, -3 log full
    commit: int | None = None
    newer: tuple[float, str] | None = None


@dataclass(slots=True)
class ChunkWrite:
    """What one chunk writes: final states (key, bytes, ts text, event id, user?) and the
    chunk's events per item, for the popularity counts."""

    states: list[tuple[str, bytes, str, str, bool]] = field(default_factory=list)
    item_counts: dict[str, int] = field(default_factory=dict)


def _payload(e: Event, ts_text: str, appended_at: str) -> str:
    features = orjson.dumps(dict(e.features)).decode() if e.features else ""
    return SEP.join(
        (
            e.user_id,
            e.item_id,
            e.event_id,
            ts_text,
            e.action,
            e.category_id or "",
            appended_at,
            features,
        )
    )


def _entry(commit: int, raw: str) -> LogEntry:
    user, item, event_id, ts, action, category, appended_at, features = raw.split(SEP, 7)
    event = Event(
        0,
        event_id,
        user,
        item,
        action,
        float(ts),
        category or None,
        orjson.loads(features) if features else {},
    )
    return LogEntry(commit, event, float(appended_at))


class EventLog:
    """The log's reads and writes over one `StateStore` (single server)."""

    def __init__(self, store: StateStore, *, max_entries: int = 100_000) -> None:
        self.store = store
        self.max_entries = max_entries

    async def append(self, events: Sequence[Event]) -> list[AppendResult]:
        """Decide and append `events` (in the order given) with one script call."""
        if not events:
            return []
        store = self.store
        now = repr(time.time())
        k: list[Any] = [keys.COMMITS, keys.EVENT_LOG]
        a: list[Any] = [
            store.sequence_max,
            store.idempotency_ttl_seconds,
            store.user_ttl_seconds,
            self.max_entries,
        ]
        for e in events:
            user_keys, user_args = store.user_side(
                e.user_id, e.event_id, e.ts, e.action, e.item_id, e.category_id
            )
            k += user_keys
            a += [*user_args, _payload(e, user_args[0], now)]
        (flat,) = await store.run_script("append_log", scripts.APPEND_LOG, [(k, a)])
        out = []
        for i in range(len(events)):
            code, x, y = int(flat[3 * i]), flat[3 * i + 1], flat[3 * i + 2]
            if code == 1 or (code == 0 and int(x) > 0):
                out.append(AppendResult(code, commit=int(x)))
            elif code == -1:
                out.append(AppendResult(-1, newer=(float(as_text(x)), as_text(y))))
            else:
                out.append(AppendResult(code))
        return out

    async def read_after(self, commit: int | None, count: int) -> list[LogEntry]:
        """Up to `count` entries after commit number `commit` (from the start when None)."""
        start = "-" if commit is None else f"({commit}-0"
        rows = await self.store.execute(
            "log_read", "XRANGE", keys.EVENT_LOG, start, "+", "COUNT", count
        )
        out = []
        for entry_id, fields in rows:
            commit_text = as_text(entry_id).split("-", 1)[0]
            out.append(_entry(int(commit_text), as_text(fields[1])))
        return out

    async def marks(self) -> tuple[int | None, int, int]:
        """(the applied mark, the newest commit number, entries not yet applied)."""
        applied, last, pending = await self.store.pipeline(
            "log_marks",
            [("GET", keys.EVENT_LOG_APPLIED), ("GET", keys.COMMITS), ("XLEN", keys.EVENT_LOG)],
        )
        return (
            None if applied is None else int(applied),
            0 if last is None else int(last),
            int(pending),
        )

    async def hold(self, token: str, lease_ms: int) -> bool:
        """Take or extend the writer lease; False while another writer holds it."""
        (held,) = await self.store.run_script(
            "log_lease", scripts.RENEW_LEASE, [([keys.EVENT_LOG_LEASE], [token, lease_ms])]
        )
        return bool(held)

    async def release(self, token: str, lease_ms: int) -> None:
        """Give the lease up at once (a clean shutdown), if this token holds it."""
        if await self.hold(token, lease_ms):
            await self.store.execute("log_lease", "DEL", keys.EVENT_LOG_LEASE)

    async def write_chunk(
        self,
        token: str,
        after: int | None,
        last: int,
        write: ChunkWrite,
        counters: Sequence[str],
    ) -> int:
        """Write one chunk's states and move the applied mark from `after` to `last`, if the
        lease is `token`'s and the mark is still `after`: 1 written, -1 lease lost, -2 mark
        moved (see `apply_log.lua`)."""
        k: list[Any] = [keys.EVENT_LOG_LEASE, keys.EVENT_LOG_APPLIED, keys.EVENT_LOG, *counters]
        a: list[Any] = [
            token,
            "" if after is None else str(after),
            str(last),
            len(counters),
            self.store.user_ttl_seconds,
            len(write.states),
            len(write.item_counts),
        ]
        for key, vector, ts_text, event_id, is_user in write.states:
            k.append(key)
            a += [vector, ts_text, event_id, "u" if is_user else "i"]
        for item, n in write.item_counts.items():
            a += [item, n]
        (result,) = await self.store.run_script("log_apply", scripts.APPLY_LOG, [(k, a)])
        return int(result)
