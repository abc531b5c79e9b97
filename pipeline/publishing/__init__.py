"""Getting verdicts off the machine: the ZeroMQ publisher (wire format: pipeline.protocol)."""

from pipeline.publishing.zmq_publisher import PublisherError, ZmqPublisher

__all__ = ["PublisherError", "ZmqPublisher"]
