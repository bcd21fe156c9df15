"""Small asyncio helpers the long-running loops share."""

from __future__ import annotations

import asyncio
import random


def raise_if_cancelling() -> None:
    """Stop a loop whose cancellation was swallowed.

    On Python 3.11, `asyncio.wait_for` (used inside aiomqtt) returns the result instead of
    raising when a cancellation races with completion, so a cancelled task can keep
    looping and a TaskGroup never finishes. The task still counts the request, so loops
    check it once per turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Backoff:
    """Jittered exponential backoff for reconnect and retry loops.

    Each `next()` is the current step times a random factor in [0.5, 1.5), so that many
    clients losing the same server do not come back in lock step; the step doubles up to
    `cap` and `reset()` starts again after a success.
    """

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self._first = first
        self._cap = cap
        self._step = first

    def reset(self) -> None:
        self._step = self._first

    def next(self) -> float:
        wait = self._step * random.uniform(0.5, 1.5)
        self._step = min(self._step * 2, self._cap)
        return wait
