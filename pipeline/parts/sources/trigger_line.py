"""The software trigger of one camera: the thread that is the only caller of its write.

Owns one thread per software-triggered camera. A trigger write is a register access on
the camera's control channel; when the camera is gone it blocks for the driver's own
timeout (Aravis: ~2.5 s of GVCP retries). It runs here, so neither the trigger inbox
nor the capture stage ever waits for it: the part's window closes on the capture thread
whatever the write does, and the watchdog keeps seeing progress.

One part at a time (pipeline.parts.sources.triggers.PartLedger.next_to_fire). A write that
fails, or returns only after its part's window closed, holds further triggers for
`hold_s`: a camera that comes back must not answer triggers queued while it was away
with images that later parts would take for theirs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from pipeline.parts.sources.triggers import PartLedger

log = logging.getLogger(__name__)

POLL_S = 0.05  # re-check even without a wake-up: a part may wait for a write that just returned


class TriggerLine:
    def __init__(self, ledger: PartLedger, fire: Callable[[], bool], camera_id: str, hold_s: float):
        self.ledger = ledger
        self.fire = fire
        self.camera_id = camera_id
        self.hold_s = hold_s
        self.fired = 0
        self.failed = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"trigger.{camera_id}", daemon=True)
        ledger.wake_firer = self._wake.set

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 0.2) -> None:
        """Stop; a write hung in the driver is not waited for (the thread is a daemon and
        ends when the write returns)."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            part = self.ledger.next_to_fire(time.monotonic_ns())
            if part is not None:
                self._fire_for(part.deadline_ns)

    def _fire_for(self, deadline_ns: int) -> None:
        try:
            ok = self.fire()
        except Exception as exc:  # noqa: BLE001 - a driver bug costs the part, not the thread
            log.warning("camera %s: software trigger raised %s: %s", self.camera_id, type(exc).__name__, exc)
            ok = False
        if ok and time.monotonic_ns() <= deadline_ns:
            self.fired += 1
            return
        self.failed += 1
        if self.failed <= 3 or self.failed % 100 == 0:
            log.warning("camera %s: software trigger %s (%d so far); holding triggers for %.2f s", self.camera_id,
                        "failed" if not ok else "returned after its part's window", self.failed, self.hold_s)
        self._stop.wait(self.hold_s)
