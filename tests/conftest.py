"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import zmq

from tests.ports import free_port


@pytest.fixture
def free_tcp_endpoint() -> str:
    """A tcp://127.0.0.1 endpoint on a port that was free a moment ago (loopback only)."""
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def context():
    """A ZeroMQ context whose sockets are all closed with linger 0 at the end."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
