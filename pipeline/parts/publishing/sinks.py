"""The fan-out of published verdicts to their sinks.

Owns the one list of `VerdictSink`s a pipeline's publish stage hands each
`PublishedVerdict` to, in the order they were added (telemetry first, so the counts a
later sink may read already include the verdict), and the rule for a sink that raises:
it is logged once and dropped, and the verdict, already sent, is unaffected. Sinks may
be added from another thread before or while the pipeline runs (the daemon's metrics,
the status line); the publish thread iterates over a snapshot.
"""

from __future__ import annotations

import logging

from pipeline.core.contracts import VerdictSink
from pipeline.core.messages import PublishedVerdict

log = logging.getLogger(__name__)


class VerdictSinks:
    """Itself a `VerdictSink`: every published verdict to every sink added."""

    def __init__(self, *sinks: VerdictSink):
        self._sinks: list[VerdictSink] = list(sinks)

    def add(self, sink: VerdictSink) -> None:
        self._sinks.append(sink)

    def __contains__(self, sink: object) -> bool:
        return sink in self._sinks

    def verdict_published(self, published: PublishedVerdict) -> None:
        for sink in tuple(self._sinks):
            try:
                sink.verdict_published(published)
            except Exception:  # noqa: BLE001 - an observer must never stop the publisher
                self._sinks.remove(sink)
                log.exception("verdict sink %r failed and was removed", sink)
