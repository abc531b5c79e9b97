"""Part ids announced by the PLC gateway: the trigger input socket and the part ledger.

Owns, per camera, a ZeroMQ PULL socket (bound to `cameras[].trigger_endpoint`; the
gateway connects a PUSH socket) and the thread that is its only user, and the ledger of
announced parts that no frame has claimed yet. The message format is documented in
docs/PROTOCOL.md ("Part ids"): one frame, a JSON object
`{"camera": "cam0", "part_id": "A7-004211"}` (`camera` optional; must match).

The inbox thread stamps each announcement when it arrives (it does nothing else, so it
is never late to read: no camera call runs on it); for a camera in software-trigger
mode the trigger thread (pipeline.parts.sources.trigger_line) fires one part at a time. The
capture stage then lets each frame claim the part whose window (announcement or trigger
to announcement + `trigger_timeout_s`) holds the frame's exposure time, and settles the
parts whose window ended: those get a NOT_INSPECTED verdict by the end of the window,
so a part whose image never came is reported, never forgotten, and never judged by an
image taken outside its window. Malformed messages are
counted and logged (never per message), and never stop the inbox.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import zmq

from pipeline.config.cameras import CameraConfig
from pipeline.core.errors import PipelineError

log = logging.getLogger(__name__)

MAX_PART_ID_CHARS = 128
MAX_PENDING = 10_000  # far beyond any line; a runaway sender costs memory, not the daemon
DEFAULT_TIMEOUT_NS = 500_000_000  # cameras[].trigger_timeout_s's default
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


@dataclass(slots=True)
class Part:
    """One announced part and its window: frames exposed from `since` (its announcement,
    or, with software triggers, the start of its trigger write) to `deadline_ns` show it."""

    part_id: str
    announced_ns: int
    deadline_ns: int
    fired_ns: int | None = None
    saw_stale: bool = False  # a frame arrived in its window but was exposed before it


class PartLedger:
    """Announced parts in arrival order, waiting for their frame. Thread-safe: the inbox
    thread announces, the capture thread claims and expires, the trigger thread fires.

    A frame claims the oldest waiting part whose window holds the frame's exposure time;
    nothing else: a frame exposed before a part's window (a stale or late frame) never
    judges it, and a part whose window ended is only ever expired (`overdue`).

    With `wake_firer` set (a software-triggered camera, pipeline.parts.sources.trigger_line)
    the oldest part is handed to the trigger thread (`next_to_fire`), one part at a time:
    the next one only once that part got its frame or expired. So a trigger the camera
    drops costs exactly that part (missed_trigger), instead of shifting every later part
    id by one frame; and no thread here ever waits for the camera."""

    def __init__(self, max_pending: int = MAX_PENDING, timeout_ns: int = DEFAULT_TIMEOUT_NS):
        self._pending: deque[Part] = deque()
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self.timeout_ns = timeout_ns
        self.wake_firer: Callable[[], None] | None = None
        self.announced = 0
        self.claimed = 0
        self._expired: list[Part] = []  # window over (or beyond max_pending): settled by `overdue`

    @property
    def software_triggered(self) -> bool:
        return self.wake_firer is not None

    def announce(self, part_id: str, t_ns: int) -> None:
        with self._lock:
            self.announced += 1
            self._pending.append(Part(part_id, t_ns, t_ns + self.timeout_ns))
            if len(self._pending) > self._max_pending:
                self._expired.append(self._pending.popleft())
        self._wake()

    def claim(self, exposure_ns: int, arrival_ns: int | None = None, stale: bool = False) -> str | None:
        """The part a frame exposed at `exposure_ns` shows, now taken; None if none.
        `arrival_ns` (default: the exposure) and `stale` (the source says the frame came
        late for its own timestamp) only record why the part went without an image."""
        arrival_ns = exposure_ns if arrival_ns is None else arrival_ns
        with self._lock:
            while self._pending and self._pending[0].deadline_ns < exposure_ns:
                self._expired.append(self._pending.popleft())  # its window ended before this frame
            if not self._pending:
                return None
            part = self._pending[0]
            since = part.fired_ns if self.software_triggered else part.announced_ns
            if stale or since is None or exposure_ns < since:
                if since is not None and arrival_ns >= since:
                    part.saw_stale = True
                return None
            self._pending.popleft()
            self.claimed += 1
        self._wake()
        return part.part_id

    def overdue(self, now_ns: int) -> list[Part]:
        """Take every part whose window ended before `now_ns` (their frame never came)."""
        with self._lock:
            late, self._expired = self._expired, []
            while self._pending and self._pending[0].deadline_ns < now_ns:
                late.append(self._pending.popleft())
        if late:
            self._wake()
        return late

    def take_all(self) -> list[Part]:
        return self.overdue(now_ns=2**63)

    def next_to_fire(self, now_ns: int) -> Part | None:
        """For the trigger thread: the oldest part, stamped as fired now, if it waits for
        its trigger and its window is still open; None while one is in flight."""
        with self._lock:
            if not self._pending or self._pending[0].fired_ns is not None:
                return None
            part = self._pending[0]
            if part.deadline_ns < now_ns:
                return None  # expired: the capture thread settles it
            part.fired_ns = now_ns  # before the write: its exposure comes after
            return part

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _wake(self) -> None:
        if self.wake_firer is not None:
            self.wake_firer()


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
        return cls(socket, camera.id, PartLedger(timeout_ns=int(camera.trigger_timeout_s * 1e9)))

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
