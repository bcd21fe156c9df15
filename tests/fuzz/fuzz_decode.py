"""Coverage-guided fuzzing of the gateway decoder (atheris), seeded from ./corpus.

    python3 -m tests.fuzz.fuzz_decode -max_total_time=60 tests/fuzz/corpus

An input is a topic, a newline, then the payload. The decoder must never raise: every
input is accepted, ignored (system output) or dead-lettered with a reason.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from gateway.decode import Accepted, Rejected, decode, index_sites
from kernel.layout import Layout

ROOT = "lib/v1"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SITES = index_sites(
    [
        Layout.model_validate(
            {
                "site": "main",
                "name": "Fuzz Library",
                "zones": [{"id": "f1", "name": "Floor 1", "floor": 1, "capacity": 10}],
                "gates": [{"device": "gate-1", "outer": "outside", "inner": "f1"}],
                "seats": [{"id": "f1-001", "device": "seat-0001", "zone": "f1"}],
                "shelves": [
                    {
                        "device": "shelf-1",
                        "zone": "f1",
                        "sections": [{"id": "1F-A01-1", "first": "A1", "last": "B99"}],
                    }
                ],
                "circulation": [{"device": "circ-1", "zone": "f1"}],
            }
        )
    ]
)


def split(data: bytes) -> tuple[str, bytes]:
    topic, _, payload = data.partition(b"\n")
    return topic.decode("utf-8", "replace"), payload


def check(data: bytes) -> Accepted | Rejected | None:
    topic, payload = split(data)
    result = decode(ROOT, topic, payload, NOW, SITES)
    if result is not None and not isinstance(result, Accepted | Rejected):
        raise AssertionError(f"decode returned {result!r}")
    if isinstance(result, Rejected) and not result.reason:
        raise AssertionError("a dead letter without a reason")
    return result


def main() -> None:
    import atheris  # type: ignore[import-not-found]  # optional: only for fuzz runs

    atheris.instrument_all()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
