"""Where each pipeline thread spends its interpreter time: a sampling profiler around any
`pipeline` command (run on the GPU lab, where py-spy is not installed).

    python tools/sample_threads.py [--interval-ms 1] [--top 12] -- bench CFG --cameras 8 ...

A daemon thread reads every thread's current Python frame (`sys._current_frames`) every
interval and counts, per thread name, the innermost function (self time) and every
function on the stack (inclusive time). Only frames that hold the interpreter are seen:
a thread blocked in a call that released it (a queue wait, a CUDA sync, ZeroMQ) shows the
Python line that made the call, so "self" of a C call reads as time in that call. The
sampler takes the interpreter lock itself for a few microseconds a sample; at 1 ms that
is well under 1% of one core. The report goes to stderr when the command exits.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from types import FrameType

Counts = dict[str, collections.Counter[str]]
WAITS = ("threading.py", "queue.py")  # blocked on a condition: not interpreter work
FRAMING = ("pipeline/stages/stage.py", "<frozen")  # every stage thread's own loop frames


def where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    short = path[path.rfind("pipeline/"):] if "pipeline/" in path else path.rsplit("/", 1)[-1]
    return f"{short}:{code.co_firstlineno} {code.co_name}"


class Sampler(threading.Thread):
    """Counts innermost and inclusive functions per thread name until stopped."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.interval_s = interval_s
        self.self_counts: Counts = collections.defaultdict(collections.Counter)
        self.incl_counts: Counts = collections.defaultdict(collections.Counter)
        self.samples: collections.Counter[str] = collections.Counter()
        self.stop_event = threading.Event()

    def run(self) -> None:
        me = threading.get_ident()
        while not self.stop_event.wait(self.interval_s):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    self.record(names.get(ident, str(ident)), frame)

    def record(self, thread: str, frame: FrameType) -> None:
        self.samples[thread] += 1
        self.self_counts[thread][where(frame)] += 1
        seen = set()
        current: FrameType | None = frame
        while current is not None:
            key = where(current)
            if key not in seen:
                seen.add(key)
                self.incl_counts[thread][key] += 1
            current = current.f_back

    def report(self, top: int) -> str:
        lines = []
        for thread, total in self.samples.most_common():
            waiting = sum(n for key, n in self.self_counts[thread].items() if key.startswith(WAITS))
            lines.append(f"== thread {thread}: {total} samples, {100 * waiting / total:.1f}% in a wait")
            for label, counts in (("self", self.self_counts[thread]), ("incl", self.incl_counts[thread])):
                busy = [(key, n) for key, n in counts.most_common() if not key.startswith(WAITS + FRAMING)]
                for key, n in busy[:top]:
                    lines.append(f"  {label} {100 * n / total:5.1f}%  {key}")
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval-ms", type=float, default=1.0)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the pipeline command line")
    args = parser.parse_args()
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    from pipeline.service.cli import main as pipeline_main

    sampler = Sampler(args.interval_ms / 1000)
    sampler.start()
    t0 = time.monotonic()
    try:
        rc = pipeline_main(argv)
    finally:
        sampler.stop_event.set()
        sampler.join()
        print(f"sampled {time.monotonic() - t0:.1f} s every {args.interval_ms} ms", file=sys.stderr)
        print(sampler.report(args.top), file=sys.stderr)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
