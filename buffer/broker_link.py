"""One AMQP connection and channel on an asyncio event loop, with awaitable channel calls.

A pika connection reports every outcome through callbacks. `BrokerLink`
turns them into futures: `BrokerLink.open()` returns once the connection and
its channel are open, and `call()` sends a channel method that has a reply
(declare, bind, qos, consume, cancel) and returns the reply frame. The link
has one `lost` future, which is resolved with the reason when the connection
or the channel closes, for whatever cause. Any wait on the broker also ends
when the link is lost, and then raises that reason, so a caller never waits
for a reply that cannot come.

Everything here runs on the loop's thread, because pika connections are not
thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
from pika.channel import Channel

from buffer.asyncio_amqp import AsyncioAmqpConnection
from buffer.topology import BROKER_ERRORS

log = logging.getLogger(__name__)

CLOSE_WAIT = 5.0  # seconds to wait for the broker to confirm a close


class BrokerLink:
    """An open AsyncioAmqpConnection with one channel, and the future resolved when it is lost."""

    def __init__(self, connection: AsyncioAmqpConnection, lost: asyncio.Future, *, schedule_key: str) -> None:
        self.connection = connection
        self.schedule_key = schedule_key  # for log lines
        self.channel: Channel | None = None
        self.lost = lost

    @classmethod
    async def open(cls, parameters: pika.ConnectionParameters, *, schedule_key: str) -> BrokerLink:
        """Connect and open a channel, or raise one of `BROKER_ERRORS` when either fails."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future = loop.create_future()
        lost: asyncio.Future = loop.create_future()

        def on_open(connection) -> None:
            _resolve(opened, connection)

        def on_open_error(connection, error) -> None:
            if not opened.done():
                opened.set_exception(as_broker_error(error))

        def on_close(connection, reason) -> None:
            _resolve(lost, reason)

        connection = AsyncioAmqpConnection(
            parameters,
            on_open_callback=on_open,
            on_open_error_callback=on_open_error,
            on_close_callback=on_close,
            loop=loop,
        )
        link = cls(connection, lost, schedule_key=schedule_key)
        try:
            await opened
            channel_opened: asyncio.Future = loop.create_future()
            connection.channel(on_open_callback=lambda channel: _resolve(channel_opened, channel))
            link.channel = await link.until_lost(channel_opened)
            link.channel.add_on_close_callback(lambda channel, reason: _resolve(lost, reason))
        except BaseException:
            # Also on cancellation: a connection left opening would keep its socket and timers.
            link.abort()
            raise
        return link

    async def call(self, method: Callable[..., Any], **arguments: Any) -> Any:
        """Call a channel method that takes a reply callback, and return the reply frame."""
        reply: asyncio.Future = asyncio.get_running_loop().create_future()
        method(**arguments, callback=lambda frame: _resolve(reply, frame))
        return await self.until_lost(reply)

    async def until_lost(self, future: asyncio.Future) -> Any:
        """Return the result of `future`, or raise the reason the link was lost while waiting."""
        await asyncio.wait((future, self.lost), return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        raise self.loss_error()

    def loss_error(self) -> BaseException:
        """Return the reason the link was lost, as one of `BROKER_ERRORS`."""
        return as_broker_error(self.lost.result())

    @property
    def is_open(self) -> bool:
        return not self.lost.done() and self.channel is not None and self.channel.is_open

    def abort(self) -> None:
        """Start closing the connection without waiting. A connection still opening is abandoned."""
        if self.connection.is_closing or self.connection.is_closed:
            return
        try:
            self.connection.close()
        except BROKER_ERRORS as error:
            log.debug("event=broker_close_failed schedule=%s error=%r", self.schedule_key, error)

    async def close(self) -> None:
        """Close the connection and wait, at most `CLOSE_WAIT` seconds, until the broker confirms."""
        self.abort()
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), CLOSE_WAIT)
        except TimeoutError:
            log.warning(
                "event=broker_close_timeout schedule=%s wait=%.1f", self.schedule_key, CLOSE_WAIT
            )


def as_broker_error(reason: object) -> BaseException:
    """Turn a close reason from pika into an exception the reconnect loop catches."""
    if isinstance(reason, BROKER_ERRORS):
        return reason
    return pika.exceptions.AMQPConnectionError(repr(reason))


def _resolve(future: asyncio.Future, value: object) -> None:
    if not future.done():
        future.set_result(value)
