"""Per-version replica bookkeeping: least-busy choice, the per-replica limit and the queue.

A :class:`Pool` lives as long as its (service, version) pair, across ``PUT``s of the entry, so
requests in flight on a replica keep counting against it after the backends list changes. All
methods run on the front door's event loop; :meth:`Pool.snapshot` may be read from another
thread (it copies plain ints).
"""

from __future__ import annotations

import asyncio
from collections import deque


class Replica:
    __slots__ = ("inflight", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.inflight = 0


class Pool:
    """The replicas of one version and the requests waiting for a free slot on one of them."""

    def __init__(self) -> None:
        self.replicas: list[Replica] = []
        self._by_url: dict[str, Replica] = {}
        self.limit = 1
        # (future, the replica it must not get): a retry after a failed replica waits for another
        self._waiters: deque[tuple[asyncio.Future, Replica | None]] = deque()
        self._rr = 0
        self.requests = 0
        self.rejected_503 = 0
        self.timeouts_504 = 0

    def update(self, backends: tuple[str, ...], limit: int) -> None:
        """Take a new backends list and per-replica limit; known replicas keep their counts."""
        by_url = {url: self._by_url.get(url) or Replica(url) for url in backends}
        self._by_url = by_url
        self.replicas = list(by_url.values())
        self.limit = limit
        self._wake()

    def _pick(self, exclude: Replica | None = None) -> Replica | None:
        best: Replica | None = None
        n = len(self.replicas)
        start = self._rr
        for i in range(n):
            r = self.replicas[(start + i) % n]
            if r is exclude or r.inflight >= self.limit:
                continue
            if best is None or r.inflight < best.inflight:
                best = r
                if r.inflight == 0:
                    break
        if best is not None:
            self._rr = (start + 1) % n if n else 0
            best.inflight += 1
        return best

    async def acquire(self, wait_s: float, exclude: Replica | None = None) -> Replica | None:
        """A replica with a free slot (counted as busy), or ``None`` after ``wait_s`` seconds."""
        if not self._waiters:
            replica = self._pick(exclude)
            if replica is not None:
                return replica
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        waiter = (fut, exclude)
        self._waiters.append(waiter)
        timer = loop.call_later(wait_s, _expire, fut)
        try:
            replica = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result() is not None:
                self.release(fut.result())
            raise
        finally:
            timer.cancel()
            if not fut.done() or fut.cancelled() or fut.result() is None:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
        return replica

    def release(self, replica: Replica) -> None:
        replica.inflight -= 1
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to the waiters in order. A waiter that must not get the only free
        replica (a retry, excluding the replica that just failed it) keeps its place and
        the next waiter may take that replica."""
        skipped: list[tuple[asyncio.Future, Replica | None]] = []
        while self._waiters:
            fut, exclude = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            replica = self._pick(exclude)
            if replica is None:
                if exclude is None or not any(r.inflight < self.limit for r in self.replicas):
                    break
                skipped.append(self._waiters.popleft())
                continue
            self._waiters.popleft()
            fut.set_result(replica)
        self._waiters.extendleft(reversed(skipped))

    def snapshot(self) -> dict:
        replicas = list(self.replicas)
        busy = sum(r.inflight for r in replicas)
        queued = sum(1 for f, _ in list(self._waiters) if not f.done())
        capacity = len(replicas) * self.limit
        if capacity:
            utilization = (busy + queued) / capacity * 100.0
        else:
            utilization = 100.0 if queued else 0.0
        return {"replicas": len(replicas), "busy": busy, "queued": queued,
                "utilization": round(utilization, 2), "requests": self.requests,
                "rejected_503": self.rejected_503, "timeouts_504": self.timeouts_504}


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
