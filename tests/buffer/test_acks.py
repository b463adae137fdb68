"""Batched acks: which frames `ChannelAcks` sends for replies published in and out of order."""

from __future__ import annotations

import asyncio

import pytest

from buffer.acks import ChannelAcks


class RecordingChannel:
    """A channel that records acks and tracks which tags the broker would still hold unsettled."""

    def __init__(self) -> None:
        self.is_open = True
        self.frames: list[tuple[int, bool]] = []
        self.unsettled: set[int] = set()

    def deliver(self, tag: int) -> None:
        self.unsettled.add(tag)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        # The broker's rule: the named tag must be unsettled, even for a multiple ack.
        assert delivery_tag in self.unsettled, f"PRECONDITION_FAILED unknown delivery tag {delivery_tag}"
        self.frames.append((delivery_tag, multiple))
        if multiple:
            self.unsettled = {tag for tag in self.unsettled if tag > delivery_tag}
        else:
            self.unsettled.discard(delivery_tag)


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_one_pass(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def deliver(acks: ChannelAcks, channel: RecordingChannel, *tags: int) -> None:
    for tag in tags:
        channel.deliver(tag)
        acks.delivered(tag)


def test_in_order_replies_share_one_ack(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1, 2, 3)
    for tag in (1, 2, 3):
        acks.ack(tag)
    assert channel.frames == []  # nothing leaves before the flush
    run_one_pass(loop)
    assert channel.frames == [(3, True)]
    assert channel.unsettled == set()


def test_open_message_is_never_acked(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1, 2, 3, 4)
    for tag in (1, 3, 4):
        acks.ack(tag)
    run_one_pass(loop)
    assert channel.frames == [(1, True), (3, False), (4, False)]
    assert channel.unsettled == {2}
    assert acks.unsettled == 1


def test_late_reply_after_single_acks(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1, 2, 3)
    acks.ack(2)
    acks.ack(3)
    run_one_pass(loop)
    acks.ack(1)
    run_one_pass(loop)
    # 2 and 3 were acked alone, so the run 1-3 is closed by an ack naming 1, the one still unsettled.
    assert channel.frames == [(2, False), (3, False), (1, True)]
    assert channel.unsettled == set()
    assert acks.unsettled == 0


def test_rejected_tag_extends_the_run(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1, 2, 3)
    channel.unsettled.discard(2)  # the caller rejected 2 itself
    acks.settled(2)
    acks.ack(1)
    acks.ack(3)
    run_one_pass(loop)
    assert channel.frames == [(3, True)]
    assert channel.unsettled == set()


def test_run_of_rejects_sends_nothing(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1, 2)
    channel.unsettled.clear()
    acks.settled(1)
    acks.settled(2)
    run_one_pass(loop)
    assert channel.frames == []
    assert acks.unsettled == 0


def test_second_ack_of_a_tag_is_ignored(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1)
    acks.ack(1)
    acks.ack(1)
    run_one_pass(loop)
    acks.ack(1)
    run_one_pass(loop)
    assert channel.frames == [(1, True)]


def test_closed_channel_sends_nothing(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1, 2)
    acks.ack(1)
    channel.is_open = False
    run_one_pass(loop)
    assert channel.frames == []
    assert acks.unsettled == 0


def test_explicit_flush_sends_at_once(loop):
    channel = RecordingChannel()
    acks = ChannelAcks(channel, loop)
    deliver(acks, channel, 1, 2)
    acks.ack(2)
    acks.flush()
    assert channel.frames == [(2, False)]
    run_one_pass(loop)  # the scheduled flush finds nothing left to send
    assert channel.frames == [(2, False)]
