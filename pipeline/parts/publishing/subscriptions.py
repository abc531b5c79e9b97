"""Which subscriptions the verdict publisher lets a peer make, and what they may cost.

Owns the admission rule for the XPUB socket in manual mode (ZMQ_XPUB_MANUAL): libzmq no
longer stores every subscription a peer sends; each one comes to us and only the ones
we apply reach libzmq's subscription trie. Without this, 12 MB of unique subscriptions
from one peer grew the daemon by 633 MB and stalled publishing for more than a second.

The rule (docs/PROTOCOL.md "Limits of the PUB port"):
- a subscription is kept if it can match something we publish: a topic under
  `<prefix>.` (e.g. `inspect.cam1`, `inspect._heartbeat`), or a leading part of
  `<prefix>.` (the empty subscription "everything", `inspect`). Anything else is ignored
  and counted in `ignored`;
- at most `max_topics` distinct topics are kept at any time; more are ignored and
  counted in `over_limit`, so the trie's memory is bounded by `max_topics` x the maximum
  inbound message size, whatever peers send.
What crosses the boundary: raw XPUB subscription messages (b"\\x01topic" / b"\\x00topic")
in; socket options (SUBSCRIBE/UNSUBSCRIBE on the peer that sent the message) out.
"""

from __future__ import annotations

import logging
from collections import Counter

import zmq

log = logging.getLogger(__name__)

MAX_DRAIN_PER_CALL = 256  # notices handled per call, so a flood cannot stall a verdict send


class SubscriptionGate:
    """Applies acceptable subscriptions to a manual XPUB socket; counts the rest."""

    def __init__(self, topic_prefix: str, max_topics: int):
        self._under = f"{topic_prefix}.".encode("ascii")
        self.max_topics = max_topics
        self._kept: Counter[bytes] = Counter()  # topic -> subscribe notices applied, net
        self.ignored = 0  # not under `<prefix>.`
        self.over_limit = 0  # refused because `max_topics` distinct topics were kept

    @property
    def topics(self) -> int:
        return len(self._kept)

    def acceptable(self, topic: bytes) -> bool:
        return topic.startswith(self._under) or self._under.startswith(topic)

    def handle(self, socket: zmq.Socket, notice: bytes) -> None:
        """Apply one XPUB notice to `socket` (the peer it came from), or count it."""
        if not notice:
            return
        kind, topic = notice[0], notice[1:]
        if kind == 0:
            self._unsubscribe(socket, topic)
        elif kind == 1:
            self._subscribe(socket, topic)
        else:
            self.ignored += 1  # not a subscription notice: a peer sending data to a PUB

    def _subscribe(self, socket: zmq.Socket, topic: bytes) -> None:
        if not self.acceptable(topic):
            self.ignored += 1
            return
        if topic not in self._kept and len(self._kept) >= self.max_topics:
            self.over_limit += 1
            return
        self._kept[topic] += 1
        socket.setsockopt(zmq.SUBSCRIBE, topic)

    def _unsubscribe(self, socket: zmq.Socket, topic: bytes) -> None:
        if topic not in self._kept:
            return
        self._kept[topic] -= 1
        if self._kept[topic] <= 0:
            del self._kept[topic]
        socket.setsockopt(zmq.UNSUBSCRIBE, topic)

    def drain(self, socket: zmq.Socket) -> int:
        """Handle up to MAX_DRAIN_PER_CALL queued notices; how many there were."""
        for count in range(MAX_DRAIN_PER_CALL):
            try:
                notice = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return count
            self.handle(socket, notice)
        return MAX_DRAIN_PER_CALL
