"""Batches accepted points into the time-series store; retries, never drops a good point."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence

from gateway.metrics import GatewayMetrics
from kernel.aio import raise_if_cancelling
from kernel.store.base import Point, SeriesStore, StoreError, StoreRejected

log = logging.getLogger("stackpulse.gateway.writer")


class BatchWriter:
    """A bounded queue in front of the store: producers wait when it is full (back-pressure)."""

    def __init__(
        self,
        store: SeriesStore,
        metrics: GatewayMetrics,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.5,
        max_queued: int = 50_000,
        max_backoff: float = 30.0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_backoff = max_backoff
        self._queue: asyncio.Queue[Point] = asyncio.Queue(maxsize=max_queued)

    async def put(self, point: Point) -> None:
        await self._queue.put(point)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Write batches until cancelled; on cancel, flush what is queued (bounded in time)."""
        try:
            while True:
                raise_if_cancelling()
                batch = await self._collect()
                if batch:
                    await self._write_until_done(batch)
        except asyncio.CancelledError:
            async with asyncio.timeout(10.0):
                await self._drain()
            raise

    async def _drain(self) -> None:
        batch = self._take_nowait(self._queue.qsize())
        for i in range(0, len(batch), self._batch_size):
            await self._write_once(batch[i : i + self._batch_size])

    async def _collect(self) -> list[Point]:
        first = await self._queue.get()
        batch = [first]
        deadline = time.monotonic() + self._flush_interval
        while len(batch) < self._batch_size:
            batch.extend(self._take_nowait(self._batch_size - len(batch)))
            remaining = deadline - time.monotonic()
            if len(batch) >= self._batch_size or remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        return batch

    def _take_nowait(self, n: int) -> list[Point]:
        out: list[Point] = []
        while len(out) < n:
            try:
                out.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return out

    async def _write_until_done(self, batch: list[Point]) -> None:
        delay = 0.2
        while True:
            raise_if_cancelling()
            try:
                await self._write_once(batch)
                return
            except StoreError as err:
                self._metrics.write_errors += 1
                log.warning("store write failed (%s); retrying in %.1fs", err, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, self._max_backoff)

    async def _write_once(self, batch: Sequence[Point]) -> None:
        started = time.monotonic()
        try:
            await self._store.write(batch)
        except StoreRejected as err:
            # The store wrote the rest of the batch; only the points it refused are lost,
            # and retrying them cannot help. Say so loudly.
            self._metrics.points_rejected += err.dropped
            log.error("store refused %d of %d points: %s", err.dropped, len(batch), err)
            self._metrics.points_written += len(batch) - err.dropped
            return
        self._metrics.points_written += len(batch)
        self._metrics.write_batches += 1
        self._metrics.last_batch_seconds = time.monotonic() - started
