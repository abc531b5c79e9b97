"""`pipeline subscribe ENDPOINT`: watch a running pipeline's verdicts and heartbeats.

Owns a SUB socket for the duration of `subscribe_main` and the per-camera sequence
tracking that turns `seq` jumps into GAP / RESTART lines. What crosses the boundary: an
endpoint and options come in from the CLI; text lines go to `out` (stdout), warnings,
gap lines in JSON mode and the closing summary go to `err` (stderr); an exit code goes
back. Payloads are parsed with `pipeline.core.protocol.decode` only, so this is also the
reference subscriber for docs/PROTOCOL.md.

Receives with a short RCVTIMEO so Ctrl-C and the inactivity timeout are noticed
promptly; never crashes on a malformed message.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import zmq

from pipeline.core.protocol import SCHEMA_VERSION, ProtocolError, decode
from pipeline.parts.publishing.curve import CurveKeyError, make_curve_client

_POLL_MS = 100  # longest a Ctrl-C or a timeout waits to be noticed


class SeqTracker:
    """Per-camera expected next `seq`; reports gaps, restarts and trailing gaps."""

    def __init__(self) -> None:
        self.expected: dict[str, int] = {}
        self.received: Counter[str] = Counter()
        self.gaps = 0
        self.lost = 0
        self.restarts = 0
        self.instance: str | None = None  # the publisher's instance id (PROTOCOL.md), once seen

    def on_instance(self, instance: Any) -> str | None:
        """A RESTART line when the publisher's instance id changed; then every camera expects
        seq 0 again, so what the new instance sent before we got its first message counts as lost."""
        if not isinstance(instance, str):
            return None  # an older publisher without instance ids
        previous, self.instance = self.instance, instance
        if previous is None or previous == instance:
            return None
        self.restarts += 1
        last = ", ".join(f"{cid} seq {seq - 1}" for cid, seq in sorted(self.expected.items())) or "none"
        self.expected = {cid: 0 for cid in self.expected}
        return (f"RESTART: publisher instance {previous} -> {instance}; last received from the old one: {last}. "
                "Whatever the old instance sent after those was not received; the new instance's losses follow as GAP lines")

    def on_verdict(self, camera_id: str, seq: int) -> str | None:
        """Record a verdict; return a GAP/RESTART line when its seq is not the expected one."""
        self.received[camera_id] += 1
        expected = self.expected.get(camera_id)
        self.expected[camera_id] = seq + 1
        if expected is None or seq == expected:
            return None  # the first seq seen need not be 0: we may have joined late
        if seq > expected:
            return self._gap(camera_id, expected, seq, "")
        self.restarts += 1
        return f"RESTART {camera_id}: seq went from {expected - 1} to {seq} (publisher restarted)"

    def on_heartbeat_last_seq(self, camera_id: str, last_seq: int) -> str | None:
        """Compare the publisher's last sent seq with what arrived (heartbeats follow verdicts)."""
        expected = self.expected.get(camera_id)
        self.expected[camera_id] = last_seq + 1
        if expected is None or last_seq == expected - 1:
            return None  # first word on this camera: it becomes the baseline
        if last_seq >= expected:
            return self._gap(camera_id, expected, last_seq + 1, " before heartbeat")
        self.restarts += 1
        return f"RESTART {camera_id}: heartbeat last_seq {last_seq} is below seq {expected - 1} received (publisher restarted)"

    def _gap(self, camera_id: str, expected: int, got: int, where: str) -> str:
        missing = got - expected
        self.gaps += 1
        self.lost += missing
        if where:
            return f"GAP {camera_id}: expected seq {expected}, heartbeat says last was {got - 1} ({missing} verdicts lost{where})"
        return f"GAP {camera_id}: expected seq {expected}, got {got} ({missing} verdicts lost)"


# --------------------------------------------------------------------------- formatting


def format_verdict(msg: dict[str, Any]) -> str:
    """`cam0 seq=41 frame=41 part=- FAIL 12.3ms scratch 0.91 @[10,20,50,60] late`."""
    total = (msg.get("latency_ms") or {}).get("total")
    parts = [
        str(msg.get("camera_id")),
        f"seq={msg.get('seq')}",
        f"frame={msg.get('frame_id')}",
        f"part={msg.get('part_id') or '-'}",
        str(msg.get("verdict")),
        f"{total:.1f}ms" if isinstance(total, (int, float)) else "?ms",
    ]
    parts += [_format_reason(r) for r in msg.get("reasons") or () if isinstance(r, dict)]
    if msg.get("late"):
        parts.append("late")
    return " ".join(parts)


