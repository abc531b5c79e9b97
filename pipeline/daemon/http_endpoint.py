"""The daemon's HTTP endpoint: Prometheus `/metrics`, `/healthz`, and for Kubernetes'
probes `/livez` (every stage progressing) and `/readyz` (READY: model warm, cameras seen).

Owns one listening socket (127.0.0.1 by default) served by a small threaded stdlib HTTP
server on its own daemon threads, so a slow scraper never touches a pipeline thread.
The socket is bound before the model loads, so /healthz already answers 503 "starting"
while the daemon warms up, and a port in use fails the start-up with a clear message.
What crosses the boundary: GET requests in; the metrics text exposition and a small
JSON health document (`status`, `ready`, `healthy`, `reason`) out. Nothing is written.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.app import StartupError
from pipeline.config.models import HttpConfig
from pipeline.daemon.health import HealthMonitor

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry = None
    monitor: HealthMonitor


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            report = self.server.monitor.check()
            body = {"status": "ok" if report.healthy else "unavailable", "ready": report.ready,
                    "healthy": report.healthy, "progressing": report.progressing, "reason": report.reason}
            self._reply(200 if report.healthy else 503, json.dumps(body).encode() + b"\n", "application/json")
        elif path in ("/livez", "/readyz"):
            # For orchestrators: alive = every stage makes progress (the systemd watchdog's
            # rule), so a DEGRADED pipeline waiting out an inference-server outage is not
            # restarted; ready = READY=1 (model warm, every camera delivered once).
            report = self.server.monitor.check()
            ok = report.progressing if path == "/livez" else report.ready
            self._reply(200 if ok else 503, (b"ok\n" if ok else report.reason.encode() + b"\n"),
                        "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found: try /metrics, /healthz, /livez or /readyz\n", "text/plain; charset=utf-8")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("http %s: " + format, self.client_address[0], *args)  # scrapes are not news


class HttpEndpoint:
    def __init__(self, server: _Server):
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http-endpoint", daemon=True)

    @classmethod
    def from_config(cls, config: HttpConfig, registry, monitor: HealthMonitor) -> "HttpEndpoint":
        server_class = _Server6 if ":" in config.host else _Server  # an IPv6 literal such as ::1
        try:
            server = server_class((config.host, config.port), _Handler)
        except OSError as exc:
            raise StartupError(f"http: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
                               "set http.port to a free port, or http.enabled: false") from None
        server.registry, server.monitor = registry, monitor
        return cls(server)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(2)
        self.server.server_close()
