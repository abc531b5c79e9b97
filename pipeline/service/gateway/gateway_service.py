"""`pipeline gateway` as a service: build the outputs, run the loop, stop cleanly.

Owns the composition (hub + the configured sinks + /metrics and /healthz + systemd
notification) and the main-thread loop: every 50 ms the hub judges silence, READY=1
goes out once every output has started, watchdog pings go out while every subscriber
thread lives, and STATUS= says how many cameras are ready. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import logging
import signal
import time

from pipeline.service.daemon.http_endpoint import HttpEndpoint
from pipeline.service.daemon.notify import SdNotifier
from pipeline.service.gateway.gateway_config import GatewayConfig
from pipeline.service.gateway.gateway_metrics import GatewayHealth, GatewayMetrics
from pipeline.service.gateway.hub import Hub, Sink

log = logging.getLogger(__name__)
TICK_S = 0.05
STATUS_S = 5.0


def build_sinks(config: GatewayConfig, metrics: GatewayMetrics) -> list[Sink]:
    """Only the configured outputs' libraries are imported."""
    sinks: list[Sink] = []
    if config.modbus is not None and config.modbus.mode == "client":
        from pipeline.service.gateway.modbus_client import ModbusClientSink

        sinks.append(ModbusClientSink(config.modbus, config.handshake, config.cameras, metrics))
    if config.modbus is not None and config.modbus.mode == "server":
        from pipeline.service.gateway.modbus_server import ModbusServerSink

        sinks.append(ModbusServerSink(config.modbus, config.handshake, config.cameras, metrics))
    if config.opcua is not None:
        from pipeline.service.gateway.opcua_server import OpcUaSink

        sinks.append(OpcUaSink(config.opcua, config.handshake, config.cameras, metrics))
    return sinks


class GatewayService:
    def __init__(self, config: GatewayConfig):
        self.config = config
        self.metrics = GatewayMetrics()
        self.sinks = build_sinks(config, self.metrics)
        self.hub = Hub(config, self.sinks, self.metrics)
        self.health = GatewayHealth(lambda: {s.name: s.problem() for s in self.sinks}, self.hub.not_ready,
                                    self.hub.alive)
        self.http = HttpEndpoint.from_config(config.http, self.metrics.registry, self.health) \
            if config.http.enabled else None
        self.notifier = SdNotifier.from_environment()
        self.stop_requested = False

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()
        self.hub.start()
        if self.http is not None:
            self.http.start()
        self.notifier.ready(self.status_text())
        log.info("gateway running: %d camera(s), outputs %s", len(self.config.cameras),
                 ", ".join(s.name for s in self.sinks))

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        next_ping = next_status = 0.0
        interval = self.notifier.watchdog_interval_s
        try:
            while not self.stop_requested:
                time.sleep(TICK_S)
                self.hub.tick()
                now = time.monotonic()
                if interval is not None and now >= next_ping and self.hub.alive():
                    next_ping = now + interval
                    self.notifier.watchdog()
                if now >= next_status:
                    next_status = now + STATUS_S
                    self.notifier.status(self.status_text())
        finally:
            self.close()
        return 0

    def _on_signal(self, signum, frame) -> None:  # only a plain attribute: no locks in a handler
        self.stop_requested = True

    def status_text(self) -> str:
        not_ready = {k: v for k, v in self.hub.not_ready().items() if v}
        ready = len(self.config.cameras) - len(not_ready)
        text = f"{ready}/{len(self.config.cameras)} cameras ready"
        return text + ("; not ready: " + ", ".join(f"{k} {v}" for k, v in not_ready.items()) if not_ready else "")

    def close(self) -> None:
        log.info("gateway stopping")
        self.notifier.stopping("stopping")
        self.hub.close()
        for sink in self.sinks:
            sink.close()
        if self.http is not None:
            self.http.close()
        self.notifier.close()
