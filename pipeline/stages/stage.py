"""The loop every processing stage shares: take jobs, handle them, pass them on.

Owns the rules that make "every captured frame yields exactly one verdict" hold inside a
stage:
- a job that is already settled (shed, expired, failed upstream) is passed on untouched;
- an exception while handling jobs settles exactly those jobs as ERROR (`stage_error`)
  and the loop goes on;
- `EndOfStream` is forwarded once all upstream producers have sent theirs, after which
  the thread ends (cooperative, bounded shutdown: every wait has a timeout).
An exception outside job handling is a crash: it is recorded in telemetry (health
ERROR) and the composition root routes the stage's remaining jobs around it.

A stage takes what its inbox holds (up to `max_batch`) in one wake-up and hands the
results on in one `put_many`, so a batch costs one queue hop. The moment it took them is
`self.taken_ns`; handlers stamp it into each job with `self.mark(job, ...)`, so the
verdict tells the wait in the queue apart from the stage's work.

The jobs a stage has taken from its inbox but not yet passed on are "in hand". When a
stage hangs (or crashes) the composition root takes them back with `abandon()` and
settles them itself; from then on the stage passes nothing on, so a stage that wakes up
late can never publish a second verdict for the same frame.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

from pipeline.core.errors import reason_of
from pipeline.core.messages import EndOfStream, Job, Outcome
from pipeline.core.queues import StageQueue
from pipeline.core.states import StageState
from pipeline.core.telemetry import Telemetry

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often an idle stage wakes to run `idle()`


class Stage:
    """Subclasses implement `handle(jobs)`; the base owns the thread and the protocol."""

    name = "stage"
    max_batch = 1
    max_wait_s = 0.0

    def __init__(self, inbox: StageQueue, outbox: StageQueue | None, telemetry: Telemetry, upstreams: int = 1):
        self.inbox = inbox
        self.outbox = outbox
        self.telemetry = telemetry
        self.upstreams = upstreams
        self.stats = telemetry.stage(self.name)
        self.thread = threading.Thread(target=self.run, name=f"stage-{self.name}", daemon=True)
        self._ends_seen = 0
        self._hand_lock = threading.Lock()
        self._in_hand: dict[int, Job] = {}  # id(job) -> job taken from the inbox, not yet passed on
        self._abandoned = False
        self.taken_ns = 0  # when the items now in hand were taken from the inbox
        self.ready = threading.Event()  # set once `prepare` has run (or failed): frames may flow

    # ------------------------------------------------------------------ subclass API
    def mark(self, job: Job, t_ns: int | None = None, **changes: Any) -> Job:
        """`job` as this stage hands it on (at `t_ns`, default now), with its take time."""
        return job.mark(self.name, self.taken_ns, t_ns, **changes)

    def collect(self) -> list:
        """The next items from the inbox (a subclass may batch by its own rule)."""
        return self.inbox.get_batch(self.max_batch, self.max_wait_s, POLL_S)

    def handle(self, jobs: list[Job]) -> Sequence[Job]:
        """Turn unsettled jobs into their next form; same length and order."""
        raise NotImplementedError

    def idle(self) -> None:
        """Called when no job arrived within POLL_S (e.g. to send a heartbeat)."""

    def prepare(self) -> None:
        """Called once on the stage's own thread before its first job (e.g. a backend's
        per-thread warm-up); the pipeline lets frames flow only after every stage's."""

    def finish(self) -> None:
        """Called once after the last EndOfStream, before it is forwarded."""

    def emit(self, jobs: list[Job]) -> None:
        assert self.outbox is not None
        self.outbox.put_many(jobs)

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        self.stats.move_to(StageState.RUNNING)
        try:
            try:
                self.prepare()
            finally:
                self.ready.set()
            while self._ends_seen < self.upstreams:
                items = self.collect()
                if not items:
                    self.idle()
                    self.stats.progressed()  # idle is progress: the watchdog looks for stuck calls
                    continue
                self._process(items)
                if self._abandoned:  # woke up after shutdown routed around it: its work is done
                    self.stats.move_to(StageState.ABANDONED)
                    return
            self.finish()
            if self.outbox is not None:
                self.outbox.put(EndOfStream(self.name))
            self.stats.move_to(StageState.STOPPED)
        except BaseException as exc:  # a crash, not a per-frame failure
            log.exception("stage %s crashed", self.name)
            self.telemetry.record_crash(self.name, exc)

    def abandon(self) -> list[Job]:
        """Take back the jobs in hand; after this the stage passes nothing more on."""
        with self._hand_lock:
            held, self._in_hand = list(self._in_hand.values()), {}
            self._abandoned = True
        return held

    def _take(self, items: list) -> None:
        with self._hand_lock:
            if not self._abandoned:
                self._in_hand = {id(item): item for item in items if isinstance(item, Job)}

    def _pass_on(self, pairs: list[tuple[Job, Job]]) -> None:
        """Hand on the results of the jobs still in hand, in one batch."""
        if not pairs:
            return
        with self._hand_lock:
            # jobs no longer in hand were abandoned: the composition root settled them already
            results = [result for taken, result in pairs if self._in_hand.pop(id(taken), None) is not None]
            if results:
                self.emit(results)

    def _process(self, items: list) -> None:
        self.taken_ns = time.monotonic_ns()
        self._take(items)
        jobs: list[Job] = []
        done: list[tuple[Job, Job]] = []
        for item in items:
            if isinstance(item, EndOfStream):
                self._ends_seen += 1
            elif item.settled:
                done += self._flush(jobs)
                jobs = []
                done.append((item, item))
            else:
                jobs.append(item)
        done += self._flush(jobs)
        self._pass_on(done)
        self.stats.progressed()

    def _flush(self, jobs: list[Job]) -> list[tuple[Job, Job]]:
        if not jobs:
            return []
        self.stats.busy = True
        try:
            done = self.handle(jobs)
        except Exception as exc:  # noqa: BLE001 - any failure becomes ERROR verdicts
            done = self._fail(jobs, exc)
        finally:
            self.stats.busy = False
        self.stats.processed += len(jobs)
        return list(zip(jobs, done))

    def _fail(self, jobs: list[Job], exc: Exception) -> list[Job]:
        # The reason follows from the type (pipeline.core.errors: BadFrame -> bad_frame,
        # BackendUnavailable -> backend_unavailable, ...); a foreign exception is stage_error.
        code = reason_of(exc)
        detail = f"{self.name}: {type(exc).__name__}: {exc}"[:300]
        self.stats.errors += len(jobs)
        if self.stats.errors <= 3 or self.stats.errors % 100 == 0:  # never a log line per frame
            first = jobs[0].frame
            log.warning("%s failed on %d frame(s) (camera=%s frame_id=%d, %d errors so far): %s",
                        self.name, len(jobs), first.camera_id, first.frame_id, self.stats.errors, detail,
                        extra={"camera_id": first.camera_id, "frame_id": first.frame_id})
        return [job.settle(Outcome.ERROR, code, detail, self.name) for job in jobs]
