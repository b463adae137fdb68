"""The consumer: takes requests from the flavour queues and delivers them.

Run it as `python -m buffer.consumer`; it reads the same environment as the
router (`docs/buffer.md`). One thread runs one asyncio event loop, which does
all the work. A pika connection on it (`buffer.asyncio_amqp`) receives
deliveries, a task per request forwards it (`buffer.forward`), and
that task publishes the reply and acks the message when the flavour has
responded.
Nothing on the loop blocks, so heartbeats keep flowing while a flavour is
slower than the heartbeat window, and no thread hands results to another.
`stop()` is the only method meant for other threads and signal handlers.

Each message is acknowledged only after its reply is published, so a consumer
that dies mid-request leaves the message to be redelivered to another one.
The acks of one loop pass leave together after the replies, and replied-to
deliveries with consecutive tags share one multiple ack (`buffer.acks`).
Replies are keyed by correlation id: a redelivered copy of a request this
process is still forwarding or has recently replied to is acked without a
second HTTP call, and the router drops any second reply from another process.
Messages that cannot be decoded are rejected without requeue and land in the
dead-letter queue. Requests whose router deadline has passed are acked
without forwarding, because nobody waits for their reply any more.

When the broker goes away, the consumer reconnects with backoff. Forwards
that were running go on, and their replies are published on the new channel
when there is one. Their messages are not acked there, because delivery
tags belong to the channel that delivered them, and the broker redelivers
those messages itself.

In-flight work is capped at max(1, floor(prefetch * throttle)) through a
channel-wide QoS prefetch, updated whenever the engine's throttle changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import signal
import sys
import threading
from collections import OrderedDict

import pika
import pika.exceptions

from buffer import metrics
from buffer.acks import ChannelAcks
from buffer.broker_link import BrokerLink
from buffer.config import BufferConfig, ConfigError, FlavourSpec, log_level
from buffer.consumer_http import serve_consumer_http
from buffer.feedback import FeedbackReporter
from buffer.forward import Forwarder
from buffer.messages import MessageError, RelayedResponse, decode_request, response_headers_table
from buffer.schedule import ScheduleCache
from buffer.topology import BROKER_ERRORS, connection_parameters, declarations

log = logging.getLogger("buffer.consumer")  # not __name__, which is "__main__" under `python -m`

ANSWERED_MEMORY = 10_000  # correlation ids remembered to recognise redeliveries
THROTTLE_INTERVAL = 0.25  # seconds between checks of the engine's throttle
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 10.0  # seconds between reconnection attempts


class Consumer:
    """One connection consuming every flavour queue of a service."""

    def __init__(
        self,
        config: BufferConfig,
        *,
        forwarder: Forwarder | None = None,
        schedule: ScheduleCache | None = None,
        feedback: FeedbackReporter | None = None,
    ) -> None:
        self.config = config
        self.forwarder = forwarder or Forwarder(config)
        self.schedule = schedule or ScheduleCache(
            config, component="consumer", on_fallback=metrics.CONSUMER_FALLBACK.set
        )
        self.feedback = feedback or FeedbackReporter(config)
        self._inflight: dict[str, list] = {}  # correlation id -> [(ChannelAcks, delivery tag)]
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()  # one per request being forwarded
        self._link: BrokerLink | None = None
        self._acks: ChannelAcks | None = None  # the consuming channel's deliveries
        self._cap: int | None = None
        self._rng = random.Random(config.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()
        self._stopping: asyncio.Future | None = None  # resolved on the loop when stop() is called
        self.ready = threading.Event()  # set while consuming, cleared while reconnecting
        metrics.CONSUMER_BROKER_CONNECTED.set(0)

    def run(self) -> None:
        """Consume until `stop()`; reconnect with backoff whenever the broker goes away."""
        self.schedule.start()
        self.feedback.start()
        # The one read that may wait (up to FIRST_FETCH_WAIT) for the engine happens
        # here, before the loop starts. Code on the loop reads `schedule.latest`.
        self.schedule.current  # noqa: B018 - read for its side effects
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._consume())
        finally:
            self._loop = None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        self.schedule.stop()
        self.feedback.stop()
        log.info("event=consumer_stopped schedule=%s", self.config.schedule_key)

    def stop(self) -> None:
        """Ask `run()` to finish the requests in flight and return (any thread, signal handlers too)."""
        self._stop_requested.set()
        loop = self._loop
        if loop is None:
            return  # run() has not started its loop yet, and checks the flag when it does
        try:
            loop.call_soon_threadsafe(self._resolve_stopping)
        except RuntimeError:
            pass  # the loop has just closed, so run() is returning anyway

    def _resolve_stopping(self) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)

    async def _consume(self) -> None:
        self._stopping = asyncio.get_running_loop().create_future()
        if self._stop_requested.is_set():
            self._resolve_stopping()
        backoff = FIRST_BACKOFF
        link = None
        try:
            while not self._stopping.done():
                try:
                    link = await self._connect_unless_stopped()
                    if link is None:
                        break
                    backoff = FIRST_BACKOFF
                    await self._serve(link)
                except BROKER_ERRORS as error:
                    log.warning(
                        "event=broker_connection_lost schedule=%s error=%r retry_in=%.1f",
                        self.config.schedule_key,
                        error,
                        backoff,
                    )
                    self._drop_link()
                    link = None
                    await asyncio.wait((self._stopping,), timeout=backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
            await self._shutdown(link)
        finally:
            await self._cancel_forwards()
            await self.forwarder.close()

    async def _connect_unless_stopped(self) -> BrokerLink | None:
        """Connect, or return None when stop() comes first (a black-holed broker takes seconds to fail)."""
        connecting = asyncio.ensure_future(self._connect())
        await asyncio.wait((connecting, self._stopping), return_when=asyncio.FIRST_COMPLETED)
        if connecting.done():
            return connecting.result()
        connecting.cancel()
        try:
            await connecting
        except (asyncio.CancelledError, *BROKER_ERRORS):
            pass
        return None

    async def _connect(self) -> BrokerLink:
        parameters = connection_parameters(self.config)
        link = await BrokerLink.open(parameters, schedule_key=self.config.schedule_key)
        # Set before consuming starts: deliveries arrive as soon as the first consumer is registered.
        self._link = link
        self._acks = ChannelAcks(link.channel, asyncio.get_running_loop())
        try:
            # Declared on the consumer's own connection, so a reconnection needs no second
            # connection and never blocks the loop.
            for method, arguments in declarations(self.config):
                await link.call(getattr(link.channel, method), **arguments)
            self._cap = None
            await self._apply_throttle(link)
            for flavour in self.config.flavours:
                await link.call(
                    link.channel.basic_consume,
                    queue=self.config.queue_for(flavour),
                    on_message_callback=functools.partial(self._on_message, flavour=flavour),
                )
        except BaseException:
            self._drop_link()
            raise
        self.ready.set()
        metrics.CONSUMER_BROKER_CONNECTED.set(1)
        log.info(
            "event=consumer_started schedule=%s queues=%s heartbeat=%d",
            self.config.schedule_key,
            ",".join(self.config.queue_for(f) for f in self.config.flavours),
            self.config.heartbeat,
        )
        return link

    async def _serve(self, link: BrokerLink) -> None:
        """Apply throttle changes until stop() is called. Raise the loss reason when the link is lost."""
        while not self._stopping.done():
            await asyncio.wait(
                (link.lost, self._stopping), timeout=THROTTLE_INTERVAL, return_when=asyncio.FIRST_COMPLETED
            )
            if link.lost.done():
                raise link.loss_error()
            await self._apply_throttle(link)

    async def _apply_throttle(self, link: BrokerLink) -> None:
        cap = max(1, math.floor(self.config.prefetch * self.schedule.latest.throttle))
        if cap == self._cap:
            return
        # A channel-wide (global) prefetch covers every flavour consumer at once and,
        # unlike the per-consumer form, also applies to consumers that already exist.
        await link.call(link.channel.basic_qos, prefetch_count=cap, global_qos=True)
        self._cap = cap
        metrics.CONSUMER_INFLIGHT_CAP.set(cap)
        log.info(
            "event=inflight_cap schedule=%s cap=%d prefetch=%d",
            self.config.schedule_key,
            cap,
            self.config.prefetch,
        )

    def _on_message(self, channel, method, properties, body, *, flavour: FlavourSpec) -> None:
        acks = self._acks
        if acks is None or acks.channel is not channel:
            # A delivery that arrives while its channel is closing: the broker redelivers it.
            log.debug("event=delivery_ignored reason=channel_closing tag=%d", method.delivery_tag)
            return
        acks.delivered(method.delivery_tag)
        try:
            request = decode_request(properties, body)
            if not properties.reply_to or not properties.correlation_id:
                raise MessageError("reply_to and correlation_id are required")
        except MessageError as error:
            self._dead_letter(channel, method, acks, flavour=flavour, error=error)
            return

        correlation_id = properties.correlation_id
        if correlation_id in self._answered:
            self._settle(acks, method.delivery_tag, flavour=flavour, outcome="duplicate")
            return
        if correlation_id in self._inflight:
            self._inflight[correlation_id].append((acks, method.delivery_tag))
            return
        if request.expired():
            self._settle(acks, method.delivery_tag, flavour=flavour, outcome="expired")
            return

        target = self._target_flavour(request, flavour)
        self._inflight[correlation_id] = [(acks, method.delivery_tag)]
        metrics.CONSUMER_INFLIGHT.inc()
        log.debug(
            "event=forward schedule=%s flavour=%s correlation_id=%s",
            self.config.schedule_key,
            target.name,
            correlation_id,
        )
        task = self._loop.create_task(self._forward_and_reply(request, target, properties))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _target_flavour(self, request, queued: FlavourSpec) -> FlavourSpec:
        schedule = self.schedule.latest
        if request.forced or schedule.evaluator != "consumer" or schedule.source != "engine":
            return queued
        return self.config.flavour_named(schedule.draw(self._rng)) or queued

    async def _forward_and_reply(self, request, target: FlavourSpec, properties) -> None:
        correlation_id = properties.correlation_id
        try:
            response = await self.forwarder.forward(request, target)
        except asyncio.CancelledError:
            # Cancelled at shutdown: the message stays unacked, so the broker redelivers it.
            self._inflight.pop(correlation_id, None)
            metrics.CONSUMER_INFLIGHT.dec()
            raise
        except Exception as error:  # noqa: BLE001 - any failure must still produce a reply
            log.exception("event=forward_crashed flavour=%s error=%r", target.name, error)
            response = RelayedResponse(502, (), b"consumer failed to forward the request", target.name)
        deliveries = self._inflight.pop(correlation_id, [])
        metrics.CONSUMER_INFLIGHT.dec()
        self._reply(properties, response, target, deliveries, format_version=request.format_version)

    def _reply(
        self,
        properties,
        response: RelayedResponse,
        target: FlavourSpec,
        deliveries: list,
        *,
        format_version: int,
    ) -> None:
        correlation_id = properties.correlation_id
        link = self._link
        if link is None or not link.is_open:
            # The deliveries belong to a closed channel and will be redelivered.
            log.info("event=reply_dropped reason=channel_closed correlation_id=%s", correlation_id)
            return
        # The reply uses the request's format version, which the router that sent it reads.
        reply = pika.BasicProperties(
            correlation_id=correlation_id, headers=response_headers_table(response, version=format_version)
        )
        link.channel.basic_publish("", properties.reply_to, response.body, reply)
        for acks, tag in deliveries:
            # The ack leaves at the end of this loop pass, after the reply. A delivery
            # from a channel that has closed by then is left to the broker's redelivery.
            acks.ack(tag)
        self._remember(correlation_id)
        if response.status < 500:
            self.feedback.record(response.flavour or target.name)
        metrics.CONSUMER_MESSAGES.labels(flavour=target.name, outcome="answered").inc()

    def _settle(self, acks: ChannelAcks, tag: int, *, flavour: FlavourSpec, outcome: str) -> None:
        acks.ack(tag)
        metrics.CONSUMER_MESSAGES.labels(flavour=flavour.name, outcome=outcome).inc()
        log.info(
            "event=message_skipped schedule=%s flavour=%s reason=%s",
            self.config.schedule_key,
            flavour.name,
            outcome,
        )

    def _dead_letter(
        self, channel, method, acks: ChannelAcks, *, flavour: FlavourSpec, error: Exception
    ) -> None:
        channel.basic_nack(method.delivery_tag, requeue=False)
        acks.settled(method.delivery_tag)
        metrics.CONSUMER_MESSAGES.labels(flavour=flavour.name, outcome="dead_lettered").inc()
        log.error(
            "event=message_dead_lettered schedule=%s flavour=%s queue=%s error=%s",
            self.config.schedule_key,
            flavour.name,
            self.config.queue_for(flavour),
            error,
        )

    def _remember(self, correlation_id: str) -> None:
        self._answered[correlation_id] = None
        while len(self._answered) > ANSWERED_MEMORY:
            self._answered.popitem(last=False)

    def _drop_link(self) -> BrokerLink | None:
        """Mark the consumer disconnected, start closing its link and return that link."""
        self.ready.clear()
        metrics.CONSUMER_BROKER_CONNECTED.set(0)
        link, self._link = self._link, None
        acks, self._acks = self._acks, None
        if acks is not None:
            acks.flush()  # the acks of replies already published leave before the close
        if link is not None:
            link.abort()
        return link

    async def _shutdown(self, link: BrokerLink | None) -> None:
        # Stop taking work, then let in-flight requests finish and reply before closing.
        if link is not None and link.is_open:
            try:
                for tag in list(link.channel.consumer_tags):
                    await link.call(link.channel.basic_cancel, consumer_tag=tag)
                await self._wait_for_forwards(link, timeout=self.config.forward_timeout)
            except BROKER_ERRORS as error:
                log.warning(
                    "event=shutdown_incomplete schedule=%s error=%r", self.config.schedule_key, error
                )
        await self._cancel_forwards()
        link = self._drop_link()
        if link is not None:
            await link.close()

    async def _wait_for_forwards(self, link: BrokerLink, *, timeout: float) -> None:
        """Wait until no forward runs, the link is lost or `timeout` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and not link.lost.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning(
                    "event=shutdown_incomplete schedule=%s reason=forwards_running count=%d",
                    self.config.schedule_key,
                    len(self._tasks),
                )
                return
            await asyncio.wait(
                (*self._tasks, link.lost), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )

    async def _cancel_forwards(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    try:
        level = log_level("LOG_LEVEL", "INFO")
        pika_level = log_level("PIKA_LOG_LEVEL", "CRITICAL")
        config = BufferConfig.from_env()
    except ConfigError as error:
        print(f"buffer.consumer: invalid configuration: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Every connection failure is logged once by the consumer as an event line;
    # pika's tracebacks for the same failure are shown only on request.
    logging.getLogger("pika").setLevel(pika_level)
    consumer = Consumer(config)
    if config.consumer_metrics_port:
        host, port = config.consumer_metrics_bind, config.consumer_metrics_port
        try:
            serve_consumer_http(consumer, host=host, port=port)
        except OSError as error:
            print(
                f"buffer.consumer: cannot serve metrics and health on {host}:{port}: {error}. "
                "Set CONSUMER_METRICS_PORT to a free port.",
                file=sys.stderr,
            )
            return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop())
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
