"""Coverage-guided fuzzing of the gateway decoder (atheris), seeded from ./corpus.

    python3 -m tests.fuzz.fuzz_decode -max_total_time=60 tests/fuzz/corpus

An input is a topic, a newline, then the payload. The decoder must never raise: every
input is accepted, ignored (system output) or dead-lettered with a reason.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from stackpulse.gateway.decode import Accepted, Rejected, decode, index_sites
from tests.support.layouts import ONE_OF_EACH

ROOT = "lib/v1"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SITES = index_sites([ONE_OF_EACH])


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
