"""Part ids announced by the PLC gateway: the trigger input socket and the part ledger.

Owns, per camera, a ZeroMQ PULL socket (bound to `cameras[].trigger_endpoint`; the
gateway connects a PUSH socket) and the thread that is its only user, and the ledger of
announced parts that no frame has claimed yet. The message format is documented in
docs/PROTOCOL.md ("Part ids"): one frame, a JSON object
`{"camera": "cam0", "part_id": "A7-004211"}` (`camera` optional; must match).

The inbox thread records each announcement with its arrival time; for a camera in
software-trigger mode the ledger fires the trigger (one part in flight at a time). The
capture stage then claims the oldest announced part for each frame, and asks for the
parts that waited longer than the trigger timeout: those get a NOT_INSPECTED verdict,
so a part whose image never came is reported, never forgotten. Malformed messages are
counted and logged (never per message), and never stop the inbox.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Callable

import zmq

from pipeline.config.models import CameraConfig
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

MAX_PART_ID_CHARS = 128
MAX_PENDING = 10_000  # far beyond any line; a runaway sender costs memory, not the daemon
POLL_MS = 50  # how often the inbox thread re-checks its stop events


class TriggerMessageError(PipelineError, ValueError):
    """A trigger message that cannot be used; the message says what is wrong."""


def parse_trigger(payload: bytes, camera_id: str) -> str:
    """The part id of one trigger message for `camera_id`."""
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TriggerMessageError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise TriggerMessageError(f"expected a JSON object, got {type(message).__name__}")
    camera = message.get("camera", camera_id)
    if camera != camera_id:
        raise TriggerMessageError(f"message is for camera {camera!r}, this socket serves {camera_id!r}")
    part_id = message.get("part_id")
    if isinstance(part_id, bool) or not isinstance(part_id, (str, int)):
        raise TriggerMessageError(f"part_id must be a string or an integer, got {part_id!r}")
    part_id = str(part_id)
    if not 0 < len(part_id) <= MAX_PART_ID_CHARS or not part_id.isprintable():
        raise TriggerMessageError(f"part_id must be 1-{MAX_PART_ID_CHARS} printable characters, got {part_id!r}")
    return part_id


class PartLedger:
    """Announced parts in arrival order, waiting for their frame. Thread-safe: the inbox
    thread announces, the capture thread claims and expires.

    With `fire` set (a software-triggered camera) the ledger also triggers the camera, one
    part at a time: the oldest waiting part is triggered, and the next one only once that
    part got its frame or expired. So a trigger the camera drops costs exactly that part
    (missed_trigger), instead of shifting every later part id by one frame."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self._pending: deque[list] = deque()  # [part_id, t_announced_ns, t_fired_ns or None]
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self.fire: Callable[[], bool] | None = None
        self.announced = 0
        self.claimed = 0
        self._overflowed: list[str] = []  # announced beyond max_pending: missed at once

    def announce(self, part_id: str, t_ns: int) -> None:
        with self._lock:
            self.announced += 1
            self._pending.append([part_id, t_ns, None])
            if len(self._pending) > self._max_pending:
                self._overflowed.append(self._pending.popleft()[0])
        self._fire_oldest()

    def claim(self, frame_t_ns: int) -> str | None:
        """The part a frame captured at `frame_t_ns` shows, now taken; None if none: the
        oldest part announced (or, with `fire`, triggered) before that frame."""
        with self._lock:
            if not self._pending:
                return None
            part_id, announced_ns, fired_ns = self._pending[0]
            since = announced_ns if self.fire is None else fired_ns
            if since is None or since > frame_t_ns:
                return None
            self._pending.popleft()
            self.claimed += 1
        self._fire_oldest()
        return part_id

    def overdue(self, announced_before_ns: int) -> list[str]:
        """Take every part announced before `announced_before_ns` (their frame never came)."""
        with self._lock:
            late, self._overflowed = self._overflowed, []
            while self._pending and self._pending[0][1] < announced_before_ns:
                late.append(self._pending.popleft()[0])
        if late:
            self._fire_oldest()
        return late

    def take_all(self) -> list[str]:
        return self.overdue(announced_before_ns=2**63)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _fire_oldest(self) -> None:
        with self._lock:
            if self.fire is None or not self._pending or self._pending[0][2] is not None:
                return
            self._pending[0][2] = time.monotonic_ns()  # marked before firing: its frame comes after
        self.fire()  # outside the lock: a camera register write takes a network round trip


class TriggerInbox:
    """The PULL socket of one camera and the thread that reads it into a `PartLedger`."""

    def __init__(self, socket: zmq.Socket, camera_id: str, ledger: PartLedger | None = None,
                 clock_ns: Callable[[], int] | None = None):
        self.socket = socket
        self.camera_id = camera_id
        self.ledger = ledger or PartLedger()
        self.rejected = 0
        self.last_rejection = ""
        self._clock_ns = clock_ns or time.monotonic_ns
        self._stops: tuple[threading.Event, ...] = ()
        self._thread = threading.Thread(target=self._run, name=f"triggers.{camera_id}", daemon=True)

    @classmethod
    def from_config(cls, camera: CameraConfig, context: zmq.Context) -> "TriggerInbox":
        """Bind the camera's trigger endpoint; raises zmq.ZMQError (e.g. address in use)."""
        socket = context.socket(zmq.PULL)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.bind(camera.trigger_endpoint)
        except zmq.ZMQError:
            socket.close()
            raise
        return cls(socket, camera.id)

    def start(self, *stops: threading.Event) -> None:
        """Read announcements until close() or any of `stops` is set."""
        self._stops = (threading.Event(), *stops)
        self._thread.start()

    def close(self, timeout_s: float = 1.0) -> None:
        if self._thread.ident is None:
            self.socket.close()
            return
        self._stops[0].set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            while not any(stop.is_set() for stop in self._stops):
                if self.socket.poll(POLL_MS):
                    self._receive(self.socket.recv_multipart(zmq.NOBLOCK))
        finally:
            self.socket.close()  # this thread is the socket's only user

    def _receive(self, frames: list[bytes]) -> None:
        t_ns = self._clock_ns()
        try:
            if len(frames) != 1:
                raise TriggerMessageError(f"expected one message frame, got {len(frames)}")
            part_id = parse_trigger(frames[0], self.camera_id)
        except TriggerMessageError as exc:
            self.rejected += 1
            self.last_rejection = str(exc)[:200]
            if self.rejected <= 3 or self.rejected % 100 == 0:
                log.warning("camera %s: trigger message rejected (%d so far): %s",
                            self.camera_id, self.rejected, self.last_rejection)
            return
        self.ledger.announce(part_id, t_ns)
