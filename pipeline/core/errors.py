"""The one exception hierarchy of the package, and the verdict reason each class carries.

Bottom layer (above `messages`, whose `ReasonCode` it uses). Every exception the package
raises on purpose derives from `PipelineError`; a stage that catches one while handling a
frame settles it as ERROR with the class's `reason`, so the reason follows from the type
and nothing probes an exception for attributes. Anything else a stage catches is
`stage_error`. (`ConfigError` sits below this layer, in `pipeline.config`, and is raised
only before any frame exists.)
"""

from __future__ import annotations

from pipeline.core.messages import ReasonCode


class PipelineError(Exception):
    """Base of every error the package raises on purpose; `reason` is the verdict's."""

    reason: ReasonCode = ReasonCode.STAGE_ERROR


class FrameError(PipelineError, ValueError):
    """The image of this frame cannot be used (empty, wrong type, corrupt)."""

    reason = ReasonCode.BAD_FRAME


class ModelOutputError(PipelineError, ValueError):
    """The model's output for this batch is malformed (NaN/inf, wrong shape)."""

    reason = ReasonCode.BAD_OUTPUT


class BackendUnavailable(PipelineError):
    """A remote backend could not answer this batch: server down or refusing."""

    reason = ReasonCode.BACKEND_UNAVAILABLE


class BackendDeadline(BackendUnavailable):
    """A remote backend was too slow for the oldest part's remaining budget."""

    reason = ReasonCode.DEADLINE


def reason_of(exc: BaseException, default: ReasonCode = ReasonCode.STAGE_ERROR) -> ReasonCode:
    """The verdict reason for `exc`: its class's, or `default` for a foreign exception."""
    return exc.reason if isinstance(exc, PipelineError) else default
