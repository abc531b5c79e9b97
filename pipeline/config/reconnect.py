"""How a part that loses its peer (a camera, a Triton server) reconnects: waits doubling
from the first to the longest (`pipeline.core.backoff`).

Owns the two settings, their bounds and the check of their order, defined once for every
config section that reconnects; a section may only choose other defaults.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from pipeline.config.strict import Strict

# The bounds of each wait; a section that needs other defaults annotates its field with these.
FirstWait = Annotated[float, Field(gt=0, le=60)]
LongestWait = Annotated[float, Field(gt=0, le=600)]


class ReconnectSettings(Strict):
    """`reconnect_initial_s`: the first wait after a loss; `reconnect_max_s`: the longest."""

    reconnect_initial_s: FirstWait = 0.2
    reconnect_max_s: LongestWait = 5.0

    @model_validator(mode="after")
    def _backoff_order(self) -> "ReconnectSettings":
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self