def _format_reason(reason: dict[str, Any]) -> str:
    if "class" in reason:
        text = str(reason["class"])
        if isinstance(reason.get("score"), (int, float)):
            text += f" {reason['score']:.2f}"
        box = reason.get("box")
        if isinstance(box, list) and all(isinstance(v, (int, float)) for v in box):
            text += " @[" + ",".join(f"{v:.0f}" for v in box) + "]"
        return text
    detail = reason.get("detail")
    return f"{reason.get('code')}({detail})" if detail else str(reason.get("code"))


def format_heartbeat(msg: dict[str, Any], fps: dict[str, float]) -> str:
    """`[heartbeat] OK up 12.3s cam0 29.8fps RUNNING | PASS=340 FAIL=12 | errors: ...`."""
    parts = [f"[heartbeat] {msg.get('health')}", f"up {msg.get('uptime_s', 0):.1f}s"]
    for cid, info in sorted((msg.get("cameras") or {}).items()):
        rate = f" {fps[cid]:.1f}fps" if cid in fps else ""
        parts.append(f"{cid}{rate} {info.get('state', '?') if isinstance(info, dict) else '?'}")
    counts = msg.get("counts") or {}
    line = " ".join(parts)
    if counts:
        line += " | " + " ".join(f"{k}={v}" for k, v in counts.items())
    if msg.get("errors"):
        line += " | errors: " + "; ".join(map(str, msg["errors"]))
    return line


# --------------------------------------------------------------------------- the loop


class _Session:
    """State of one `subscribe_main` run: what was seen, and where lines go."""

    def __init__(self, topic: str, json_lines: bool, out: TextIO, err: TextIO):
        self.topic = topic
        self.json_lines = json_lines
        self.out, self.err = out, err
        self.note = err if json_lines else out  # GAP/warnings must not corrupt a JSON stream
        self.seqs = SeqTracker()
        self.verdicts: Counter[str] = Counter()
        self.malformed = 0
        self.warned_schema = False
        self.last_frames: dict[str, tuple[int, int]] = {}  # camera -> (t_ns, frames_captured)

    def handle(self, frames: list[bytes]) -> bool:
        """Handle one received message; True when it was a verdict."""
        if len(frames) != 2:
            return self._malformed(f"expected 2 frames [topic, payload], got {len(frames)}")
        topic = frames[0].decode("utf-8", "replace")
        if not _topic_matches(self.topic, topic) and topic != _heartbeat_topic_for(self.topic):
            return False  # ZeroMQ subscribes by byte prefix: "x.cam1" also gets "x.cam10"
        try:
            msg = decode(frames[1])
        except ProtocolError as err:
            return self._malformed(f"on {topic!r}: {err}")
        self._check_schema(msg)
        if self.json_lines:
            self._print(self.out, frames[1].decode("utf-8"))
        if msg["type"] == "verdict":
            return self._verdict(msg)
        if msg["type"] == "heartbeat":
            self._heartbeat(msg, topic.rsplit(".", 1)[0])
        return False  # unknown types are ignored (versioning rules)

    def _verdict(self, msg: dict[str, Any]) -> bool:
        camera_id, seq = msg.get("camera_id"), msg.get("seq")
        if not isinstance(camera_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
            return self._malformed(f"verdict without camera_id/seq: {msg!r:.120}")
        self._print(self.note, self.seqs.on_instance(msg.get("instance")))
        self._print(self.note, self.seqs.on_verdict(camera_id, seq))
        self.verdicts[str(msg.get("verdict"))] += 1
        if not self.json_lines:
            self._print(self.out, format_verdict(msg))
        return True

    def _heartbeat(self, msg: dict[str, Any], prefix: str) -> None:
        cameras = msg.get("cameras") if isinstance(msg.get("cameras"), dict) else {}
        self._print(self.note, self.seqs.on_instance(msg.get("instance")))
        fps = {}
        for cid, info in cameras.items():
            if not isinstance(info, dict) or not _topic_matches(self.topic, f"{prefix}.{cid}"):
                continue  # a camera we do not watch has no gaps for us
            if isinstance(info.get("last_seq"), int):
                self._print(self.note, self.seqs.on_heartbeat_last_seq(cid, info["last_seq"]))
            rate = self._fps(cid, msg.get("t_ns"), info.get("frames_captured"))
            if rate is not None:
                fps[cid] = rate
        if not self.json_lines:
            self._print(self.out, format_heartbeat({**msg, "cameras": cameras}, fps))

    def _fps(self, camera_id: str, t_ns: Any, frames: Any) -> float | None:
        if not isinstance(t_ns, int) or not isinstance(frames, int):
            return None
        previous = self.last_frames.get(camera_id)
        self.last_frames[camera_id] = (t_ns, frames)
        if previous is None or t_ns <= previous[0]:
            return None
        return (frames - previous[1]) * 1e9 / (t_ns - previous[0])

    def _check_schema(self, msg: dict[str, Any]) -> None:
        if msg["schema"] > SCHEMA_VERSION and not self.warned_schema:
            self.warned_schema = True
            self._print(self.note, f"WARNING schema {msg['schema']} is newer than this subscriber's ({SCHEMA_VERSION})")

    def _malformed(self, why: str) -> bool:
        self.malformed += 1
        self._print(self.note, f"WARNING malformed message {why}")
        return False

    def summary(self, result: str) -> str:
        per_camera = ", ".join(f"{c} {n}" for c, n in sorted(self.seqs.received.items())) or "none"
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.verdicts.items()))
        total = sum(self.seqs.received.values())
        return (
            f"summary: {result}; {total} verdicts ({per_camera}) {counts}; "
            f"{self.seqs.gaps} gaps ({self.seqs.lost} lost), {self.seqs.restarts} restarts, {self.malformed} malformed"
        ).replace("  ", " ")

    @staticmethod
    def _print(stream: TextIO, line: str | None) -> None:
        if line is not None:
            print(line, file=stream, flush=True)


