"""Acknowledging the deliveries of one channel in batches.

An ack with `multiple=True` acknowledges every unsettled delivery up to its
tag, so one frame can settle many messages, and the broker handles one ack
instead of one per message. That is only correct when every message up to
the tag has its reply published. The consumer forwards requests concurrently
and they finish out of order, and a message still being forwarded must stay
unacked, so that the broker redelivers it if this consumer dies.

`ChannelAcks` records every delivery tag in order. `ack()` marks a message
whose reply is published, and `settled()` marks one the caller has already
settled itself (a reject). A flush runs once per event loop pass, after the
callbacks that requested acks. It acks the longest run of finished tags from
the oldest with a single multiple ack, and every other replied-to tag on its
own, so no message waits for a slower one.

The broker rejects a multiple ack whose own tag is no longer unsettled
(PRECONDITION_FAILED, unknown delivery tag). So the multiple ack names the
highest tag of the run that `ack()` marked, never one settled before.
"""

from __future__ import annotations

import asyncio
import collections

_OPEN = 0  # delivered, no reply published yet
_REPLIED = 1  # reply published, ack not sent yet
_SETTLED = 2  # acked or rejected already


class ChannelAcks:
    """The unsettled deliveries of one channel and the acks waiting for the next flush."""

    def __init__(self, channel, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self._loop = loop
        self._order: collections.deque[int] = collections.deque()  # tags in delivery order
        self._state: dict[int, int] = {}
        self._replied: list[int] = []  # tags replied to since the last flush
        self._flush_scheduled = False

    def delivered(self, tag: int) -> None:
        """Record a delivery; call it for every message the channel delivers, in order."""
        self._order.append(tag)
        self._state[tag] = _OPEN

    def ack(self, tag: int) -> None:
        """Ack `tag` at the next flush."""
        if self._state.get(tag) != _OPEN:
            return
        self._state[tag] = _REPLIED
        self._replied.append(tag)
        self._schedule_flush()

    def settled(self, tag: int) -> None:
        """Record that the caller settled `tag` itself, for example with a reject."""
        if tag in self._state:
            self._state[tag] = _SETTLED
            self._schedule_flush()

    @property
    def unsettled(self) -> int:
        """Return the number of deliveries not yet acked or rejected."""
        return sum(1 for state in self._state.values() if state != _SETTLED)

    def flush(self) -> None:
        """Send the acks requested since the last flush."""
        self._flush_scheduled = False
        if not self.channel.is_open:
            # The broker redelivers the messages of a closed channel, and its tags mean nothing on another.
            self._order.clear()
            self._state.clear()
            self._replied.clear()
            return

        highest_replied = None
        while self._order and self._state[self._order[0]] != _OPEN:
            tag = self._order.popleft()
            if self._state.pop(tag) == _REPLIED:
                highest_replied = tag
        if highest_replied is not None:
            self.channel.basic_ack(highest_replied, multiple=True)

        for tag in self._replied:
            if self._state.get(tag) == _REPLIED:  # replied to, but an older message is still open
                self.channel.basic_ack(tag)
                self._state[tag] = _SETTLED
        self._replied.clear()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
