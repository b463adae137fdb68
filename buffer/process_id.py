"""The id of the current process, read without a system call.

The router checks on every request whether it runs in the process that
started its background threads, because a gunicorn worker is a fork that
inherits the objects but not the threads. `os.getpid()` is a system call
each time. `current_pid()` reads a value that a fork handler updates in the child.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def current_pid() -> int:
    """Return the id of the calling process."""
    return _pid
