"""The wire format of everything the pipeline publishes: topics and JSON payloads.

Bottom layer: imports only `pipeline.core.messages`, the stdlib and numpy; knows nothing of
sockets. docs/PROTOCOL.md is the contract for subscribers; this module is its only
implementation, so a change here is a change to that document.

What crosses the boundary: a settled `Job` (or a heartbeat status dict) goes in, UTF-8
JSON bytes come out; `decode` turns bytes back into a plain dict. Every encoder refuses
(raises `ProtocolError`) rather than emit something a strict JSON parser would reject,
e.g. a NaN score.

The encoder is on the hot path (one call per verdict): it builds one dict with plain
Python values and calls the C JSON encoder once; numpy arrays are converted with
vectorised `round`/`tolist`, never element by element.
"""

from __future__ import annotations

import json
import os
import re
import time
from enum import Enum
from typing import Any, Sequence

import numpy as np

from pipeline.config.cameras import CAMERA_ID_PATTERN
from pipeline.config.models import TOPIC_PREFIX_PATTERN
from pipeline.core.errors import PipelineError
from pipeline.core.messages import Detections, Job, Outcome, Reason, ReasonCode, mark_spans, queue_waits
from pipeline.core.states import CameraState, Health, StageState, WireState

SCHEMA_VERSION = 1

_CAMERA_ID = re.compile(CAMERA_ID_PATTERN)  # the config's patterns: one definition
_TOPIC_PREFIX = re.compile(TOPIC_PREFIX_PATTERN)
# Heartbeat fields a subscriber may rely on; missing ones are filled with empty values so
# the wire always carries every documented field.
_HEARTBEAT_DEFAULTS: dict[str, Any] = {
    "uptime_s": 0.0,
    "backend": None,
    "backend_choice": None,
    "cameras": {},
    "counts": {},
    "queues": {},
    "stages": {},
    "errors": [],
}


class ProtocolError(PipelineError, ValueError):
    """A message cannot be encoded, or received bytes are not a valid message."""


# --------------------------------------------------------------------------- topics


def verdict_topic(prefix: str, camera_id: str) -> bytes:
    """`<prefix>.<camera_id>`; callers cache it (validation is not free)."""
    _check_prefix(prefix)
    if not _CAMERA_ID.match(camera_id):
        raise ProtocolError(f"invalid camera id {camera_id!r}: must match {_CAMERA_ID.pattern}")
    return f"{prefix}.{camera_id}".encode("ascii")


def heartbeat_topic(prefix: str) -> bytes:
    """`<prefix>._heartbeat`: camera ids never start with `_`, so it cannot collide."""
    _check_prefix(prefix)
    return f"{prefix}._heartbeat".encode("ascii")


def _check_prefix(prefix: str) -> None:
    if not _TOPIC_PREFIX.match(prefix):
        raise ProtocolError(f"invalid topic prefix {prefix!r}: must match {_TOPIC_PREFIX.pattern}")


# --------------------------------------------------------------------------- verdicts


def encode_verdict(
    job: Job,
    seq: int,
    t_publish_ns: int,
    t_publish_mono_ns: int,
    budget_ms: float,
    class_names: Sequence[str],
    include_detections: bool = True,
    instance: str | None = None,
) -> bytes:
    """One verdict message. `t_publish_ns` is wall clock, `t_publish_mono_ns` monotonic.

    `instance`: the publisher's id, random per start (docs/PROTOCOL.md); omitted if None.
    """
    verdict, frame = job.verdict, job.frame
    if verdict is None:
        raise ProtocolError(
            f"job {frame.camera_id}/{frame.frame_id} has no verdict: publishing an undecided job is a bug"
        )
    msg: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "type": "verdict",
        "camera_id": frame.camera_id,
        "seq": seq,
        "frame_id": frame.frame_id,
        "part_id": frame.part_id,
        "t_capture_ns": frame.t_wall_ns,
        "t_capture": iso_utc(frame.t_wall_ns),
        "t_publish_ns": t_publish_ns,
        "verdict": _member(Outcome, verdict.outcome),
        "reasons": [_reason(r) for r in verdict.reasons],
    }
    if include_detections:
        msg["detections"] = _detections(job.detections, class_names)
    msg["latency_ms"] = _latency_ms(frame.t_capture_ns, job.marks, t_publish_mono_ns)
    msg["queue_wait_ms"] = _queue_wait_ms(frame.t_capture_ns, job.marks, job.takes)
    msg["late"] = bool(verdict.late)
    msg["budget_ms"] = budget_ms
    msg["backend"] = job.model_backend
    archive = job.extra.get("archive_path")
    if archive is not None:
        msg["archive"] = os.fspath(archive)
    if instance is not None:
        msg["instance"] = instance
    return _dumps(msg)


_last_second: tuple[int, str] = (-1, "")  # the last whole second iso_utc formatted: verdicts come in bursts


def iso_utc(t_wall_ns: int) -> str:
    """ISO-8601 UTC with microseconds, e.g. 2024-05-01T12:00:00.123456Z."""
    global _last_second
    seconds, ns = divmod(int(t_wall_ns), 1_000_000_000)
    cached, text = _last_second  # one read of the pair: safe if another thread replaces it
    if cached != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    return f"{text}.{ns // 1000:06d}Z"


def _member(kind: type[Enum], value: Any) -> Any:
    """`value` as a member of the str-valued enum `kind` (JSON writes a member as its
    value); a plain string is looked up, so an unknown one still raises."""
    return value if type(value) is kind else kind(value).value


