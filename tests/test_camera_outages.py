"""Dead, frozen and reconnecting cameras never pass a part: the real pipeline against the
real peers (Aravis' fake GigE Vision camera under software trigger, GStreamer's RTSP
server), killed (SIGKILL) and frozen (SIGSTOP) while a PLC announces parts, watched by
an independent subscriber that checks every verdict against the part's window.

What each run asserts, for every announced part: exactly one verdict; an inspected one
(PASS/FAIL) only from an image exposed inside the part's window (`t_capture_ns`); parts
announced while the camera was dead or frozen all NOT_INSPECTED, each published soon
after its window closed; no verdict past its budget with `late: false`; the capture
stage kept progressing (the watchdog's view) and a second camera kept its verdicts
flowing. The suite runs one short outage per peer and mode; `OUTAGE_REPEATS=5
OUTAGE_S=5` gives the measurement of docs/CAMERAS.md (figures printed, and written as
JSON to `OUTAGE_REPORT` when set).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

import pytest

pytest.importorskip("gi", reason="PyGObject (the camera extra) is needed for the camera peers")

from pipeline.composition.app import Pipeline  # noqa: E402
from pipeline.composition.assembly import build_parts  # noqa: E402
from pipeline.config import parse_config  # noqa: E402
from tests.peers import LOOPBACK, Peer  # noqa: E402
from tests.pipeline_helpers import VerdictCollector, config_dict  # noqa: E402
from tests.plc import PartFeeder  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

REPEATS = int(os.environ.get("OUTAGE_REPEATS", "1"))
OUTAGE_S = float(os.environ.get("OUTAGE_S", "2.5"))
TIMEOUT_S = 0.5  # trigger_timeout_s
# Slack over the window for a settled part's verdict to be out: the capture loop polls
# every 50 ms; the rest is a loaded 2-core machine. The issue measured 2.8-5.4 s before.
PUBLISH_SLACK_S = 0.6
pytestmark = [pytest.mark.camera, pytest.mark.timeout(60 + REPEATS * (OUTAGE_S + 12) * 2)]
SERIAL = "PIPE-OUTAGE-01"


@dataclass
class Figures:
    """What one run measured (the JSON of the by-hand measurement)."""

    outage_parts: int = 0
    outage_parts_inspected: int = 0
    worst_settle_after_announce_s: float = 0.0
    down_after_s: list[float] = field(default_factory=list)
    worst_capture_silence_s: float = 0.0
    other_camera_verdicts_during_outages: int = 0
    late_false_past_budget: int = 0
    verdicts: int = 0
    # (part, ms after the outage began, ms before it ended, image exposure - announcement ms)
    inspected_detail: list = field(default_factory=list)


def camera_config(kind: str, port: int | None) -> dict:
    base = {"trigger_timeout_s": TIMEOUT_S, "stall_timeout_s": 1.0}
    if kind == "gige":
        return {**base, "id": "cam", "fps": 50, "source": {
            "kind": "genicam", "address": LOOPBACK, "trigger": "software", "roi": [0, 0, 160, 120],
            "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}}
    return {**base, "id": "cam", "width": 320, "height": 240, "source": {
        "kind": "opencv", "uri": f"rtsp://{LOOPBACK}:{port}/cam", "open_timeout_ms": 1000, "read_timeout_ms": 1000,
        "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}}


def build(endpoint: str, triggers: str, kind: str, port: int | None) -> Pipeline:
    data = config_dict(endpoint, cameras=2, fps=10)  # cam1: a synthetic second camera that must flow on
    data["cameras"][0] = {**camera_config(kind, port), "trigger_endpoint": triggers}
    data["budget_ms"] = 1000
    config = parse_config(json.dumps(data))
    return Pipeline(config, build_parts(config))


def start_peer(kind: str, port: int | None) -> Peer:
    return Peer("gige", SERIAL).start() if kind == "gige" else Peer("rtsp", str(port)).start()


class CaptureWatch:
    """Samples the capture stage's last progress as the watchdog does: the worst silence."""

    def __init__(self, pipeline: Pipeline):
        self.stats = pipeline.telemetry.stages["capture.cam"]
        self.worst_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.worst_s = max(self.worst_s, (time.monotonic_ns() - self.stats.last_progress_ns) / 1e9)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


def state_is(state: str):
    return lambda hb: hb["cameras"]["cam"]["state"] == state


def outage(peer: Peer, mode: str, kind: str, port: int | None, collector: VerdictCollector,
           figures: Figures) -> tuple[Peer, int, int]:
    """One outage of OUTAGE_S; (the peer afterwards, start, end) in wall ns."""
    cam1_before = len(collector.verdicts["cam1"])
    t0 = time.time_ns()
    if mode == "kill":
        peer.stop(kill=True)
    else:
        peer.pause()
    down = collector.wait_for_heartbeat(OUTAGE_S, lambda hb: hb["cameras"]["cam"]["state"] in ("DOWN", "STALLED"))
    assert down is not None, f"camera still {collector.heartbeats[-1]['cameras']['cam']['state']} {OUTAGE_S} s into the outage"
    figures.down_after_s.append(round((down["t_ns"] - t0) / 1e9, 2))
    time.sleep(max(0.0, OUTAGE_S - (time.time_ns() - t0) / 1e9))  # paces the peer: the outage lasts OUTAGE_S
    if mode == "kill":
        peer = start_peer(kind, port)
    else:
        peer.resume()
    t1 = time.time_ns()
    figures.other_camera_verdicts_during_outages += len(collector.verdicts["cam1"]) - cam1_before
    return peer, t0, t1


