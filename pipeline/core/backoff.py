"""Exponential backoff between reconnect attempts of a link (a camera, a Triton server).

Owns only the arithmetic of the waiting: the delay doubles after each failed attempt,
from `initial_s` up to `max_s`, with a little jitter so that many cameras that dropped
together (a switch reboot) do not hammer it in lockstep. The bounds come from the
section's `pipeline.config.reconnect.ReconnectSettings`. The caller sleeps (on its stop
event, so shutdown never waits for a backoff) and calls `reset()` after a success.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive failed attempts: initial_s, 2*initial_s, ... capped at max_s."""

    def __init__(self, initial_s: float, max_s: float, factor: float = 2.0, jitter: float = 0.1) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s and factor >= 1, "
                             f"got {initial_s}, {max_s}, {factor}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt, counting the attempt that just failed."""
        base = min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return base * (1.0 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.failures = 0