def _reason(reason: Reason) -> dict[str, Any]:
    out: dict[str, Any] = {"code": _member(ReasonCode, reason.code), "detail": reason.detail}
    if reason.class_name is not None:
        out["class"] = reason.class_name
    if reason.score is not None:
        out["score"] = round(float(reason.score), 4)
    if reason.box is not None:
        out["box"] = [round(float(v), 1) for v in reason.box]
    if reason.area_px2 is not None:
        out["area_px2"] = round(float(reason.area_px2), 1)
    if reason.area_mm2 is not None:
        out["area_mm2"] = round(float(reason.area_mm2), 3)
    if reason.rule is not None:
        out["rule"] = reason.rule
    return out


def _detections(dets: Detections | None, class_names: Sequence[str]) -> list[dict[str, Any]]:
    if dets is None or len(dets) == 0:
        return []
    # float64 before rounding so 0.91 (float32 0.9100000262) prints as 0.91
    boxes = dets.boxes.astype(np.float64).round(1).tolist()
    scores = dets.scores.astype(np.float64).round(4).tolist()
    ids = dets.class_ids.tolist()
    n_names = len(class_names)
    return [
        {"class": class_names[c] if 0 <= c < n_names else str(c), "class_id": c, "score": s, "box": b}
        for c, s, b in zip(ids, scores, boxes)
    ]


def _latency_ms(t_capture_ns: int, marks: Sequence[tuple[str, int]], t_publish_mono_ns: int) -> dict[str, float]:
    """Each stage's share (ms since the previous mark), plus capture-to-publish `total`."""
    out: dict[str, float] = {}
    for stage, start, t_ns in mark_spans(t_capture_ns, tuple(marks)):
        # a stage that marks twice (unusual) keeps one key; the shares still add up
        out[stage] = round(out.get(stage, 0.0) + (t_ns - start) / 1e6, 3)
    out["total"] = round((t_publish_mono_ns - t_capture_ns) / 1e6, 3)
    return out


def _queue_wait_ms(t_capture_ns: int, marks: Sequence[tuple[str, int]],
                   takes: Sequence[tuple[str, int]]) -> dict[str, float]:
    """The part of each stage's `latency_ms` share spent waiting in its queue (the rest is
    the stage's own work); stages that waited in no queue are left out."""
    return {stage: round(wait / 1e6, 3) for stage, wait in queue_waits(t_capture_ns, tuple(marks), tuple(takes))}


# --------------------------------------------------------------------------- heartbeats


def encode_heartbeat(status: dict[str, Any], seq: int, t_ns: int) -> bytes:
    """A heartbeat from the caller's `status` (see PROTOCOL.md); we add schema/type/seq/t_ns."""
    health = _state_value(Health, status.get("health"), "heartbeat health")
    for cid, camera in _mapping(status.get("cameras")).items():
        _state_value(CameraState, camera.get("state", CameraState.CONNECTING), f"camera {cid} state")
    for name, stage in _mapping(status.get("stages")).items():
        _state_value(StageState, stage.get("state", StageState.STARTING), f"stage {name} state")
    msg: dict[str, Any] = {"schema": SCHEMA_VERSION, "type": "heartbeat", "seq": seq, "t_ns": t_ns, "health": health}
    msg.update(_HEARTBEAT_DEFAULTS)
    msg.update((k, v) for k, v in status.items() if k not in ("schema", "type", "seq", "t_ns"))
    return _dumps(msg)


def _mapping(value: object) -> dict[str, Any]:
    """The dict entries of a status section; anything else carries no states to check
    (the fuzz test sends `stages: 1`: still encoded as given, never a crash)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, dict)}


def _state_value(kind: type[WireState], value: object, what: str) -> str:
    """`value` as its wire string, if it is one of `kind`'s states (pipeline.core.states)."""
    try:
        return str(kind(value).value)
    except ValueError:
        raise ProtocolError(f"{what} must be one of {[s.value for s in kind]}, got {value!r}") from None


# --------------------------------------------------------------------------- bytes


def _json_default(value: Any) -> Any:
    """Plain values for the types status dicts tend to carry (enums, numpy scalars, paths)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every message (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default)


def _dumps(msg: dict[str, Any]) -> bytes:
    try:
        text = _ENCODER.encode(msg)
    except (TypeError, ValueError) as err:
        # e.g. a NaN/inf score: refuse rather than emit JSON a C or Node parser rejects
        raise ProtocolError(f"cannot encode {msg.get('type')} message: {err}") from err
    return text.encode("utf-8")


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; other languages' parsers do not, so neither do we
    raise ValueError(f"non-standard JSON constant {name}")


def decode(payload: bytes) -> dict[str, Any]:
    """Parse a payload; a JSON object with an int `schema` and a str `type`, else ProtocolError.

    Only the envelope is checked: per the versioning rules, unknown fields are kept and
    the caller decides what to do with a `type` or `schema` it does not know.
    """
    try:
        msg = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"payload is not UTF-8 JSON: {err}") from err
    if not isinstance(msg, dict):
        raise ProtocolError(f"payload is a JSON {type(msg).__name__}, not an object")
    schema = msg.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise ProtocolError(f"payload has no integer 'schema' (got {schema!r})")
    if not isinstance(msg.get("type"), str):
        raise ProtocolError(f"payload has no string 'type' (got {msg.get('type')!r})")
    return msg
