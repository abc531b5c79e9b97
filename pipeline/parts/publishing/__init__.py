"""Getting verdicts off the machine: the ZeroMQ publisher (wire format: pipeline.core.protocol)."""

from pipeline.parts.publishing.zmq_publisher import PublisherError, ZmqPublisher

__all__ = ["PublisherError", "ZmqPublisher"]
