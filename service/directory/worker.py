"""The thread bridge: blocking work run in a bounded set of threads, awaited by the event loop up to a
deadline. Nothing here knows LDAP: the work is any blocking call that reports the stages it reaches.

Why threads: ldap3 is blocking (docs/architecture.md, "Threads, not an async LDAP client"). The event
loop only waits, up to the deadline; work still running after it is abandoned, and its thread stops at
the next stage it reports (or at its own socket timeout). Work that cannot start in time is shed before
it queues, judged by the calls already waiting and a moving average of how long work holds a thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

from service.directory.errors import Abandoned, DeadlineExceeded, Stage, StageReporter

T = TypeVar("T")

#: Weight of the latest call in the moving average of work time: about the last ten calls count.
_AVERAGE_WEIGHT = 0.1
#: What a thread returns when the caller stopped waiting before or during the work.
_ABANDONED = object()


class WaitingCount(Protocol):
    """Where the calls waiting for a thread are counted. The connection pool keeps the count, so that
    its state (open, lent, waiting) is read in one snapshot for the pool gauges."""

    @property
    def waiting(self) -> int: ...

    def adjust_waiting(self, delta: int) -> None: ...


@dataclass(slots=True)
class _Progress:
    """Shared between the waiting coroutine and the thread: what the work is doing now."""

    stage: Stage = "pool_wait"
    started: bool = False
    abandoned: bool = False


class Worker:
    """Runs ``work(on_stage)`` in one of ``threads`` threads, for an awaiting caller with a deadline."""

    def __init__(self, threads: int, queue: WaitingCount, name: str) -> None:
        self._threads = threads
        self._queue = queue
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._lock = threading.Lock()
        #: Moving average of the seconds a call holds a thread (0 until one has run).
        self._seconds = 0.0

    def queue_wait(self) -> float:
        """Seconds a call made now would wait for a thread: the calls already waiting, ``threads`` at a
        time, each taking the recent average. A caller whose time left cannot cover this wait and the
        work answers at once instead of joining a queue that cannot serve it in time (and that would
        only delay the requests behind it)."""
        return self._queue.waiting * self._seconds / self._threads

    async def run(self, work: Callable[[StageReporter], T], deadline: float, start_by: float | None = None) -> T:
        """``work(on_stage)`` in a thread, waited for up to ``deadline`` (a :func:`time.monotonic`
        instant); :class:`DeadlineExceeded` names the stage it had reached. Past ``start_by`` (counting
        :meth:`queue_wait`) nothing is started: ``DeadlineExceeded("queue")`` at once."""
        if start_by is not None and time.monotonic() + self.queue_wait() > start_by:
            # Queued too long behind other requests (overload), or too many calls already waiting for a
            # thread: this one could not finish in time, and starting it would only delay the requests
            # queued behind it. Nothing was asked of the directory.
            raise DeadlineExceeded("queue")
        progress = _Progress()
        self._queue.adjust_waiting(+1)
        context = contextvars.copy_context()  # keeps the trace and log context in the thread
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, context.run, self._run, work, deadline, progress)
        try:
            result = await asyncio.wait_for(future, timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            progress.abandoned = True
            raise DeadlineExceeded(progress.stage) from None
        except asyncio.CancelledError:  # the client went away: the thread stops at its next stage
            progress.abandoned = True
            raise
        finally:
            self._started(progress)
        if result is _ABANDONED:
            raise DeadlineExceeded(progress.stage)
        return cast(T, result)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _started(self, progress: _Progress) -> None:
        """Count the call out of the waiting queue exactly once, whichever side gets here first."""
        with self._lock:
            if progress.started:
                return
            progress.started = True
        self._queue.adjust_waiting(-1)

    # -- in the thread -------------------------------------------------------------------------------

    def _run(self, work: Callable[[StageReporter], T], deadline: float, progress: _Progress) -> object:
        self._started(progress)
        if progress.abandoned or time.monotonic() >= deadline:
            return _ABANDONED  # nobody is waiting for the answer any more

        def on_stage(stage: Stage) -> None:
            if progress.abandoned:
                raise Abandoned
            progress.stage = stage

        began = time.monotonic()
        try:
            return work(on_stage)
        except Abandoned:
            return _ABANDONED
        finally:
            self._learn(time.monotonic() - began)

    def _learn(self, seconds: float) -> None:
        """Fold one call's time into the moving average that :meth:`queue_wait` uses (the first one is
        taken whole). A lost update between two threads only delays the average a little."""
        average = self._seconds
        self._seconds = seconds if average == 0 else average + _AVERAGE_WEIGHT * (seconds - average)
