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


class CountedWaiter(turn_module._Waiter):
    """A waiter whose wake-ups, in the thread named "waiter", are counted in `WAKES`."""

    def __init__(self) -> None:
        super().__init__()
        self.wake = CountedWake(self.wake)  # type: ignore[assignment]


WAKES: list[int] = []


class CountedWake:
    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got and threading.current_thread().name == "waiter":
            WAKES.append(1)
        return got

    def release(self) -> None:
        self._lock.release()


def taking_in_a_loop(turn: Turn, stop: threading.Event, hold: float) -> threading.Thread:
    """A thread that holds `turn` for `hold` seconds (asleep: the GIL released, as an append
    waits for its database) and takes it again at once, until `stop`."""

    def keep_taking() -> None:
        while not stop.is_set():
            turn.acquire()
            time.sleep(hold)
            turn.release()

    thread = threading.Thread(target=keep_taking)
    thread.start()
    return thread


def timed_waiter(turn: Turn, timeout: float) -> tuple[threading.Thread, list[float]]:
    """A thread named "waiter" started waiting for `turn` (`timeout` at most); the list gets how
    long it waited, once the turn is its own (it then releases it)."""
    got: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        if turn.acquire(timeout=timeout):
            got.append(time.monotonic() - started)
            turn.release()

    waiter = threading.Thread(target=wait, name="waiter")
    waiter.start()
    return waiter, got


def queued(turn: Turn) -> None:
    """Once a waiter is in `turn`'s queue."""
    deadline = time.monotonic() + 5
    while not turn._queue and time.monotonic() < deadline:
        time.sleep(0.001)
    assert turn._queue, "the waiter never queued"


def test_a_waiter_overtaken_is_not_woken_for_nothing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread that takes the turn again as soon as it releases it wins every free turn from a
    waiter, which needs the GIL first: woken at each release, the waiter would switch in and out
    for nothing hundreds of times here (each time making the holder wait for the GIL). Woken
    once and overtaken, it sleeps until its patience has run out, and is then handed the turn."""
    monkeypatch.setattr(turn_module, "_Waiter", CountedWaiter)
    WAKES.clear()
    turn = Turn(patience=0.2)
    stop = threading.Event()
    holder = taking_in_a_loop(turn, stop, hold=0.0005)
    try:
        time.sleep(0.05)
        waiter, got = timed_waiter(turn, 5)
        waiter.join(5)
    finally:
        stop.set()
        holder.join(5)
    assert got, "the waiter never got the turn"
    assert 0.2 <= got[0] < 1.0  # overtaken until its patience ran out, then handed the turn
    # Woken for a free turn it lost, then for the turn handed to it: twice.
    assert len(WAKES) <= 3, f"woken {len(WAKES)} times"


def test_a_waiter_overtaken_by_the_releaser_takes_a_turn_left_free() -> None:
    """Overtaken by the thread that released the turn and took it straight back, a waiter is
    not woken by that thread's next release: if nobody takes the turn then, the waiter takes it
    when its patience has run out, not later."""
    turn = Turn(patience=0.3)
    assert turn.acquire()
    waiter, got = timed_waiter(turn, 5)
    queued(turn)
    # Released and taken again before the woken waiter can run (this thread keeps the GIL).
    turn.release()
    assert turn.acquire(blocking=False)
    assert turn._queue and turn._queue[0].overtaken_by == threading.get_ident()
    time.sleep(0.05)  # the waiter wakes, finds the turn taken, and waits again
    turn.release()  # left free: the waiter is not woken for it
    waiter.join(5)
    assert got, "the waiter never got the turn"
    assert 0.25 <= got[0] < 0.3 + 0.5
    assert not turn.locked()


class SlowWake:
    """A waiter's wake lock that, once woken, waits for `go` before its thread looks at the
    turn: another thread can take the turn in between."""

    def __init__(self, lock: threading.Lock, woke: threading.Event, go: threading.Event) -> None:
        self._lock, self._woke, self._go = lock, woke, go

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got and not self._go.is_set():
            self._woke.set()
            self._go.wait(5)
        return got

    def release(self) -> None:
        self._lock.release()


def test_a_waiter_overtaken_by_another_thread_is_woken_at_the_next_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread that came for the turn as it was released (not the one that released it) took
    it from under the waiter woken for it: the waiter is woken again at the next release, not
    left asleep until its patience runs out (a server's requests, each recording an event and
    going on with other work, would leave the turn free meanwhile)."""
    woke, go = threading.Event(), threading.Event()

    class Slow(turn_module._Waiter):
        def __init__(self) -> None:
            super().__init__()
            self.wake = SlowWake(self.wake, woke, go)  # type: ignore[assignment]

    monkeypatch.setattr(turn_module, "_Waiter", Slow)
    turn = Turn(patience=5.0)
    assert turn.acquire()
    waiter, got = timed_waiter(turn, 10)
    queued(turn)
    releaser = threading.Thread(target=turn.release)  # releases the turn this thread took
    releaser.start()
    releaser.join(5)
    assert woke.wait(5), "the waiter was not woken by the release"
    assert turn.acquire(blocking=False)  # another thread takes the free turn first
    assert turn._queue[0].overtaken_by is None
    go.set()
    time.sleep(0.05)  # the waiter finds the turn taken and waits again
    turn.release()
    waiter.join(10)
    assert got, "the waiter never got the turn"
    assert got[0] < 2.0  # woken by that release, long before its patience (5 s) ran out


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
