"""Pool bookkeeping on its own: a retry that waits in the queue never gets the replica it
excludes (the one that just failed it), and does not hold up the waiters behind it."""

from __future__ import annotations

import asyncio

from aml_core.frontdoor.pool import Pool


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_a_queued_retry_skips_the_excluded_replica_and_the_next_waiter_takes_it():
    async def scenario():
        pool = Pool()
        pool.update(("http://a", "http://b"), 1)
        first, second = await pool.acquire(1), await pool.acquire(1)
        dead = first if first.url == "http://a" else second
        live = second if dead is first else first
        retry = asyncio.ensure_future(pool.acquire(1, exclude=dead))
        plain = asyncio.ensure_future(pool.acquire(1))
        await asyncio.sleep(0)
        assert pool.snapshot()["queued"] == 2

        pool.release(dead)  # only the excluded replica is free: the plain waiter gets it
        got = await plain
        assert got is dead and not retry.done()
        pool.release(live)
        assert await retry is live
        assert pool.snapshot()["queued"] == 0

    _run(scenario())


def test_a_queued_retry_whose_only_choice_is_excluded_times_out_empty():
    async def scenario():
        pool = Pool()
        pool.update(("http://a",), 1)
        only = await pool.acquire(1)
        retry = asyncio.ensure_future(pool.acquire(0.2, exclude=only))
        await asyncio.sleep(0)
        pool.release(only)
        assert await retry is None
        assert pool.snapshot() | {"requests": 0} == {"replicas": 1, "busy": 0, "queued": 0, "utilization": 0.0,
                                                     "requests": 0, "rejected_503": 0, "timeouts_504": 0}

    _run(scenario())
