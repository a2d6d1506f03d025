"""`run()`: the process entry point of `salecast serve`.

Starts an embedded valkey-server under `<data_dir>/redis` when no `REDIS_URL` is given (so a
laptop needs nothing but the wheel; a child of this process, supervised, password-protected:
`service.state.embedded`), then uvicorn with a graceful shutdown: on SIGTERM uvicorn
stops accepting connections and waits up to the drain timeout for open requests, and the app's
lifespan drains the batchers before the embedded Redis is stopped last.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.api.main import create_app
from service.config import Settings, settings_environment
from service.logs import configure_logging
from service.state.embedded import EmbeddedRedis

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which would kill the
    process before `run()`'s cleanup; run `on_stopped` (stop the embedded Redis, saving its
    data) after the app has drained and before that re-raise."""

    def __init__(self, config: uvicorn.Config, on_stopped: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stopped = on_stopped

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._on_stopped()


def run(host: str | None = None, port: int | None = None, settings: Settings | None = None) -> None:
    """Serve until SIGINT/SIGTERM; blocks."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    embedded: EmbeddedRedis | None = None

    def stop_embedded() -> None:
        nonlocal embedded
        if embedded is not None:
            embedded.stop()
            embedded = None
            log.info("embedded redis stopped")

    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)  # data under <data_dir>/redis
        url = embedded.start()
        embedded.supervise()  # restarted within about a second if it dies
        log.info("embedded redis started", extra={"port": embedded.port})
        settings = settings.model_copy(update={"redis_url": url})
    if settings.api_keys_file is None:
        log.warning(
            "no API keys: every operation is open to whoever reaches the port; to require "
            "keys, run `salecast keys new --name <client> --scopes read,write --file keys.txt` "
            "and serve with SALECAST_API_KEYS_FILE=keys.txt",
            extra={"host": host or settings.host},
        )
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port if port is not None else settings.port,
        "http": "httptools",  # uvicorn[standard]: the C HTTP parser
        "loop": "uvloop",  # and the libuv event loop; both measured in bench/results
        "proxy_headers": settings.proxy_headers,
        "log_config": None,  # keep the JSON-lines handlers configure_logging installed
        "access_log": False,  # the middleware logs each request with its id
        "timeout_graceful_shutdown": math.ceil(settings.drain_timeout_s),
        "lifespan": "on",
    }
    try:
        if settings.workers == 1:
            _Server(uvicorn.Config(create_app(settings), **options), stop_embedded).run()
        else:
            _serve_workers(settings, options)
    finally:
        stop_embedded()


def _serve_workers(settings: Settings, options: dict[str, Any]) -> None:
    """`settings.workers` processes on one listening socket (uvicorn's supervisor): each
    builds its own app from the environment, so the settings (the embedded Redis URL
    included) travel as environment variables."""
    os.environ.update(settings_environment(settings))
    config = uvicorn.Config(
        "service.api.main:create_app", factory=True, workers=settings.workers, **options
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    run()
