"""Wire format: what encode_* emit is what PROTOCOL.md promises, and decode is strict."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pipeline.core.messages import Detections, Outcome, Reason, ReasonCode
from pipeline.core.protocol import (
    SCHEMA_VERSION,
    ProtocolError,
    decode,
    encode_heartbeat,
    encode_verdict,
    heartbeat_topic,
    iso_utc,
    verdict_topic,
)
from tests.zmq_helpers import CLASS_NAMES, defect_job, make_job

pytestmark = pytest.mark.timeout(10)


def encode(job, seq=0, include_detections=True) -> dict:
    t_mono = job.frame.t_capture_ns + 12_500_000
    payload = encode_verdict(job, seq, 1_700_000_000_000_000_000, t_mono, 30.0, CLASS_NAMES, include_detections)
    assert isinstance(payload, bytes)
    return decode(payload)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_round_trip_every_outcome(outcome):
    reasons = () if outcome is Outcome.PASS else (Reason(ReasonCode.STAGE_ERROR, "boom"),)
    job = make_job("cam-1", 7, outcome, reasons, late=True, part_id="P-42")
    msg = encode(job, seq=3)
    assert msg["schema"] == SCHEMA_VERSION and msg["type"] == "verdict"
    assert (msg["camera_id"], msg["seq"], msg["frame_id"], msg["part_id"]) == ("cam-1", 3, 7, "P-42")
    assert msg["verdict"] == outcome.value
    assert msg["t_capture_ns"] == job.frame.t_wall_ns
    assert msg["t_publish_ns"] == 1_700_000_000_000_000_000
    assert msg["late"] is True and msg["budget_ms"] == 30.0 and msg["backend"] == "onnxruntime"
    assert msg["reasons"] == [{"code": "stage_error", "detail": "boom"}] * bool(reasons)
    assert msg["detections"] == [] and "archive" not in msg


def test_defect_reason_and_detections_are_rounded_and_named():
    msg = encode(defect_job())
    assert msg["reasons"] == [
        {
            "code": "defect",
            "detail": "scratch >= 0.5",
            "class": "scratch",
            "score": 0.91,
            "box": [10.2, 20.0, 50.5, 60.0],
            "area_px2": 1606.5,
            "area_mm2": 0.402,
            "rule": "scratch",
        }
    ]
    assert msg["detections"][0] == {"class": "scratch", "class_id": 0, "score": 0.91, "box": [10.2, 20.0, 50.5, 60.0]}
    assert msg["detections"][1]["class"] == "spot"


def test_unknown_class_id_is_named_by_its_number():
    dets = Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.array([7]))
    msg = encode(make_job(outcome=Outcome.PASS, detections=dets))
    assert msg["detections"][0]["class"] == "7"


def test_detections_can_be_left_out():
    assert "detections" not in encode(defect_job(), include_detections=False)


def test_latency_has_one_key_per_mark_in_order_then_total():
    msg = encode(make_job())
    assert list(msg["latency_ms"]) == ["capture", "preprocess", "infer", "decide", "total"]
    assert msg["latency_ms"]["capture"] == 0.5
    assert msg["latency_ms"]["infer"] == 6.0
    assert msg["latency_ms"]["total"] == 12.5


def test_archive_path_is_published_when_present(tmp_path):
    msg = encode(make_job(archive_path=tmp_path / "cam0" / "000001.jpg"))
    assert msg["archive"] == str(tmp_path / "cam0" / "000001.jpg")


def test_capture_time_is_iso_utc_with_microseconds():
    assert iso_utc(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", encode(make_job())["t_capture"])


def test_payload_is_compact_ascii_json():
    payload = encode_verdict(make_job(part_id="Teil-ü"), 0, 1, 1, 30.0, CLASS_NAMES)
    assert b" " not in payload and payload.isascii()
    assert json.loads(payload)["part_id"] == "Teil-ü"


@pytest.mark.parametrize("where", ["detection", "reason"])
def test_nan_score_is_refused_not_emitted(where):
    job = defect_job(score=float("nan")) if where == "detection" else make_job(
        outcome=Outcome.FAIL, reasons=(Reason(ReasonCode.DEFECT, score=float("inf")),)
    )
    with pytest.raises(ProtocolError, match="verdict"):
        encode_verdict(job, 0, 1, 1, 30.0, CLASS_NAMES)


def test_undecided_job_is_a_bug():
    job = make_job().mark("decide", verdict=None)
    with pytest.raises(ProtocolError, match="no verdict"):
        encode_verdict(job, 0, 1, 1, 30.0, CLASS_NAMES)


def test_topics():
    assert verdict_topic("inspect", "cam0") == b"inspect.cam0"
    assert heartbeat_topic("line3.inspect") == b"line3.inspect._heartbeat"
    for bad in ("_heartbeat", "", "cam 0", "a" * 65, "cam.0"):
        with pytest.raises(ProtocolError):
            verdict_topic("inspect", bad)
    with pytest.raises(ProtocolError):
        heartbeat_topic("in spect")


def test_heartbeat_has_envelope_and_every_documented_field():
    status = {"health": "OK", "uptime_s": 3.5, "cameras": {"cam0": {"state": "STREAMING", "last_seq": 4}}, "seq": 99}
    msg = decode(encode_heartbeat(status, seq=2, t_ns=123))
    assert (msg["schema"], msg["type"], msg["seq"], msg["t_ns"]) == (SCHEMA_VERSION, "heartbeat", 2, 123)
    assert msg["health"] == "OK" and msg["uptime_s"] == 3.5
    assert msg["cameras"]["cam0"] == {"state": "STREAMING", "last_seq": 4}
    for field in ("backend", "counts", "queues", "stages", "errors"):
        assert field in msg


def test_heartbeat_converts_enums_and_numpy_values():
    msg = decode(encode_heartbeat({"health": "OK", "counts": {"PASS": np.int64(3)}, "errors": (Outcome.ERROR,)}, 0, 0))
    assert msg["counts"] == {"PASS": 3} and msg["errors"] == ["ERROR"]


def test_heartbeat_health_must_be_a_known_state():
    with pytest.raises(ProtocolError, match="health"):
        encode_heartbeat({"health": "FINE"}, 0, 0)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"\xff\xfe", b"[1,2]", b'{"type":"verdict"}', b'{"schema":true,"type":"verdict"}',
     b'{"schema":1}', b'{"schema":1,"type":"verdict","score":NaN}'],
)
def test_decode_rejects_what_is_not_a_message(payload):
    with pytest.raises(ProtocolError):
        decode(payload)


def test_decode_keeps_unknown_fields():
    assert decode(b'{"schema":1,"type":"verdict","new_field":[1]}')["new_field"] == [1]


def test_protocol_doc_covers_every_reason_code_and_its_examples_decode():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md").read_text()
    for code in ReasonCode:
        assert f"| `{code.value}` |" in doc, f"PROTOCOL.md does not document reason code {code.value}"
    examples = [block.split("```")[0] for block in doc.split("```json")[1:]]
    assert [json.loads(e)["type"] for e in examples] == ["verdict", "verdict", "heartbeat"]
