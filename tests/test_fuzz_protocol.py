"""Hypothesis against the wire format: encode -> decode gives back what was sent.

Promises: any settled job with finite numbers round-trips (ids, seq, outcome, reasons,
detections within the documented rounding); a non-finite number is refused with
`ProtocolError`, never emitted as JSON a C or Node parser rejects; `decode` of arbitrary
bytes returns a message or raises `ProtocolError`, nothing else.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.messages import Detections, Frame, Job, Outcome, Reason, ReasonCode, Verdict
from pipeline.core.protocol import ProtocolError, decode, encode_heartbeat, encode_verdict

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASS_NAMES = ("scratch", "spot", "crack")
T0 = 1_700_000_000_000_000_000

camera_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
texts = st.text(max_size=40)  # any unicode: details carry exception messages


@st.composite
def reasons(draw):
    return Reason(draw(st.sampled_from(list(ReasonCode))), draw(texts),
                  draw(st.none() | st.sampled_from(CLASS_NAMES)), draw(st.none() | st.floats(0, 1)),
                  draw(st.none() | st.tuples(finite, finite, finite, finite)),
                  draw(st.none() | st.floats(0, 1e7)), draw(st.none() | st.floats(0, 1e5)), draw(st.none() | texts))


@st.composite
def detections(draw, values=finite):
    n = draw(st.integers(0, 5))
    boxes = np.array(draw(st.lists(st.tuples(values, values, values, values), min_size=n, max_size=n)),
                     np.float32).reshape(n, 4)
    scores = np.array(draw(st.lists(st.floats(0, 1, width=32) if values is finite else values, min_size=n, max_size=n)),
                      np.float32)
    ids = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), np.int64)
    return Detections(boxes, scores, ids)


@st.composite
def jobs(draw, dets=detections()):  # noqa: B008 - a hypothesis strategy, built once on purpose
    t_capture = draw(st.integers(0, 2**62))
    frame = Frame(draw(camera_ids), draw(st.integers(0, 2**53)), None, t_capture, T0 + draw(st.integers(0, 10**15)),
                  part_id=draw(st.none() | texts))
    marks = tuple((stage, t_capture + draw(st.integers(0, 10**9)))
                  for stage in draw(st.lists(st.sampled_from(["capture", "preprocess", "infer", "decide"]), max_size=4)))
    verdict = Verdict(draw(st.sampled_from(list(Outcome))), tuple(draw(st.lists(reasons(), max_size=3))), draw(st.booleans()))
    return Job(frame, marks, detections=draw(st.none() | dets), verdict=verdict, model_backend=draw(st.none() | texts))


@FUZZ
@given(jobs(), st.integers(0, 2**53), st.floats(0.1, 60_000))
def test_every_settled_job_round_trips(job, seq, budget_ms):
    t_publish_mono = job.frame.t_capture_ns + 5_000_000
    msg = decode(encode_verdict(job, seq, T0, t_publish_mono, budget_ms, CLASS_NAMES))
    frame, verdict = job.frame, job.verdict
    assert (msg["camera_id"], msg["seq"], msg["frame_id"], msg["part_id"]) == (
        frame.camera_id, seq, frame.frame_id, frame.part_id)
    assert msg["verdict"] == verdict.outcome.value and msg["late"] == verdict.late and msg["budget_ms"] == budget_ms
    assert [r["code"] for r in msg["reasons"]] == [r.code.value for r in verdict.reasons]
    assert [r["detail"] for r in msg["reasons"]] == [r.detail for r in verdict.reasons]
    for sent, got in zip(verdict.reasons, msg["reasons"]):
        assert got.get("class") == sent.class_name and got.get("rule") == sent.rule
        if sent.score is not None:
            assert got["score"] == pytest.approx(sent.score, abs=6e-5)
        if sent.box is not None:
            assert got["box"] == pytest.approx(list(sent.box), abs=0.051)
    dets = job.detections if job.detections is not None else Detections.empty()
    assert len(msg["detections"]) == len(dets)
    for i, d in enumerate(msg["detections"]):
        assert d["class_id"] == dets.class_ids[i] and d["score"] == pytest.approx(float(dets.scores[i]), abs=6e-5)
        assert d["box"] == pytest.approx(dets.boxes[i].astype(float).tolist(), abs=0.051 + 1e-6 * float(abs(dets.boxes[i]).max()))
    assert msg["latency_ms"]["total"] == pytest.approx(5.0)


@FUZZ
@given(jobs(dets=detections(st.sampled_from([math.nan, math.inf, -math.inf]))).filter(
    lambda j: j.detections is not None and len(j.detections) > 0))
def test_non_finite_numbers_are_refused_not_emitted(job):
    with pytest.raises(ProtocolError):
        encode_verdict(job, 0, T0, job.frame.t_capture_ns, 30.0, CLASS_NAMES)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decoding_any_bytes_gives_a_message_or_a_protocol_error(payload):
    try:
        msg = decode(payload)
    except ProtocolError:
        return
    assert isinstance(msg, dict) and isinstance(msg["schema"], int) and isinstance(msg["type"], str)


@FUZZ
@given(st.dictionaries(st.text(max_size=10), st.none() | st.integers() | finite | texts, max_size=5),
       st.sampled_from(["STARTING", "OK", "DEGRADED", "ERROR", "STOPPING"]), st.integers(0, 2**53))
def test_heartbeats_round_trip_with_every_documented_field(extra, health, seq):
    msg = decode(encode_heartbeat({**extra, "health": health}, seq, T0))
    assert (msg["type"], msg["health"], msg["seq"]) == ("heartbeat", health, seq)
    assert {"uptime_s", "cameras", "counts", "queues", "stages", "errors"} <= msg.keys()
    json.dumps(msg, allow_nan=False)  # strict JSON all the way
