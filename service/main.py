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
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn
from starlette.datastructures import State
from uvicorn.supervisors import Multiprocess

from service.api.main import create_app
from service.config import Settings, settings_environment
from service.logs import configure_logging
from service.state.embedded import EmbeddedRedis

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, with the two things a rollout needs around its graceful shutdown.

    * **SIGTERM first turns readiness off, then stops.** A load balancer (or Kubernetes'
      endpoint controller) needs a moment to stop sending once readiness says 503; if the
      listener closed at once, requests already routed here would be refused. So on SIGTERM
      the app is marked draining (``/health/ready`` answers 503) and keeps serving for
      `shutdown_delay_s`; only then does uvicorn stop accepting, finish in-flight requests
      (up to the drain timeout) and run the app's shutdown. A second signal, or SIGINT
      (Ctrl-C), stops at once.
    * uvicorn re-raises the signal after its graceful shutdown, which would kill the process
      before `run()`'s cleanup; `on_stopped` (stop the embedded Redis, saving its data) runs
      after the app has drained and before that re-raise.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        on_stopped: Callable[[], None],
        app_state: State | None = None,
        shutdown_delay_s: float = 0.0,
    ) -> None:
        super().__init__(config)
        self._on_stopped = on_stopped
        self._app_state = app_state
        self._delay_s = shutdown_delay_s
        self._delaying = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._delay_s > 0 and not self._delaying:
            self._delaying = True
            self._captured_signals.append(sig)
            if self._app_state is not None:
                self._app_state.draining = True  # readiness 503 while we still serve
            log.info("SIGTERM: not ready; stopping", extra={"in_s": self._delay_s})
            timer = threading.Timer(self._delay_s, self._stop_accepting)
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)

    def _stop_accepting(self) -> None:
        self.should_exit = True

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
            app = create_app(settings)
            server = _Server(
                uvicorn.Config(app, **options), stop_embedded, app.state, settings.shutdown_delay_s
            )
            server.run()
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
