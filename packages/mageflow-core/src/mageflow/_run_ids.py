"""Engine run ids of a worker's dispatches, recorded without a round trip of their own.

After the engine accepts a dispatch, its run id is kept with the claim so the
reconciler can ask the engine about the run (``sent.lua``). A worker sends the
next members, steps and callbacks of every run it finishes; writing their ids
at once would add a third round trip to each completion (after BEGIN and
FINISH), on the path that holds the finishing run's slot.

So the worker keeps them here and hands them to its next BEGIN or FINISH,
which record them on the way (any signature's: the scripts take a list). Ids
no such call takes within ``linger``, while no BEGIN or FINISH comes at all,
are written by one ``sent`` script for all of them. Losing some (the process
dies first, the write fails) costs nothing but time: a claim without a run id
is re-sent by the reconciler after
``reconcile_after`` if it has not begun by then, and a duplicate run skips
itself at BEGIN (its dispatch id is not the one that began).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence

from thirdmagic.errors import MageflowError

from mageflow._store.redis_store import RedisStore

__all__ = ["RunIds", "SentRun"]

log = logging.getLogger("mageflow")

SentRun = tuple[str, str, str]
"""``(signature key, dispatch id, engine run id)``"""

# ids one BEGIN or FINISH carries at most: its script stays short
_PER_CALL = 64
# ids one flush writes at most (one `sent` script call each)
_PER_FLUSH = 1000


class RunIds:
    """Run ids waiting to be recorded; one per worker runtime (and event loop)."""

    def __init__(self, store: RedisStore, linger: float = 2.0) -> None:
        self.store = store
        self.linger = linger
        self._waiting: deque[tuple[float, SentRun]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self._last_call = 0.0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, runs: Sequence[SentRun]) -> None:
        """Keep ``runs`` for the next BEGIN or FINISH; written on their own after ``linger``."""
        if not runs:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # a new event loop (tests, a restarted worker): the old timer is gone with its loop
            self._loop, self._timer, self._writing = loop, None, set()
        now = time.monotonic()
        self._waiting.extend((now, run) for run in runs)
        if self._timer is None:
            self._timer = loop.call_later(self.linger, self._due)

    def take(self) -> list[SentRun]:
        """The oldest waiting ids (a bounded number) for one script call to record."""
        self._last_call = time.monotonic()
        n = min(len(self._waiting), _PER_CALL)
        return [self._waiting.popleft()[1] for _ in range(n)]

    def give_back(self, runs: Sequence[SentRun]) -> None:
        """Ids a call took but may not have recorded (it raised): keep them for the next."""
        now = time.monotonic()
        self._waiting.extendleft((now, run) for run in reversed(runs))

    def _due(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None or not self._waiting:
            return
        now = time.monotonic()
        if now - self._last_call < self.linger and len(self._waiting) <= _PER_CALL:
            # calls are still coming (each takes the oldest ids), only later
            # than the timer on a busy event loop: leave the ids to them
            self._timer = loop.call_later(self.linger, self._due)
            return
        cutoff = now - self.linger
        due: list[SentRun] = []
        while self._waiting and self._waiting[0][0] <= cutoff and len(due) < _PER_FLUSH:
            due.append(self._waiting.popleft()[1])
        if due:
            task = loop.create_task(self._write(due))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)
        if self._waiting:
            wait = self._waiting[0][0] + self.linger - time.monotonic()
            self._timer = loop.call_later(max(wait, 0.01), self._due)

    async def _write(self, runs: Sequence[SentRun]) -> None:
        try:
            await self.store.record_runs(runs)
        except MageflowError:
            log.warning("could not record the run ids of %d dispatch(es)", len(runs), exc_info=True)

    async def flush(self) -> None:
        """Write every waiting id now, and wait for writes under way (tests, shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            batch = [self._waiting.popleft()[1] for _ in range(min(len(self._waiting), _PER_FLUSH))]
            await self._write(batch)
        here = asyncio.get_running_loop()
        writing = [t for t in self._writing if t.get_loop() is here]
        if writing:
            await asyncio.gather(*writing, return_exceptions=True)