def _topic_matches(wanted: str, topic: str) -> bool:
    """Segment-wise match: "inspect" and "inspect." take all; "inspect.cam1" not "inspect.cam10"."""
    if not wanted or topic == wanted:
        return True
    return topic.startswith(wanted if wanted.endswith(".") else wanted + ".")


def _heartbeat_topic_for(topic: str) -> str | None:
    """Watching one camera ("inspect.cam1") still wants the pipeline's heartbeat."""
    prefix, dot, camera = topic.rpartition(".")
    return f"{prefix}._heartbeat" if dot and prefix and camera else None


def subscribe_main(
    endpoint: str,
    topic: str = "",
    count: int | None = None,
    timeout_s: float | None = None,
    json_lines: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO | None = None,
    curve: tuple[str, str] | None = None,
) -> int:
    """Print messages from `endpoint`; 0 on count reached, Ctrl-C or idle timeout, 1 when
    the timeout hit before `count` verdicts, 2 when the endpoint or a key is unusable.

    `curve` is (server public key file, client certificate file) for a CURVE publisher."""
    session = _Session(topic, json_lines, out, err or sys.stderr)
    context = zmq.Context.instance()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, _POLL_MS)
    try:
        if curve is not None:
            make_curve_client(sock, Path(curve[0]), Path(curve[1]))
        sock.connect(endpoint)
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        heartbeats = _heartbeat_topic_for(topic)
        if heartbeats:
            sock.setsockopt(zmq.SUBSCRIBE, heartbeats.encode("utf-8"))
    except zmq.ZMQError as error:
        sock.close()
        print(f"error: cannot connect to {endpoint!r}: {error.strerror}", file=session.err)
        return 2
    except CurveKeyError as error:
        sock.close()
        print(f"error: {error}", file=session.err)
        return 2
    try:
        code, result = _receive_loop(sock, session, count, timeout_s)
    except KeyboardInterrupt:
        code, result = 0, "interrupted"
    finally:
        sock.close()
    print(session.summary(result), file=session.err, flush=True)
    return code


def _receive_loop(sock: zmq.Socket, session: _Session, count: int | None, timeout_s: float | None) -> tuple[int, str]:
    received = 0
    last_message = time.monotonic()
    while count is None or received < count:
        try:
            frames = sock.recv_multipart()
        except zmq.Again:
            if timeout_s is not None and time.monotonic() - last_message >= timeout_s:
                return (1, "timed out") if count is not None else (0, "idle timeout")
            continue
        last_message = time.monotonic()
        received += session.handle(frames)
    return 0, f"{count} verdicts received"
