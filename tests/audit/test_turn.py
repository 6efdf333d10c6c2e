"""The turn that orders a process's appends (audit/turn.py): one holder at a time, a timeout that
gives up, and no waiter overtaken for ever by threads that keep taking it again."""

from __future__ import annotations

import threading
import time

import pytest

from wakedock.audit import turn as turn_module
from wakedock.audit.append import TURN_WAIT
from wakedock.audit.turn import Turn


def interrupted_waiter(turn: Turn) -> tuple[threading.Thread, list[BaseException]]:
    """A thread named "waiter" started waiting for `turn` (5 s at most); the list gets the
    KeyboardInterrupt that cuts its wait short, if one does."""
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            turn.acquire(timeout=5)
        except KeyboardInterrupt as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait, name="waiter")
    waiter.start()
    return waiter, outcome


def test_one_holder_at_a_time() -> None:
    turn = Turn()
    inside = 0
    most = 0
    counted = 0

    def work() -> None:
        nonlocal inside, most, counted
        for _ in range(2_000):
            assert turn.acquire(timeout=5)
            inside += 1
            most = max(most, inside)
            seen = counted
            time.sleep(0)  # let another thread run here if it could
            counted = seen + 1
            inside -= 1
            turn.release()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    assert counted == 12_000  # no increment lost to an overlapping holder
    assert not turn.locked()


def test_a_wait_gives_up_after_its_timeout_and_leaves_the_queue() -> None:
    turn = Turn()
    assert turn.acquire()
    started = time.monotonic()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(turn.acquire(timeout=0.2)))
    waiter.start()
    waiter.join(5)
    assert got == [False]
    assert time.monotonic() - started >= 0.2
    turn.release()
    # The waiter that gave up is not handed the turn: it is free for the next one at once.
    assert not turn.locked()
    assert turn.acquire(blocking=False)
    turn.release()


def test_a_released_turn_goes_to_a_waiting_thread() -> None:
    turn = Turn()
    assert turn.acquire()
    got = threading.Event()

    def wait() -> None:
        if turn.acquire(timeout=5):
            got.set()
            turn.release()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    assert not got.is_set()
    turn.release()
    assert got.wait(5)
    waiter.join(5)
    assert not turn.locked()


def test_a_waiter_is_not_overtaken_for_ever() -> None:
    """Threads that release the turn and take it again at once (appends in a loop, the GIL theirs)
    would keep it from a thread woken for it; that one gets it well before an append gives up
    waiting for its turn (TURN_WAIT). The holders sleep in their turn, as an append waits for
    its database in it (the GIL released: the waiter can wake, and find the turn taken)."""
    turn = Turn()
    stop = threading.Event()
    taken_again = [0]

    def keep_taking() -> None:
        while not stop.is_set():
            turn.acquire()
            taken_again[0] += 1
            time.sleep(0.0005)
            turn.release()

    busy = [threading.Thread(target=keep_taking) for _ in range(3)]
    for thread in busy:
        thread.start()
    try:
        waits = []
        for _ in range(20):
            time.sleep(0.01)
            started = time.monotonic()
            assert turn.acquire(timeout=TURN_WAIT * 5), "the waiter never got the turn"
            waits.append(time.monotonic() - started)
            turn.release()
    finally:
        stop.set()
        for thread in busy:
            thread.join(5)
    assert taken_again[0] > 100  # the others did keep taking it
    assert max(waits) < TURN_WAIT


def test_release_of_a_turn_not_held_is_an_error() -> None:
    turn = Turn()
    with pytest.raises(RuntimeError):
        turn.release()
    with turn:
        assert turn.locked()
    assert not turn.locked()


def test_a_waiter_interrupted_leaves_nothing_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait cut short (KeyboardInterrupt in the main thread) must not keep the turn, even one
    handed to it as it was interrupted."""
    turn = Turn(patience=0.0)  # every release hands the turn to the first waiter
    assert turn.acquire()
    interrupted = threading.Event()

    class Interrupted:
        """A waiter's wake lock whose wait is interrupted once the turn is handed to it."""

        def __init__(self) -> None:
            self._lock = threading.Lock()

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            got = self._lock.acquire(blocking, timeout)
            if got and interrupted.is_set():
                raise KeyboardInterrupt
            return got

        def release(self) -> None:
            self._lock.release()

    class InterruptedWaiter(turn_module._Waiter):
        def __init__(self) -> None:
            super().__init__()
            self.wake = Interrupted()  # type: ignore[assignment]
            self.wake.acquire()

    monkeypatch.setattr(turn_module, "_Waiter", InterruptedWaiter)
    waiter, outcome = interrupted_waiter(turn)
    time.sleep(0.1)
    interrupted.set()
    turn.release()  # handed to the waiter, which is interrupted as it wakes
    waiter.join(5)
    assert len(outcome) == 1
    # It passed the turn on: free for anyone.
    assert not turn.locked()
    assert turn.acquire(blocking=False)
    turn.release()


def test_a_waiter_interrupted_between_waits_leaves_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KeyboardInterrupt lands after any built-in call: here the clock read before a wait. The
    waiter must not stay queued, where the next release would hand it the turn for ever."""
    turn = Turn(patience=0.0)
    assert turn.acquire()
    reads: list[int] = []

    class Clock:
        @staticmethod
        def monotonic() -> float:
            if threading.current_thread().name == "waiter":
                reads.append(1)
                if len(reads) == 2:  # the first is the waiter's arrival, the second the loop's
                    raise KeyboardInterrupt
            return time.monotonic()

    monkeypatch.setattr(turn_module, "time", Clock)
    waiter, outcome = interrupted_waiter(turn)
    waiter.join(5)
    assert len(outcome) == 1
    turn.release()
    # Nobody left in the queue to take it: free.
    assert not turn.locked()


def test_a_waiter_interrupted_once_it_took_a_free_turn_passes_it_on() -> None:
    """A woken waiter that takes the free turn and is interrupted before `acquire` returns must
    not leave the turn held by no one."""
    turn = Turn(patience=60.0)  # a release frees the turn rather than handing it over
    assert turn.acquire()
    real_guard = turn._guard
    interrupts = [KeyboardInterrupt()]  # one, at the first guard exit with the turn taken

    class Guard:
        def __enter__(self) -> None:
            real_guard.acquire()

        def __exit__(self, *_exc: object) -> None:
            held = turn._held
            real_guard.release()
            if held and interrupts and threading.current_thread().name == "waiter":
                raise interrupts.pop()

    waiter, outcome = interrupted_waiter(turn)
    deadline = time.monotonic() + 5
    while not turn._queue and time.monotonic() < deadline:
        time.sleep(0.01)
    assert turn._queue, "the waiter never queued"
    turn._guard = Guard()  # type: ignore[assignment]
    turn.release()
    waiter.join(5)
    assert len(outcome) == 1
    assert not turn.locked()
    turn._guard = real_guard
    assert turn.acquire(blocking=False)
    turn.release()
