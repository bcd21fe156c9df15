"""Gateway counters: what came in, what was accepted, dropped and written."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class GatewayMetrics:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0  # the system's own output seen on a device subscription
    dead_lettered: Counter[str] = field(default_factory=Counter)
    points_written: int = 0
    points_rejected: int = 0
    write_batches: int = 0
    write_errors: int = 0
    last_batch_seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "dead_lettered": dict(self.dead_lettered),
            "points_written": self.points_written,
            "points_rejected": self.points_rejected,
            "write_batches": self.write_batches,
            "write_errors": self.write_errors,
            "last_batch_seconds": self.last_batch_seconds,
        }
