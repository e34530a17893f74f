"""SwapLock: requests share, a swap waits for them and holds new ones back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from app.swap_lock import SwapLock


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.002)


def test_swap_lock_shared_holders_do_not_wait_for_each_other() -> None:
    lock = SwapLock()

    with lock.shared(), lock.shared():
        assert lock.sharers == 2

    assert lock.sharers == 0


def test_swap_lock_exclusive_waits_for_sharers_and_holds_back_new_ones() -> None:
    lock = SwapLock()
    events: list[str] = []
    first_shared = lock.shared()
    first_shared.__enter__()

    def swap() -> None:
        with lock.exclusive():
            events.append("swap")

    def late_request() -> None:
        with lock.shared():
            events.append("late request")

    swapper = threading.Thread(target=swap)
    swapper.start()
    _wait_until(lambda: lock.exclusive_waiting)
    late = threading.Thread(target=late_request)
    late.start()
    time.sleep(0.05)  # give both a chance to run (they must not)
    assert events == []

    first_shared.__exit__(None, None, None)
    swapper.join(timeout=30)
    late.join(timeout=30)

    assert events == ["swap", "late request"]
    assert (lock.sharers, lock.exclusive_waiting) == (0, False)


def test_swap_lock_released_when_block_raises() -> None:
    lock = SwapLock()

    for context in (lock.shared, lock.exclusive):
        try:
            with context():
                raise RuntimeError("boom")
        except RuntimeError:
            pass

    with lock.exclusive():  # would wait forever if anything were still held
        assert lock.sharers == 0
