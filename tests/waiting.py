"""Waiting in tests: on a condition, with a deadline, never for a fixed time.

Owns `wait_until` and `first_value`, the one poll loop the tests share. A test that needs
something to have happened waits for it here, so a slow (loaded) machine only makes it
take longer, never fail; the deadline only bounds a test whose condition never comes.
Sleeps left elsewhere in tests/ pace a peer (a camera's frame rate, a PLC's scan cycle,
an attacker that stays connected), each with a comment saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def first_value(produce: Callable[[], T | None], timeout_s: float, poll_s: float = 0.01) -> T | None:
    """The first result of `produce()` that is not None, polled until `timeout_s`; None if none came."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = produce()
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(poll_s)  # the poll interval: the condition is checked again, not assumed


def wait_until(condition: Callable[[], object], timeout_s: float, poll_s: float = 0.01,
               each: Callable[[], object] | None = None) -> bool:
    """True as soon as `condition()` holds; False if it did not within `timeout_s`.
    `each`, when given, runs before every check (e.g. a heartbeat that makes a PUB socket
    process its peers' events)."""
    def check() -> bool | None:
        if each is not None:
            each()
        return True if condition() else None

    return first_value(check, timeout_s, poll_s) is not None
