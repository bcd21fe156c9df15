"""Accepted points on local disk, in arrival order, until the store has them.

Every accepted point is appended to the open segment file before its MQTT message is
acknowledged, so neither a store outage nor a killed gateway loses it: a segment is
deleted only after the store took all of it, and segments left by a previous run are
replayed first, in order. Replay is idempotent (a point's series and capture time fix
its identity in the store).

Segment file: records of a 4-byte big-endian length and a `marshal`-encoded
``(measurement, tags, fields, ts_ns)``. A record cut short by a crash is ignored on
replay; its message was never acknowledged, so the broker delivers it again.
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import struct
import threading
import time
from collections import deque
from pathlib import Path

from kernel.store.base import Point

log = logging.getLogger("stackpulse.gateway.spool")

_LEN = struct.Struct(">I")
_SUFFIX = ".spool"


def encode_record(point: Point) -> bytes:
    body = marshal.dumps((point.measurement, dict(point.tags), dict(point.fields), point.ts_ns))
    return _LEN.pack(len(body)) + body


def decode_records(data: bytes) -> list[Point]:
    points: list[Point] = []
    pos, end = 0, len(data)
    while pos + 4 <= end:
        (n,) = _LEN.unpack_from(data, pos)
        if pos + 4 + n > end:
            break  # cut short by a crash: never acknowledged, the broker sends it again
        m, tags, fields, ts = marshal.loads(data[pos + 4 : pos + 4 + n])
        points.append(Point(m, tags, fields, ts))
        pos += 4 + n
    return points


class SpoolLocked(RuntimeError):
    """Another gateway process is using this spool directory."""


class Spool:
    """Segment files under one directory; appends from any thread, reads from the writer.

    One process per directory: an exclusive lock on ``.lock`` is held while it is open.
    """

    def __init__(
        self, directory: str | Path, *, segment_points: int = 5000, max_bytes: int = 1 << 30
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(f"spool {self.directory} is in use by another process") from None
        self.segment_points = segment_points
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._sealed: deque[int] = deque()
        self._bytes = 0
        existing = sorted(int(p.stem) for p in self.directory.glob("*" + _SUFFIX))
        for n in existing:  # left by an earlier run: replay them first, in order
            self._sealed.append(n)
            self._bytes += self._path(n).stat().st_size
        if existing:
            log.warning(
                "replaying %d spooled segments (%d bytes) left by an earlier run",
                len(existing),
                self._bytes,
            )
        self._next = (existing[-1] + 1) if existing else 1
        self._fd = -1
        self._open_n = 0
        self._open_points = 0
        self._opened_at = 0.0
        self.sealed_event = threading.Event()

    def _path(self, n: int) -> Path:
        return self.directory / f"{n:012d}{_SUFFIX}"

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return self._bytes >= self.max_bytes

    @property
    def sealed_segments(self) -> int:
        return len(self._sealed)

    @property
    def open_points(self) -> int:
        return self._open_points

    def append(self, point: Point) -> None:
        """Put one point on disk (in the OS's page cache: survives a killed process)."""
        record = encode_record(point)
        with self._lock:
            if self._fd < 0:
                self._open_n = self._next
                self._next += 1
                self._fd = os.open(
                    self._path(self._open_n), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
                )
                self._opened_at = time.monotonic()
            os.write(self._fd, record)
            self._bytes += len(record)
            self._open_points += 1
            if self._open_points >= self.segment_points:
                self._seal_locked()

    def seal_older_than(self, age: float) -> None:
        """Close the open segment if it has points and was opened `age` seconds ago."""
        with self._lock:
            if self._fd >= 0 and time.monotonic() - self._opened_at >= age:
                self._seal_locked()

    def _seal_locked(self) -> None:
        os.close(self._fd)
        self._fd = -1
        self._sealed.append(self._open_n)
        self._open_points = 0
        self.sealed_event.set()

    def oldest(self) -> tuple[int, list[Point]] | None:
        """The oldest sealed segment and its points, or None."""
        with self._lock:
            if not self._sealed:
                self.sealed_event.clear()
                return None
            n = self._sealed[0]
        return n, decode_records(self._path(n).read_bytes())

    def done(self, n: int) -> None:
        """The store has every point of segment `n`: forget it."""
        with self._lock:
            if not self._sealed or self._sealed[0] != n:
                raise RuntimeError(f"segment {n} is not the oldest sealed one")
            self._sealed.popleft()
            path = self._path(n)
            self._bytes -= path.stat().st_size
            path.unlink()

    def close(self) -> None:
        """Seal what is open (it stays on disk for the next run) and release the directory."""
        with self._lock:
            if self._fd >= 0:
                self._seal_locked()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1
