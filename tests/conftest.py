"""Fixtures shared by the whole suite."""

from __future__ import annotations

import socket

import pytest
import zmq


@pytest.fixture
def free_tcp_endpoint() -> str:
    """A tcp://127.0.0.1 endpoint on a port that was free a moment ago (loopback only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


@pytest.fixture
def context():
    """A ZeroMQ context whose sockets are all closed with linger 0 at the end."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
