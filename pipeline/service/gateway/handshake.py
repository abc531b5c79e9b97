"""Result-ready / acknowledge: did the PLC take the newest result in time?

Owns the acknowledge judgement for one camera on one output. The gateway moves the
result counter with every new result; the PLC, once it has used a result, writes that
result's seq back. IN_TIME: the acknowledge reads the newest seq, and no result waited
longer than `ack_timeout_ms` for it. LATE: the oldest result not yet acknowledged was
written more than `ack_timeout_ms` ago (a PLC that stopped acknowledging turns LATE even
while new results keep coming); counted once per such episode. Thread-safe: sinks call
it from their own threads.
"""

from __future__ import annotations

import threading
from enum import IntEnum


class AckState(IntEnum):
    NONE = 0      # no result written yet
    WAITING = 1   # newest result written, not acknowledged yet, still in time
    IN_TIME = 2   # the PLC wrote back the newest seq within ack_timeout_ms
    LATE = 3      # ack_timeout_ms passed without the newest seq coming back


class AckTracker:
    def __init__(self, timeout_ms: int):
        self.timeout_ns = timeout_ms * 1_000_000
        self.state = AckState.NONE
        self.acks = 0   # acknowledgements received (the acked seq moved)
        self.late = 0   # results not acknowledged in time
        self._seq: int | None = None
        self._pending_since: int | None = None  # write time of the oldest unacknowledged result
        self._last_ack: int | None = None
        self._lock = threading.Lock()

    def written(self, seq: int, now_ns: int) -> None:
        with self._lock:
            if seq == self._seq:
                return  # a state-only rewrite (ready flag) is not a new result
            self._seq = seq
            if self._last_ack == seq:
                self.state = AckState.IN_TIME
                return
            if self._pending_since is None:
                self._pending_since = now_ns
            if self.state is not AckState.LATE:
                self.state = AckState.WAITING

    def acknowledged(self, seq: int, now_ns: int) -> AckState:
        """The PLC's acknowledge register/node now reads `seq`."""
        with self._lock:
            if seq != self._last_ack:
                self._last_ack = seq
                self.acks += 1
            self._judge(now_ns)
            return self.state

    def poll(self, now_ns: int) -> AckState:
        with self._lock:
            self._judge(now_ns)
            return self.state

    def _judge(self, now_ns: int) -> None:
        if self._seq is None:
            return
        if self._last_ack == self._seq:
            self.state, self._pending_since = AckState.IN_TIME, None
        elif self.state is AckState.WAITING and self._pending_since is not None \
                and now_ns - self._pending_since > self.timeout_ns:
            self.state = AckState.LATE
            self.late += 1
