"""A PLC gateway's side of a camera's trigger input, for tests: part ids PUSHed to the
camera's `trigger_endpoint` (docs/PROTOCOL.md, "Part ids"), by hand or on a timer."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import zmq


@dataclass
class Announced:
    part_id: str
    t_wall_ns: int  # when it was sent


class TriggerPush:
    """A PUSH socket connected to `endpoint`; `announce` sends one part id for one camera."""

    def __init__(self, endpoint: str):
        self.context = zmq.Context()
        self.push = self.context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(endpoint)

    def announce(self, camera: str, part_id: str) -> None:
        self.push.send_json({"camera": camera, "part_id": part_id})

    def close(self) -> None:
        self.push.close()
        self.context.term()

    def __enter__(self) -> "TriggerPush":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PartFeeder(TriggerPush):
    """A PLC announcing a part for `camera` every `interval_s` while entered, remembering
    each part and when it was sent (`sent`, in order)."""

    def __init__(self, endpoint: str, camera: str, interval_s: float = 0.1):
        super().__init__(endpoint)
        self.camera, self.interval_s = camera, interval_s
        self.sent: list[Announced] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            part = Announced(f"{self.camera}-{len(self.sent):05d}", time.time_ns())
            self.announce(self.camera, part.part_id)
            self.sent.append(part)

    def __enter__(self) -> "PartFeeder":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.close()
