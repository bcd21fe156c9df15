"""Small asyncio helpers the long-running loops share."""

from __future__ import annotations

import asyncio


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