def inspected_again(collector: VerdictCollector, since: int, timeout_s: float) -> bool:
    return wait_until(lambda: any(v["verdict"] in ("PASS", "FAIL") for v in collector.verdicts["cam"][since:]),
                      timeout_s, poll_s=0.05)


def check(plc: PartFeeder, collector: VerdictCollector, outages: list[tuple[int, int]], figures: Figures) -> None:
    verdicts = {v["part_id"]: v for v in collector.verdicts["cam"]}
    assert sorted(v["part_id"] for v in collector.verdicts["cam"]) == [p.part_id for p in plc.sent], \
        "every announced part exactly one verdict"
    window_ns = int(TIMEOUT_S * 1e9)
    for part in plc.sent:
        v = verdicts[part.part_id]
        if v["verdict"] in ("PASS", "FAIL"):
            assert part.t_wall_ns - 20_000_000 <= v["t_capture_ns"] <= part.t_wall_ns + window_ns + 20_000_000, \
                f"{part.part_id} judged by an image exposed outside its window: {v}"
        dead = any(t0 <= part.t_wall_ns <= t1 - window_ns for t0, t1 in outages)
        if not dead:
            continue
        figures.outage_parts += 1
        if v["verdict"] != "NOT_INSPECTED":
            t0, t1 = next(o for o in outages if o[0] <= part.t_wall_ns <= o[1])
            figures.outage_parts_inspected += 1
            figures.inspected_detail.append((part.part_id, round((part.t_wall_ns - t0) / 1e6), round((t1 - part.t_wall_ns) / 1e6),
                                             round((v["t_capture_ns"] - part.t_wall_ns) / 1e6)))
        settle_s = (v["t_publish_ns"] - part.t_wall_ns) / 1e9
        figures.worst_settle_after_announce_s = max(figures.worst_settle_after_announce_s, round(settle_s, 3))
    for cam in ("cam", "cam1"):
        figures.verdicts += len(collector.verdicts[cam])
        figures.late_false_past_budget += sum(not v["late"] and v["latency_ms"]["total"] > v["budget_ms"]
                                              for v in collector.verdicts[cam])


def report(name: str, figures: Figures) -> None:
    print(f"\n{name}: {json.dumps(figures.__dict__)}")
    path = os.environ.get("OUTAGE_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"run": name, "repeats": REPEATS, "outage_s": OUTAGE_S, **figures.__dict__}) + "\n")


@pytest.mark.parametrize("kind, mode", [("gige", "kill"), ("gige", "freeze"), ("rtsp", "kill"), ("rtsp", "freeze")])
def test_parts_passing_a_dead_or_frozen_camera_are_never_inspected(kind, mode, free_tcp_endpoint, tmp_path):
    port = free_port() if kind == "rtsp" else None
    peer = start_peer(kind, port)
    collector = VerdictCollector(free_tcp_endpoint)
    triggers = f"ipc://{tmp_path}/triggers"
    pipeline = build(free_tcp_endpoint, triggers, kind, port)
    figures, outages, watch = Figures(), [], None
    try:
        pipeline.start()
        assert collector.wait_for_heartbeat(15, state_is("STREAMING"))
        watch = CaptureWatch(pipeline)
        with PartFeeder(triggers, "cam") as plc:
            assert inspected_again(collector, 0, timeout_s=15), "parts inspected before any outage"
            for _ in range(REPEATS):
                peer, t0, t1 = outage(peer, mode, kind, port, collector, figures)
                outages.append((t0, t1))
                assert inspected_again(collector, len(collector.verdicts["cam"]), timeout_s=20), \
                    "parts inspected again after the camera came back, same pipeline"
        assert pipeline.shutdown(timeout_s=10) == 0
        pipeline = None
        assert collector.wait_for({"cam": len(plc.sent)}, timeout_s=5)
    finally:
        if watch is not None:
            watch.close()
            figures.worst_capture_silence_s = round(watch.worst_s, 3)
        if pipeline is not None:
            pipeline.shutdown(timeout_s=10)
        peer.stop()
        collector.close()
    check(plc, collector, outages, figures)
    report(f"{kind}-{mode}", figures)
    assert figures.outage_parts >= REPEATS * int((OUTAGE_S - TIMEOUT_S) / plc.interval_s) // 2
    assert figures.outage_parts_inspected == 0, f"parts announced while the camera was away inspected: {figures.inspected_detail}"
    assert figures.worst_settle_after_announce_s <= TIMEOUT_S + PUBLISH_SLACK_S, figures
    assert figures.worst_capture_silence_s < 2.0, "the capture stage stopped progressing: the watchdog would fire"
    assert figures.other_camera_verdicts_during_outages >= REPEATS * OUTAGE_S * 10 // 2, "the other camera flowed on"
    assert figures.late_false_past_budget == 0
