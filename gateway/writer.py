"""Moves spooled points into the time-series store, oldest segment first; never drops one."""

from __future__ import annotations

import asyncio
import logging
import time

from stackpulse.gateway.metrics import GatewayMetrics
from stackpulse.gateway.spool import Segment, Spool
from stackpulse.kernel.aio import Backoff, raise_if_cancelling
from stackpulse.kernel.store.base import LineStore, SeriesStore, StoreError, StoreRejected

log = logging.getLogger("stackpulse.gateway.writer")


class SpoolWriter:
    """One batch (segment) at a time, in order, retried with jittered backoff until stored."""

    def __init__(
        self,
        store: SeriesStore,
        spool: Spool,
        metrics: GatewayMetrics,
        *,
        flush_interval: float = 0.5,
        max_backoff: float = 30.0,
        poll: float = 0.02,
        drain_timeout: float = 5.0,
    ) -> None:
        self._drain_timeout = drain_timeout
        self._store = store
        self._spool = spool
        self._metrics = metrics
        self._flush_interval = flush_interval
        self._max_backoff = max_backoff
        self._poll = min(poll, flush_interval)

    async def run(self) -> None:
        """Write segments until cancelled; then try to empty the spool for a while.

        Whatever is still spooled after `drain_timeout` (the store is down, say) stays on
        disk and is replayed by the next run.
        """
        try:
            while True:
                raise_if_cancelling()
                self._spool.seal_older_than(self._flush_interval)
                if not await self._write_oldest():
                    await asyncio.sleep(self._poll)
        except asyncio.CancelledError:
            self._spool.seal_older_than(0)
            try:
                async with asyncio.timeout(self._drain_timeout):
                    while await self._write_oldest(once=True):
                        pass
            except (TimeoutError, StoreError):
                log.warning("stopping with %d bytes still spooled", self._spool.bytes)
            raise

    async def _write_oldest(self, *, once: bool = False) -> bool:
        segment = await asyncio.to_thread(self._spool.oldest)
        if segment is None:
            return False
        if once:
            await self._write(segment)
            self._metrics.points_written += segment.count
        else:
            await self._write_until_done(segment)
        self._spool.done(segment.n)
        return True

    async def _write(self, segment: Segment) -> None:
        if segment.count == 0:
            return
        if segment.points:
            await self._store.write(segment.points)
        elif isinstance(self._store, LineStore):
            await self._store.write_lines(segment.lines, segment.count)
        else:
            raise StoreError("the spool holds line protocol but the store does not take it")

    async def _write_until_done(self, segment: Segment) -> None:
        backoff = Backoff(first=0.2, cap=self._max_backoff)
        while True:
            raise_if_cancelling()
            started = time.monotonic()
            try:
                await self._write(segment)
            except StoreRejected as err:
                # The store wrote the rest; only the points it refused are lost, and
                # retrying them cannot help. Say so loudly.
                self._metrics.points_rejected += err.dropped
                self._metrics.points_written += segment.count - err.dropped
                log.error("store refused %d of %d points: %s", err.dropped, segment.count, err)
                return
            except StoreError as err:
                self._metrics.write_errors += 1
                wait = backoff.next()
                log.warning(
                    "store write failed (%s); %d bytes spooled; retrying in %.1fs",
                    err,
                    self._spool.bytes,
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            elapsed = time.monotonic() - started
            self._metrics.points_written += segment.count
            self._metrics.write_batches += 1
            self._metrics.last_batch_seconds = elapsed
            self._metrics.observe_batch(elapsed)
            return
