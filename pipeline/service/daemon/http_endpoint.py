"""The daemon's HTTP endpoint: Prometheus `/metrics`, `/healthz`, and for Kubernetes'
probes `/livez` (every stage progressing) and `/readyz` (READY: model warm, cameras seen).

Owns one listening socket (127.0.0.1 by default) served by waitress: one I/O thread
multiplexes every connection (poll, so beyond 1024 descriptors too) and a fixed pool of
`http.threads` answers requests, so neither a slow scraper nor a thousand idle peers
start a thread each or touch a pipeline thread. Bounded: at most `http.max_connections`
open connections (more wait in the kernel's backlog), idle ones closed after
`http.idle_timeout_s`, request headers at most 8 kB and bodies 1 kB; a client that goes
away costs a debug line, never a traceback.
The socket is bound before the model loads, so /healthz already answers 503 "starting"
while the daemon warms up, and a port in use fails the start-up with a clear message.
What crosses the boundary: GET requests in; the metrics text exposition and a small
JSON health document (`status`, `ready`, `healthy`, `reason`) out. Nothing is written.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from waitress.server import create_server

from pipeline.composition.app import StartupError
from pipeline.config.models import HttpConfig
from pipeline.service.daemon.health import HealthMonitor

log = logging.getLogger(__name__)
# waitress logs client disconnects and overflow at INFO/WARNING on its own loggers; ours say it once.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)

_TEXT = "text/plain; charset=utf-8"


class HealthApp:
    """The WSGI application: every answer computed from the monitor and the registry."""

    def __init__(self, registry: Any, monitor: HealthMonitor):
        self.registry, self.monitor = registry, monitor

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        code, body, content_type = self.answer(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"))
        start_response(f"{code} {_REASONS[code]}", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                                    ("Cache-Control", "no-store")])
        return [body]

    def answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        if method not in ("GET", "HEAD"):
            return 405, b"only GET\n", _TEXT
        if path == "/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if path == "/healthz":
            report = self.monitor.check()
            body = {"status": "ok" if report.healthy else "unavailable", "ready": report.ready,
                    "healthy": report.healthy, "progressing": report.progressing, "reason": report.reason}
            return (200 if report.healthy else 503), json.dumps(body).encode() + b"\n", "application/json"
        if path in ("/livez", "/readyz"):
            # For orchestrators: alive = every stage makes progress (the systemd watchdog's
            # rule), so a DEGRADED pipeline waiting out an inference-server outage is not
            # restarted; ready = READY=1 (model warm, every camera delivered once).
            report = self.monitor.check()
            ok = report.progressing if path == "/livez" else report.ready
            return (200 if ok else 503), (b"ok\n" if ok else report.reason.encode() + b"\n"), _TEXT
        return 404, b"not found: try /metrics, /healthz, /livez or /readyz\n", _TEXT


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HttpEndpoint:
    def __init__(self, server: Any):
        self.server = server
        self._thread = threading.Thread(target=self._serve, name="http-endpoint", daemon=True)

    @classmethod
    def from_config(cls, config: HttpConfig, registry: Any, monitor: HealthMonitor) -> "HttpEndpoint":
        try:
            server = create_server(
                HealthApp(registry, monitor), host=config.host, port=config.port, ipv6=":" in config.host,
                ipv4=":" not in config.host, threads=config.threads, connection_limit=config.max_connections,
                channel_timeout=config.idle_timeout_s, cleanup_interval=max(1, int(config.idle_timeout_s / 2)),
                max_request_header_size=8192, max_request_body_size=1024, asyncore_use_poll=True,
                backlog=1024, ident="inspection-pipeline", clear_untrusted_proxy_headers=True)
        except OSError as exc:
            raise StartupError(f"http: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
                               "set http.port to a free port, or http.enabled: false") from None
        return cls(server)

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    @property
    def sockets_held(self) -> int:
        """Sockets the I/O loop holds: open connections plus its listener and wake-up pipe."""
        return len(self.server._map)

    @property
    def url(self) -> str:
        host = self.server.effective_host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)

    def close(self) -> None:
        # the answering threads first: one finishing a reply pulls the I/O loop's trigger,
        # which server.close() closes (a vanished client's reply then logged EBADF)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
        self.server.close()  # closes every connection; the I/O loop ends when none is left
        self._thread.join(2)

    def _serve(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError) as exc:  # the loop meeting a socket that close() just closed
            log.debug("http endpoint loop ended: %s", exc)
