"""A readers-writer lock: requests share the engine, a swap waits until none is using it.

Lambda serves one request at a time per process, so there it never waits; the threaded
local server (`make run`) serves several at once, and a snapshot swap must not dispose an
engine, or delete its file, under a request that is still reading it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SwapLock"]


class SwapLock:
    """Many holders of `shared()` at once, or one holder of `exclusive()`.

    A waiting `exclusive()` holds back new `shared()` holders, so a steady stream of
    requests cannot postpone a swap forever. Not reentrant: a thread holding `shared()`
    must not ask for `exclusive()`.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._sharers = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._exclusive or self._waiting_exclusive:
                self._condition.wait()
            self._sharers += 1
        try:
            yield
        finally:
            with self._condition:
                self._sharers -= 1
                if self._sharers == 0:
                    self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._waiting_exclusive += 1
            try:
                while self._exclusive or self._sharers:
                    self._condition.wait()
            except BaseException:
                # Interrupted while waiting: let the sharers it was holding back in.
                self._waiting_exclusive -= 1
                self._condition.notify_all()
                raise
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()

    @property
    def sharers(self) -> int:
        """How many holders of `shared()` there are now."""
        with self._condition:
            return self._sharers

    @property
    def exclusive_waiting(self) -> bool:
        """Whether an `exclusive()` is waiting for the sharers to finish."""
        with self._condition:
            return self._waiting_exclusive > 0
