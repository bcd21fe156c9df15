"""Per-client token buckets in front of the API: 429 with Retry-After past the limit."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate` requests per second on average, bursts of up to `burst`; rate 0 turns it off."""

    rate: float = 20.0
    burst: int = 100
    max_clients: int = 10_000  # tracked at once; the least recently seen is forgotten first

    def __post_init__(self) -> None:
        if self.rate < 0 or not math.isfinite(self.rate):
            raise ValueError(f"rate limit {self.rate!r}: requests per second must be >= 0")
        if self.burst < 1 or self.max_clients < 1:
            raise ValueError("rate limit burst and max_clients must be at least 1")

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class TooManyRequests(BaseModel):
    detail: str


def limited_responses(limit: RateLimit | None) -> dict[int | str, dict[str, Any]]:
    """The 429 a route under the limit may answer, for its `responses=`; none when off."""
    if limit is None or not limit.enabled:
        return {}
    retry_after = {
        "description": "Whole seconds until a request may go",
        "schema": {"type": "integer", "minimum": 1},
    }
    return {
        429: {
            "model": TooManyRequests,
            "description": "Too many requests from this client; retry after Retry-After",
            "headers": {"Retry-After": retry_after},
        }
    }


class Buckets:
    """One token bucket per key in bounded memory (an LRU of `max_clients` keys)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """0 if a request from `key` may go now, else the seconds until it may."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + (now - at) * self.limit.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.limit.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.limit.max_clients:
            self._buckets.popitem(last=False)
        return wait


class RateLimitMiddleware:
    """Limits HTTP requests under `prefix` per client address (the peer uvicorn reports)."""

    def __init__(
        self,
        app: ASGIApp,
        limit: RateLimit,
        *,
        prefix: str = "/api/",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.prefix = prefix
        self.buckets = Buckets(limit, clock) if limit.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(str(client[0]) if client else "unknown")
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        response = JSONResponse(
            {"detail": f"too many requests; retry after {retry} s"},
            status_code=429,
            headers={"Retry-After": str(retry)},
        )
        await response(scope, receive, send)
