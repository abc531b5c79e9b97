"""The latency of the first parts a freshly started pipeline inspects.

A daemon signals READY once the model and the frame path are warm and every camera has
delivered (`pipeline.composition.warmup`, `pipeline.service.daemon.health`); the parts right after it are
the ones a cold path would make late. `FirstParts` is a verdict sink from the start and
keeps the capture-to-publish latency (the wire's `latency_ms.total`) of the first
`count` verdicts; the bench prints them, apart from its recorded window (which starts after
its own warm-up and so never sees them).
"""

from __future__ import annotations

import numpy as np

from pipeline.core.messages import PublishedVerdict


class FirstParts:
    def __init__(self, count: int = 10):
        self.count = count
        self.latencies_ms: list[float] = []  # appended by the publish thread only

    def verdict_published(self, published: PublishedVerdict) -> None:
        if len(self.latencies_ms) < self.count:
            self.latencies_ms.append(published.latency_ms)

    def summary(self, budget_ms: float) -> str:
        if not self.latencies_ms:
            return "first parts after start: none published"
        ms = np.array(self.latencies_ms)
        late = int((ms > budget_ms).sum())
        return (f"first {len(ms)} parts after start: p50 {np.median(ms):.1f} ms, max {ms.max():.1f} ms, "
                f"{late} over budget_ms {budget_ms:g} ({', '.join(f'{v:.1f}' for v in ms)} ms)")
