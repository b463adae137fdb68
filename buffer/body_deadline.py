"""A per-process watchdog that ends request-body reads at the request's deadline.

gunicorn's threaded workers read a request body with blocking `recv()` calls
and no time limit. A client that announces a body and then stops sending it,
or sends it one byte at a time, would hold a router thread indefinitely. A
socket timeout alone bounds each `recv()`, not the whole body.

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
import threading
import time


class BodyWatchdog:
    """Deadlines of the body reads in progress, and the thread that enforces them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []  # (deadline, token), possibly stale
        self._active: dict[int, tuple[float, socket.socket]] = {}
        self._expired: set[int] = set()
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket | None, deadline: float) -> int | None:
        """Register `sock` until `release()`; shut its read side at `deadline` (monotonic seconds)."""
        if sock is None:
            return None
        token = next(self._tokens)
        with self._cond:
            self._start_thread()
            self._active[token] = (deadline, sock)
            heapq.heappush(self._heap, (deadline, token))
            if self._heap[0][1] == token:
                self._cond.notify()  # the thread sleeps until a later deadline
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
                # Entries of released reads are dropped without waiting for their deadline,
                # so the thread sleeps until the earliest read still in progress.
                while self._heap and (self._heap[0][0] <= now or self._heap[0][1] not in self._active):
                    _, token = heapq.heappop(self._heap)
                    entry = self._active.pop(token, None)
                    if entry is not None:
                        self._expired.add(token)
                        _shut_read_side(entry[1])
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)


def _shut_read_side(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # the client already closed the connection


BODY_WATCHDOG = BodyWatchdog()
