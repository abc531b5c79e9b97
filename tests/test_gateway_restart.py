"""The gateway tells a pipeline restart by the publisher's instance id, also across a
disconnection after which the new `seq` has passed the old one (issue 16): real publishers
on one loopback endpoint, one closed and a new one bound in its place, and the real hub."""

from __future__ import annotations

import pytest
import zmq

from pipeline.parts.publishing.zmq_publisher import PublisherError
from pipeline.service.gateway.gateway_config import GatewayConfig, ModbusConfig, PipelineSource
from pipeline.service.gateway.gateway_metrics import GatewayMetrics
from pipeline.service.gateway.hub import Hub
from pipeline.service.gateway.state import NotReadyReason
from tests.fakes import RecordingSink
from tests.waiting import first_value, wait_until
from tests.zmq_helpers import make_job, publisher

pytestmark = pytest.mark.timeout(60)


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def publish_until_received(pub, metrics: GatewayMetrics, frame_ids: range) -> None:
    """Send verdicts for cam0 (heartbeats first, until the hub's subscription is in)."""
    assert wait_until(lambda: pub.wait_for_subscriber(0.05) or pub.gate.topics > 0, 10), "the gateway never subscribed"
    before = sample(metrics, "gateway_verdicts_received_total", camera="cam0")
    pub.publish_heartbeat({"health": "OK", "cameras": {"cam0": {"state": "STREAMING"}}})
    for frame_id in frame_ids:
        pub.publish_verdict(make_job("cam0", frame_id))
    assert wait_until(lambda: sample(metrics, "gateway_verdicts_received_total", camera="cam0")
                      >= before + len(frame_ids), 10), "the gateway did not receive the verdicts"


def rebind(context: zmq.Context, endpoint: str):
    """A new publisher on `endpoint` once libzmq's I/O thread has closed the old listener."""
    def attempt():
        try:
            return publisher(context, endpoint=endpoint)
        except PublisherError:
            return None

    pub = first_value(attempt, 10, 0.01)
    assert pub is not None, f"{endpoint} was not free again within 10 s"
    return pub


def test_a_restart_whose_new_seq_passed_the_old_one_is_a_restart_with_every_unseen_verdict_lost(context):
    old = publisher(context)
    endpoint = old.endpoint
    config = GatewayConfig(pipelines=(PipelineSource(endpoint=endpoint),), cameras=("cam0",), modbus=ModbusConfig())
    metrics, sink = GatewayMetrics(), RecordingSink()
    hub = Hub(config, [sink], metrics)
    hub.start()
    try:
        publish_until_received(old, metrics, range(3))  # seq 0..2 from the old instance
        old.close()
        new = rebind(context, endpoint)  # the restarted daemon, on the same port
        for frame_id in range(10):  # sent before the gateway is back: nobody receives seq 0..9
            new.publish_verdict(make_job("cam0", frame_id))
        unseen = new.last_seq["cam0"] + 1 if new.gate.topics == 0 else None
        publish_until_received(new, metrics, range(10, 12))
        new.close()
    finally:
        hub.close()
    assert sample(metrics, "gateway_gaps_total", camera="cam0", kind="restart") == 1
    assert old.instance_id != new.instance_id
    if unseen is not None:  # (had the gateway been back in time, it saw seq 0: nothing lost)
        assert sample(metrics, "gateway_verdicts_lost_total", camera="cam0") == unseen == 10
    assert NotReadyReason.RESTART in [snap.not_ready_reason for snap in sink.snapshots]  # the PLC was told
