"""The consumer: takes requests from the flavour queues and delivers them.

Run it as `python -m buffer.consumer`; it reads the same environment as the
router (`docs/buffer.md`). One thread owns the pika BlockingConnection and
does all AMQP work: it receives deliveries, hands each request to a thread
pool that makes the HTTP call, and publishes replies and acks when the pool
passes results back. The HTTP call never runs on the connection's thread, so
a flavour slower than the heartbeat window cannot starve heartbeats. Worker
threads only put results on a queue and wake the connection thread with
`add_callback_threadsafe`, the one thread-safe call pika offers.

Each message is acknowledged only after its reply is published, so a consumer
that dies mid-request leaves the message to be redelivered to another one.
Replies are keyed by correlation id: a redelivered copy of a request this
process is still forwarding or has recently replied to is acked without a
second HTTP call, and the router drops any second reply from another process.
Messages that cannot be decoded are rejected without requeue and land in the
dead-letter queue. Requests whose router deadline has passed are acked
without forwarding, because nobody waits for their reply any more.

In-flight work is capped at max(1, floor(prefetch * throttle)) through a
channel-wide QoS prefetch, updated whenever the engine's throttle changes.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import random
import signal
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import pika
import pika.exceptions

from buffer import metrics
from buffer.config import BufferConfig, ConfigError, FlavourSpec
from buffer.consumer_http import serve_consumer_http
from buffer.feedback import FeedbackReporter
from buffer.forward import Forwarder
from buffer.messages import MessageError, RelayedResponse, decode_request, response_headers_table
from buffer.schedule import ScheduleCache
from buffer.topology import BROKER_ERRORS, close_quietly, declare_topology

log = logging.getLogger(__name__)

ANSWERED_MEMORY = 10_000  # correlation ids remembered to recognise redeliveries
PUMP_INTERVAL = 0.25  # seconds between checks of results, throttle and stop flag


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
        self._executor = ThreadPoolExecutor(max_workers=config.prefetch, thread_name_prefix="forward")
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._inflight: dict[str, list] = {}  # correlation id -> [(channel, delivery tag)]
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._stop = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self._cap: int | None = None
        self._rng = random.Random(config.seed)
        self.ready = threading.Event()  # set while consuming, cleared while reconnecting
        metrics.CONSUMER_BROKER_CONNECTED.set(0)

    def run(self) -> None:
        """Consume until `stop()`; reconnect with backoff whenever the broker goes away."""
        self.schedule.start()
        self.feedback.start()
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._connect()
                backoff = 0.5
                self._serve()
            except BROKER_ERRORS as error:
                log.warning(
                    "event=broker_connection_lost schedule=%s error=%r retry_in=%.1f",
                    self.config.schedule_key,
                    error,
                    backoff,
                )
                self._drop_connection()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _connect(self) -> None:
        parameters = pika.URLParameters(self.config.rabbitmq_url)
        parameters.heartbeat = self.config.heartbeat
        parameters.connection_attempts = 1
        parameters.socket_timeout = 5.0
        parameters.stack_timeout = 10.0
        self._connection = pika.BlockingConnection(parameters)
        self._channel = self._connection.channel()
        declare_topology(self._channel, self.config)
        self._cap = None
        self._apply_throttle()
        for flavour in self.config.flavours:
            callback = functools.partial(self._on_message, flavour=flavour)
            self._channel.basic_consume(self.config.queue_for(flavour), callback)
        self.ready.set()
        metrics.CONSUMER_BROKER_CONNECTED.set(1)
        log.info(
            "event=consumer_started schedule=%s queues=%s heartbeat=%d",
            self.config.schedule_key,
            ",".join(self.config.queue_for(f) for f in self.config.flavours),
            self.config.heartbeat,
        )

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._connection.process_data_events(time_limit=PUMP_INTERVAL)
            self._publish_results()
            self._apply_throttle()

    def _apply_throttle(self) -> None:
        cap = max(1, math.floor(self.config.prefetch * self.schedule.current.throttle))
        if cap == self._cap:
            return
        # A channel-wide (global) prefetch covers every flavour consumer at once and,
        # unlike the per-consumer form, also applies to consumers that already exist.
        self._channel.basic_qos(prefetch_count=cap, global_qos=True)
        self._cap = cap
        metrics.CONSUMER_INFLIGHT_CAP.set(cap)
        log.info(
            "event=inflight_cap schedule=%s cap=%d prefetch=%d",
            self.config.schedule_key,
            cap,
            self.config.prefetch,
        )

    def _on_message(self, channel, method, properties, body, *, flavour: FlavourSpec) -> None:
        try:
            request = decode_request(properties, body)
            if not properties.reply_to or not properties.correlation_id:
                raise MessageError("reply_to and correlation_id are required")
        except MessageError as error:
            self._dead_letter(channel, method, flavour=flavour, error=error)
            return

        correlation_id = properties.correlation_id
        if correlation_id in self._answered:
            self._settle(channel, method.delivery_tag, flavour=flavour, outcome="duplicate")
            return
        if correlation_id in self._inflight:
            self._inflight[correlation_id].append((channel, method.delivery_tag))
            return
        if request.expired():
            self._settle(channel, method.delivery_tag, flavour=flavour, outcome="expired")
            return

        target = self._target_flavour(request, flavour)
        self._inflight[correlation_id] = [(channel, method.delivery_tag)]
        metrics.CONSUMER_INFLIGHT.inc()
        log.debug(
            "event=forward schedule=%s flavour=%s correlation_id=%s",
            self.config.schedule_key,
            target.name,
            correlation_id,
        )
        self._executor.submit(self._forward, request, target, properties)

    def _target_flavour(self, request, queued: FlavourSpec) -> FlavourSpec:
        schedule = self.schedule.current
        if request.forced or schedule.evaluator != "consumer" or schedule.source != "engine":
            return queued
        return self.config.flavour_named(schedule.draw(self._rng)) or queued

    def _forward(self, request, target: FlavourSpec, properties) -> None:
        # Runs on a pool thread: no AMQP calls here, only the HTTP request.
        try:
            response = self.forwarder.forward(request, target)
        except Exception as error:  # noqa: BLE001 - any failure must still produce a reply
            log.exception("event=forward_crashed flavour=%s error=%r", target.name, error)
            response = RelayedResponse(502, (), b"consumer failed to forward the request", target.name)
        self._results.put((properties, response, target))
        self._wake_connection_thread()

    def _wake_connection_thread(self) -> None:
        # One pending wake-up is enough: the connection thread clears the flag
        # before draining, so a result queued before the flag was seen set is
        # drained by the wake-up already on its way.
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        connection = self._connection
        try:
            if connection is not None:
                connection.add_callback_threadsafe(self._publish_results)
        except pika.exceptions.AMQPError:
            pass  # the connection thread drains the results after reconnecting

    def _publish_results(self) -> None:
        with self._wake_lock:
            self._wake_pending = False
        while True:
            try:
                properties, response, target = self._results.get_nowait()
            except queue.Empty:
                return
            self._finish(properties, response, target)

    def _finish(self, properties, response: RelayedResponse, target: FlavourSpec) -> None:
        correlation_id = properties.correlation_id
        deliveries = self._inflight.pop(correlation_id, [])
        metrics.CONSUMER_INFLIGHT.dec()
        if self._channel is None or not self._channel.is_open:
            # The deliveries belong to a closed channel and will be redelivered.
            log.info("event=reply_dropped reason=channel_closed correlation_id=%s", correlation_id)
            return
        reply = pika.BasicProperties(
            correlation_id=correlation_id, headers=response_headers_table(response)
        )
        self._channel.basic_publish("", properties.reply_to, response.body, reply)
        for channel, tag in deliveries:
            if channel.is_open:
                channel.basic_ack(tag)
        self._remember(correlation_id)
        if response.status < 500:
            self.feedback.record(response.flavour or target.name)
        metrics.CONSUMER_MESSAGES.labels(flavour=target.name, outcome="answered").inc()

    def _settle(self, channel, tag: int, *, flavour: FlavourSpec, outcome: str) -> None:
        channel.basic_ack(tag)
        metrics.CONSUMER_MESSAGES.labels(flavour=flavour.name, outcome=outcome).inc()
        log.info(
            "event=message_skipped schedule=%s flavour=%s reason=%s",
            self.config.schedule_key,
            flavour.name,
            outcome,
        )

    def _dead_letter(self, channel, method, *, flavour: FlavourSpec, error: Exception) -> None:
        channel.basic_nack(method.delivery_tag, requeue=False)
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

    def _drop_connection(self) -> None:
        self.ready.clear()
        metrics.CONSUMER_BROKER_CONNECTED.set(0)
        connection, self._connection, self._channel = self._connection, None, None
        close_quietly(connection)

    def _shutdown(self) -> None:
        # Stop taking work, then let in-flight requests finish and reply before closing.
        try:
            if self._channel is not None and self._channel.is_open:
                for tag in list(self._channel.consumer_tags):
                    self._channel.basic_cancel(tag)
                deadline = time.monotonic() + self.config.forward_timeout
                while self._inflight and time.monotonic() < deadline:
                    self._connection.process_data_events(time_limit=PUMP_INTERVAL)
                    self._publish_results()
        except pika.exceptions.AMQPError as error:
            log.warning(
                "event=shutdown_incomplete schedule=%s error=%r", self.config.schedule_key, error
            )
        self._drop_connection()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.schedule.stop()
        self.feedback.stop()
        log.info("event=consumer_stopped schedule=%s", self.config.schedule_key)


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Every connection failure is logged once by the consumer as an event line;
    # pika's tracebacks for the same failure are shown only on request.
    logging.getLogger("pika").setLevel(os.environ.get("PIKA_LOG_LEVEL", "CRITICAL").upper())
    try:
        config = BufferConfig.from_env()
    except ConfigError as error:
        print(f"buffer.consumer: invalid configuration: {error}", file=sys.stderr)
        return 2
    consumer = Consumer(config)
    if config.consumer_metrics_port:
        serve_consumer_http(
            consumer, host=config.consumer_metrics_bind, port=config.consumer_metrics_port
        )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop())
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
