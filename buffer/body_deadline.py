"""A per-process watchdog that ends request-body reads at the request's deadline.

gunicorn's threaded workers read a request body with blocking `recv()` calls
and no time limit. A client that announces a body and then stops sending it,
or sends it one byte at a time, would hold a router thread indefinitely. A
socket timeout alone bounds each `recv()`, not the whole body.

Under gunicorn's gevent workers, `read_within()` bounds the read with a
`gevent.Timeout` in the request's own greenlet instead, and shuts the read side
the same way when it fires.

`BodyWatchdog.watch(sock, deadline)` registers the client socket for the
duration of the read. One daemon thread per process shuts the socket's read
side when the deadline passes. The blocked `recv()` then returns end-of-file
at once, the read ends short, and `expired(token)` returns True, so the router
responds 408. The write side stays open, so the 408 still reaches the client.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import sys
import threading
import time
from typing import BinaryIO

from werkzeug.exceptions import ClientDisconnected


class BodyWatchdog:
    """Deadlines of the body reads in progress, and the thread that enforces them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []  # (deadline, token), possibly stale
        self._active: dict[int, tuple[float, socket.socket]] = {}
        self._expired: set[int] = set()
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._wake_at = float("inf")  # when the thread wakes next, unless notified earlier

    def watch(self, sock: socket.socket | None, deadline: float) -> int | None:
        """Register `sock` until `release()`; shut its read side at `deadline` (monotonic seconds)."""
        if sock is None:
            return None
        token = next(self._tokens)
        with self._cond:
            self._start_thread()
            self._active[token] = (deadline, sock)
            heapq.heappush(self._heap, (deadline, token))
            # Deadlines usually arrive in increasing order, so the thread, already
            # sleeping until an earlier one, rarely needs a wake-up (which costs a
            # context switch per request under load).
            if deadline < self._wake_at:
                self._wake_at = deadline
                self._cond.notify()
        return token

    def expired(self, token: int | None) -> bool:
        """Return whether the watchdog shut the socket of `token` because its deadline passed."""
        with self._cond:
            return token in self._expired

    def release(self, token: int | None) -> bool:
        """Stop watching `token`; return whether its deadline had passed."""
        if token is None:
            return False
        with self._cond:
            self._active.pop(token, None)
            if len(self._heap) > 2 * len(self._active) + 64:
                self._compact()
            if token in self._expired:
                self._expired.discard(token)
                return True
            return False

    def _start_thread(self) -> None:
        # Started on first use, so it runs in the gunicorn worker, not in the master before the fork.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="body-deadline", daemon=True)
            self._thread.start()

    def _compact(self) -> None:
        # Released reads leave their heap entries behind. Rebuilding bounds the heap's size.
        self._heap = [(deadline, token) for token, (deadline, _) in self._active.items()]
        heapq.heapify(self._heap)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, token = heapq.heappop(self._heap)
                    entry = self._active.pop(token, None)
                    if entry is not None:
                        self._expired.add(token)
                        _shut_read_side(entry[1])
                # The earliest entry may belong to a released read. Waking for it
                # costs one idle wake-up, far less than a notify per watched read.
                self._wake_at = self._heap[0][0] if self._heap else float("inf")
                self._cond.wait(self._wake_at - now if self._heap else None)


def _shut_read_side(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # the client already closed the connection


BODY_WATCHDOG = BodyWatchdog()


def read_within(
    stream: BinaryIO, size: int, *, sock: socket.socket | None, deadline: float
) -> tuple[bytes, bool]:
    """Read up to `size` bytes from `stream` until `deadline` (monotonic seconds); return (data, expired).

    Without a socket (a server that does not expose it, or a test client) the
    read has no deadline. Errors of the read itself propagate unless the deadline caused them.
    """
    if sock is not None and gevent_patched():
        return _read_in_greenlet(stream, size, sock=sock, deadline=deadline)
    token = BODY_WATCHDOG.watch(sock, deadline)
    try:
        data = stream.read(size)
    except (ClientDisconnected, OSError):
        # A shut read side ends the read short, which werkzeug reports as a disconnect.
        if not BODY_WATCHDOG.expired(token):
            raise
        data = b""
    finally:
        expired = BODY_WATCHDOG.release(token)
    return data, expired


def gevent_patched() -> bool:
    """Return True in a process where gevent has patched the socket module (gunicorn's gevent workers)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def _read_in_greenlet(
    stream: BinaryIO, size: int, *, sock: socket.socket, deadline: float
) -> tuple[bytes, bool]:
    import gevent  # present whenever gevent has patched the socket module

    timer = gevent.Timeout(max(0.0, deadline - time.monotonic()))
    timer.start()
    try:
        return stream.read(size), False
    except gevent.Timeout as fired:
        if fired is not timer:
            raise
        _shut_read_side(sock)  # the server then reads end-of-file and closes the connection
        return b"", True
    finally:
        timer.close()
