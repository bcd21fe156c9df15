"""Every input in the fuzz seed corpus is accepted, ignored or dead-lettered; none raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackpulse.gateway.decode import Accepted, Rejected
from tests.fuzz.fuzz_decode import check

CORPUS = sorted((Path(__file__).parent / "fuzz" / "corpus").iterdir())
VALID = {"valid_seat", "valid_gate", "valid_shelf", "status", "duplicate_keys"}
CLOCK_CORRECTED = {"year_0001", "year_9999"}  # accepted at the receiver's time


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_input_is_accepted_or_dead_lettered(path: Path) -> None:
    result = check(path.read_bytes())
    if path.name in VALID:
        assert isinstance(result, Accepted)
    elif path.name in CLOCK_CORRECTED:
        assert isinstance(result, Accepted) and result.event.clock_corrected
    elif path.name == "system_output":
        assert result is None
    else:
        assert isinstance(result, Rejected), path.name
        assert result.reason != "internal", (path.name, result.detail)


def test_corpus_is_there() -> None:
    assert len(CORPUS) >= 25
