"""Frame pacing for sources that play at a configured rate (synthetic, replay).

Owns the schedule: frames are due every 1/fps seconds; a read never sleeps past its own
timeout, and a consumer that fell behind gets the next frame at once, then the rate
again (no burst to catch up, which would only flood the queues).
"""

from __future__ import annotations

import time


class Pacer:
    """Schedules frames at `fps`; never sleeps past a read's timeout, never bursts to catch up."""

    def __init__(self, fps: float, enabled: bool):
        self._period_s, self._enabled, self._due = 1.0 / fps, enabled, None

    def reset(self) -> None:
        self._due = None

    def wait(self, timeout_s: float) -> bool:
        """True when the next frame is due now (after sleeping); False after `timeout_s`."""
        if not self._enabled:
            return True
        now = time.monotonic()
        due = now if self._due is None else self._due
        if due - now > timeout_s:
            time.sleep(max(timeout_s, 0.0))
            return False
        if due > now:
            time.sleep(due - now)
        # A consumer that fell behind gets the next frame at once, then the rate again.
        self._due = max(due + self._period_s, time.monotonic())
        return True
