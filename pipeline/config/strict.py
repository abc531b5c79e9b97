"""The base of every config model: frozen, unknown keys rejected, no NaN/inf.

Owns the one rule every section of every YAML file (pipeline and gateway) obeys.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every config model: immutable, unknown keys rejected, and no NaN/inf
    (YAML's `.nan`/`.inf` would slip past `gt=0` bounds: a timeout of inf never fires)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
