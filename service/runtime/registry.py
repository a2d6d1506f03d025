"""The model registry: finds, validates, warms up and atomically swaps model versions.

Layout: `<artifacts_dir>/<model>/<version>/manifest.json`; versions sort as strings, folders
starting with "." are staging folders of a writer and are ignored.

Lifecycle of a version: hash-check the manifest's files, open one ORT session per graph and
check it against the manifest, warm every graph whose shared inputs are known, run the load
hooks (servables set shared inputs, read extra files; a hook that raises refuses the version),
warm the remaining graphs, then replace the served version in one dict assignment. Requests
that took the old `LoadedModel` keep it: its batchers finish their queues and stop, and any
later call on it runs directly, so a swap never fails a request. A version that fails any step
is refused with one log line naming the file and the fault, and the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.config import Settings
from service.errors import (
    ArtifactError,
    InvalidInput,
    NotFound,
    NotReady,
    Overloaded,
    SalecastError,
)
from service.metrics import MODEL_LATENCY, MODEL_LOADS, MODEL_READY, MODEL_VERSION_INFO
from service.runtime.batcher import MicroBatcher
from service.runtime.manifest import Manifest, read_manifest
from service.runtime.session import GraphSession

log = logging.getLogger(__name__)

LoadHook = Callable[["LoadedModel"], Awaitable[None]]


class LoadedModel:
    """One loaded, checked version of a model: its manifest, sessions and batchers."""

    def __init__(
        self,
        manifest: Manifest,
        path: Path,
        sessions: Mapping[str, GraphSession],
        settings: Settings,
    ) -> None:
        self.manifest = manifest
        self.name = manifest.model
        self.version = manifest.version
        self.path = path
        self.sessions = dict(sessions)
        providers = {s.provider for s in self.sessions.values()}
        self.provider = ",".join(sorted(providers)) if providers else "none"
        self.loaded_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.warmed: set[str] = set()
        self._settings = settings
        self._batchers: dict[str, MicroBatcher] = {}
        self._closed = False  # retired: later calls run directly, no new batchers
        self.state: dict[str, Any] = {}  # per-version objects hooks build (a servable's tables)

    @property
    def warm(self) -> bool:
        """Every graph has run once (ORT allocates and optimises lazily on the first run)."""
        return self.warmed >= set(self.sessions)

    def _session(self, graph: str) -> GraphSession:
        session = self.sessions.get(graph)
        if session is None:
            raise NotFound("graph", f"{self.name}/{graph}")
        return session

    def _batcher(self, graph: str) -> MicroBatcher | None:
        """The graph's batcher, made on first use; None once this version is retired."""
        if self._closed:
            return None
        batcher = self._batchers.get(graph)
        if batcher is None:
            session = self._session(graph)
            batcher = MicroBatcher(
                session.run,
                model=self.name,
                version=self.version,
                graph=graph,
                max_rows=self._settings.batch_max_size,
                max_wait_s=self._settings.batch_max_wait_ms / 1000.0,
                capacity=self._settings.queue_capacity,
                retry_after_s=1.0,
                inline_below_s=self._settings.inline_call_below_us / 1e6,
            )
            self._batchers[graph] = batcher
        return None if batcher.closed else batcher

    def prepare(self, graph: str, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check a request's inputs against the graph's manifest; shared inputs are not accepted."""
        session = self._session(graph)
        missing = [name for name in session.batched_inputs if name not in inputs]
        if missing:
            raise InvalidInput(missing[0], f"required input of {self.name}/{graph} is missing")
        extra = [name for name in inputs if name not in session.batched_inputs]
        if extra:
            raise InvalidInput(extra[0], f"not a per-request input of {self.name}/{graph}")
        return {name: session.coerce(name, inputs[name]) for name in session.batched_inputs}

    async def infer(
        self, graph: str, inputs: Mapping[str, Any], *, joined: bool = False
    ) -> dict[str, np.ndarray]:
        """Run `graph` on a request's rows through the micro-batcher; returns output arrays.

        `joined`: the rows are a wave of requests a `Coalescer` already gathered (see
        `MicroBatcher.submit`)."""
        start = time.perf_counter()
        feeds = self.prepare(graph, inputs)
        batcher = self._batcher(graph)
        try:
            if batcher is not None:
                try:
                    return await batcher.submit(feeds, joined=joined)
                except NotReady as exc:
                    if isinstance(exc, Overloaded) or not batcher.closed:
                        raise
            # Retired version (a newer one took over after this request took us): answer
            # directly rather than failing a request that was already in flight.
            return await asyncio.to_thread(self._session(graph).run, feeds)
        finally:
            MODEL_LATENCY.labels(model=self.name, graph=graph).observe(time.perf_counter() - start)

    def run_direct(self, graph: str, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One synchronous ORT call without batching (benchmarks, bulk scoring)."""
        return self._session(graph).run(self.prepare(graph, inputs))

    def set_shared_inputs(self, graph: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Bind a graph's per-version inputs (an item table) once; the device copy is made here."""
        self._session(graph).set_shared_inputs(arrays)

    def warm_up(self) -> list[str]:
        """Run every not-yet-warm graph whose shared inputs are set once; returns those warmed."""
        done = []
        for name, session in self.sessions.items():
            if name in self.warmed or not session.shared_ready:
                continue
            try:
                session.run(session.warm_inputs())
            except SalecastError:
                raise
            except Exception as exc:
                raise ArtifactError(f"{session.path}: warm-up run failed: {exc}") from exc
            self.warmed.add(name)
            done.append(name)
        return done

    async def close(self) -> None:
        """Drain and stop every batcher; the sessions are freed when the last reference goes."""
        self._closed = True
        batchers = list(self._batchers.values())
        await asyncio.gather(*(b.close() for b in batchers), return_exceptions=True)

    def queue_depths(self) -> dict[str, int]:
        return {graph: b.depth for graph, b in self._batchers.items()}


@dataclass
class Refusal:
    """A version that failed to load, and why (kept so a poll does not retry it every time).

    `fingerprint` is what its folder looked like then (`folder_fingerprint`): an explicit
    reload tries a refused version again only once its files changed, so a caller cannot make
    the service re-hash a broken multi-gigabyte version on every call.
    """

    version: str
    reason: str
    at: str
    fingerprint: tuple[tuple[str, int, int], ...] = ()


@dataclass
class ReloadOutcome:
    """What one reload did for one model."""

    model: str
    status: str  # "loaded" | "unchanged" | "refused" | "none"
    version: str | None  # the version serving after the reload
    reason: str | None = None


MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def check_model_name(name: str) -> str:
    """A model name as a folder under the artifacts dir: a plain lower-case name, so no
    request can name a path outside it (``..``) or one the file system refuses."""
    if not MODEL_NAME.match(name):
        raise InvalidInput("name", "must be a lower-case model name (letters, digits, _ and -)")
    return name


def folder_fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime) of every file in a version folder."""
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            out.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _version_dirs(model_dir: Path) -> list[Path]:
    """Candidate version folders, newest first; staging folders (".name") are skipped."""
    if not model_dir.is_dir():
        return []
    dirs = [p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: p.name, reverse=True)


class ModelRegistry:
    """One per process: holds the served version of each model and loads newer ones."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.artifacts_dir)
        self._current: dict[str, LoadedModel] = {}
        self._hooks: dict[str, list[LoadHook]] = {}
        self._refused: dict[str, dict[str, Refusal]] = {}
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # --- reading -------------------------------------------------------------------------
    def get(self, name: str) -> LoadedModel:
        """The served version of `name`; NotReady while none is loaded (503, retry later)."""
        loaded = self._current.get(name)
        if loaded is None:
            raise NotReady(f"model {name!r} is not loaded", retry_after_s=5.0)
        return loaded

    def list(self) -> list[LoadedModel]:
        return [self._current[name] for name in sorted(self._current)]

    def refused(self, name: str | None = None) -> dict[str, builtins.list[Refusal]]:
        """Refused versions per model (all models, or one)."""
        names = [name] if name is not None else sorted(self._refused)
        return {n: list(self._refused.get(n, {}).values()) for n in names}

    def known_models(self) -> builtins.list[str]:
        """Model folders under the artifacts dir (loaded or not)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def add_load_hook(self, name: str, hook: LoadHook) -> None:
        """Run `hook(loaded)` after warm-up, before a version of `name` is swapped in.

        Registered after a version is already served, the hook is not run for it; servables
        register at import, before the lifespan loads anything.
        """
        self._hooks.setdefault(name, []).append(hook)

    # --- loading -------------------------------------------------------------------------
    def _open(self, version_dir: Path) -> LoadedModel:
        """Blocking part of a load (hashing, ORT sessions, warm-up): run in a thread."""
        manifest = read_manifest(version_dir)
        if manifest.model != version_dir.parent.name:
            raise ArtifactError(
                f"{version_dir}: manifest model {manifest.model!r} != folder "
                f"{version_dir.parent.name!r}"
            )
        sessions = {
            graph: GraphSession(
                version_dir / spec.file,
                spec,
                provider=self.settings.execution_provider,
                intra_op_threads=self.settings.intra_threads(),
            )
            for graph, spec in manifest.graphs.items()
        }
        loaded = LoadedModel(manifest, version_dir, sessions, self.settings)
        loaded.warm_up()
        return loaded

    async def _load(self, version_dir: Path) -> LoadedModel:
        loaded = await asyncio.to_thread(self._open, version_dir)
        for hook in self._hooks.get(loaded.name, []):
            try:
                await hook(loaded)
            except SalecastError:
                raise
            except Exception as exc:
                raise ArtifactError(f"{version_dir}: load hook {hook!r} failed: {exc}") from exc
        await asyncio.to_thread(loaded.warm_up)
        if not loaded.warm:
            cold = sorted(set(loaded.sessions) - loaded.warmed)
            raise ArtifactError(f"{version_dir}: graphs {cold} have shared inputs no hook set")
        return loaded

    def _swap(self, loaded: LoadedModel) -> LoadedModel | None:
        old = self._current.get(loaded.name)
        self._current[loaded.name] = loaded  # the atomic step: new requests now get `loaded`
        if old is not None:
            with contextlib.suppress(KeyError):
                MODEL_VERSION_INFO.remove(old.name, old.version, old.provider)
        MODEL_VERSION_INFO.labels(loaded.name, loaded.version, loaded.provider).set(1)
        MODEL_READY.labels(loaded.name).set(1 if loaded.warm else 0)
        return old

    def _retire(self, old: LoadedModel) -> None:
        task = asyncio.get_running_loop().create_task(old.close(), name=f"retire-{old.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _reload_model(self, name: str, retry_refused: bool) -> ReloadOutcome:
        current = self._current.get(name)
        refused = self._refused.setdefault(name, {})
        for version_dir in _version_dirs(self.root / name):
            if current is not None and version_dir.name <= current.version:
                break
            earlier = refused.get(version_dir.name)
            if earlier is not None and not (
                retry_refused and folder_fingerprint(version_dir) != earlier.fingerprint
            ):
                continue
            try:
                loaded = await self._load(version_dir)
            except Exception as exc:  # any fault in a version refuses it, never the service
                reason = str(exc) if isinstance(exc, SalecastError) else f"{version_dir}: {exc!r}"
                # Reasons are shown by /v1/models: name folders from the artifacts root only.
                reason = reason.replace(str(self.root.resolve()), "<artifacts>").replace(
                    str(self.root), "<artifacts>"
                )
                refused[version_dir.name] = Refusal(
                    version_dir.name,
                    reason,
                    dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    folder_fingerprint(version_dir),
                )
                MODEL_LOADS.labels(model=name, outcome="refused").inc()
                log.error(
                    "model version refused",
                    extra={
                        "model": name,
                        "version": version_dir.name,
                        "path": str(version_dir),
                        "reason": reason,
                        "serving": current.version if current else None,
                    },
                    exc_info=not isinstance(exc, SalecastError),
                )
                continue
            old = self._swap(loaded)
            MODEL_LOADS.labels(model=name, outcome="loaded").inc()
            log.info(
                "model version loaded",
                extra={
                    "model": name,
                    "version": loaded.version,
                    "provider": loaded.provider,
                    "replaced": old.version if old else None,
                },
            )
            if old is not None:
                self._retire(old)
            return ReloadOutcome(name, "loaded", loaded.version)
        serving = current.version if current is not None else None
        newer = [r for r in refused.values() if serving is None or r.version > serving]
        if newer:
            # `version` is what keeps serving (None: nothing); `reason` why the newest failed.
            last = max(newer, key=lambda r: r.version)
            return ReloadOutcome(name, "refused", serving, f"{last.version}: {last.reason}")
        if serving is not None:
            return ReloadOutcome(name, "unchanged", serving)
        return ReloadOutcome(name, "none", None, "no version folders")

    async def reload(
        self, name: str | None = None, *, retry_refused: bool = True
    ) -> builtins.list[ReloadOutcome]:
        """Load the newest valid version of one model (or of every model folder).

        A version refused before is tried again only once its files changed (someone fixed
        it, or a copy that was still being written finished), by the poller as by an explicit
        reload; one that stays broken logs once and is never re-hashed (`folder_fingerprint`).
        """
        async with self._lock:
            if name is not None:
                check_model_name(name)
                if not (self.root / name).is_dir() and name not in self._current:
                    raise NotFound("model", name)
                return [await self._reload_model(name, retry_refused)]
            return [await self._reload_model(n, retry_refused) for n in self.known_models()]

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Load what is on disk now, then poll for new versions in the background."""
        outcomes = await self.reload(retry_refused=False)
        if not outcomes:
            log.warning("no models found; serving without models", extra={"root": str(self.root)})
        if self.settings.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(
                self._poll(), name="registry-poll"
            )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.reload()
            except Exception:  # the poller must outlive any one bad scan
                log.exception("artifact poll failed")

    async def stop(self) -> None:
        """Stop polling; drain every served version's batchers."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        loaded = list(self._current.values())
        await asyncio.gather(*(m.close() for m in loaded), return_exceptions=True)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        for model in loaded:
            with contextlib.suppress(KeyError):
                MODEL_VERSION_INFO.remove(model.name, model.version, model.provider)
            MODEL_READY.labels(model.name).set(0)
        self._current.clear()
