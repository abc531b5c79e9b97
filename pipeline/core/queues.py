"""Bounded queues between stages, each with a declared overflow policy and drop counters.

Bottom layer. A queue never loses a job: when its policy sheds one, the job is settled
as NOT_INSPECTED (reason `queue_full`) and handed to `on_shed`, which the composition
root wires to the publish stage's lossless queue. `EndOfStream` markers are always
accepted, past capacity, so shutdown can never deadlock on a full queue.

Every blocking call takes a timeout; callers re-check their stop event between calls.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Sequence

from pipeline.config.models import Overflow
from pipeline.core.messages import EndOfStream, Job, Outcome, ReasonCode

Item = Job | EndOfStream
ShedHandler = Callable[[Job], None]


class StageQueue:
    """A thread-safe FIFO of jobs with capacity `capacity` and an overflow policy."""

    def __init__(
        self,
        name: str,
        capacity: int,
        overflow: Overflow = Overflow.DROP_OLDEST,
        block_timeout_s: float = 0.005,
        on_shed: ShedHandler | None = None,
        lossless: bool = False,
    ):
        self.name = name
        self.capacity = capacity
        self.overflow = overflow
        self.block_timeout_s = block_timeout_s
        self.lossless = lossless  # capacity is only reported, never enforced
        self._on_shed = on_shed
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        # Two conditions on one lock: a producer's notify must reach the consumer, never
        # another blocked producer (with one condition and notify(), a full queue under
        # `block` left the consumer asleep until its poll timeout).
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self.drops = 0
        self.high_water = 0

    # ----------------------------------------------------------------- producer side
    def put(self, item: Item) -> None:
        """Enqueue; never raises and never blocks longer than `block_timeout_s`."""
        self.put_many((item,))

    def put_many(self, items: Sequence[Item]) -> None:
        """Enqueue a batch in order under one lock and one wake-up of the consumer: a stage
        handing on a batch costs one queue hop, not one per job. Each job meets the
        overflow policy exactly as with `put`."""
        shed: list[Job] = []
        with self._lock:
            for item in items:
                if isinstance(item, Job) and not self.lossless and len(self._items) >= self.capacity:
                    out = self._make_room(item)
                    if out is not None:
                        shed.append(out)
                    if out is item:
                        self._count_drop()
                        continue
                self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._not_empty.notify()
        for job in shed:
            self._shed(job)

    def _make_room(self, incoming: Job) -> Job:
        """Called with the lock held on a full queue; returns the job to shed."""
        if self.overflow is Overflow.BLOCK:
            deadline = time.monotonic() + self.block_timeout_s
            while len(self._items) >= self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    return incoming
                self._not_full.wait(left)
            return None  # type: ignore[return-value]  # room appeared
        if self.overflow is Overflow.DROP_OLDEST:
            for i, queued in enumerate(self._items):
                if isinstance(queued, Job):
                    del self._items[i]
                    self._count_drop()
                    return queued
        return incoming

    def _count_drop(self) -> None:
        self.drops += 1

    def _shed(self, job: Job) -> None:
        settled = job if job.settled else job.settle(Outcome.NOT_INSPECTED, ReasonCode.QUEUE_FULL, self.name, f"shed:{self.name}")
        if self._on_shed is None:
            raise RuntimeError(f"queue {self.name} shed a job but has no shed handler")
        self._on_shed(settled)

    # ----------------------------------------------------------------- consumer side
    def get(self, timeout_s: float) -> Item | None:
        with self._lock:
            if not self._items and not self._not_empty.wait_for(lambda: self._items, timeout_s):
                return None
            item = self._items.popleft()
            self._not_full.notify()  # wake a blocked producer
            return item

    def get_batch(self, max_items: int, max_wait_s: float, timeout_s: float,
                  wait_until: Callable[[list[Item]], float] | None = None) -> list[Item]:
        """Up to `max_items`: wait `timeout_s` for the first, then at most `max_wait_s`
        more for the rest, and never past `wait_until(batch)` (a `time.monotonic()`
        instant, asked again as the batch grows, e.g. the last moment the oldest job in
        hand can still make its deadline). What is queued already is always taken, under
        one lock and with one wake-up for the producers it makes room for. An
        EndOfStream ends the batch (it is returned last)."""
        with self._lock:
            if not self._items and not self._not_empty.wait_for(lambda: self._items, timeout_s):
                return []
            batch = self._take_queued(max_items)
        if max_wait_s <= 0:
            return batch  # no waiting for more: the batch is what was queued
        cap = time.monotonic() + max_wait_s
        while len(batch) < max_items and not isinstance(batch[-1], EndOfStream):
            deadline = min(cap, wait_until(batch)) if wait_until is not None else cap
            with self._lock:
                left = deadline - time.monotonic()
                if not self._items and (left <= 0 or not self._not_empty.wait_for(lambda: self._items, left)):
                    break
                batch += self._take_queued(max_items - len(batch))
        return batch

    def _take_queued(self, limit: int) -> list[Item]:
        """Up to `limit` queued items, up to and including an EndOfStream; the lock is held."""
        items, taken = self._items, []
        while items and len(taken) < limit:
            taken.append(items.popleft())
            if isinstance(taken[-1], EndOfStream):
                break
        self._not_full.notify(len(taken))  # wake the producers blocked on the room made
        return taken

    def drain(self) -> list[Item]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._not_full.notify_all()
            self._not_empty.notify_all()
            return items

    @property
    def depth(self) -> int:
        return len(self._items)

    def snapshot(self) -> dict[str, int | str]:
        return {"depth": self.depth, "capacity": self.capacity, "drops": self.drops,
                "high_water": self.high_water, "overflow": "lossless" if self.lossless else self.overflow.value}
