"""Accepted points on local disk, in arrival order, until the store has them.

Every accepted point is appended to the open segment file before its MQTT message is
acknowledged, so neither a store outage nor a killed gateway loses it: a segment is
deleted only after the store took all of it, and segments left by a previous run are
replayed first, in order. Replay is idempotent (a point's series and capture time fix
its identity in the store).

A segment file is a run of frames, one per append: a 4-byte big-endian length, then the
frame. A frame cut short by a crash is ignored on replay; its messages were never
acknowledged, so the broker delivers them again. What a frame holds depends on the store:

- ``.lp`` (a store that takes line protocol, i.e. InfluxDB): the lines themselves, so
  the writer sends a segment as it lies on disk, with no decoding or encoding;
- ``.pts`` (any other store): a `marshal`-encoded list of
  ``(measurement, tags, fields, ts_ns)``.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stackpulse.kernel.store.base import Point
from stackpulse.kernel.store.lineprotocol import encode_point

log = logging.getLogger("stackpulse.gateway.spool")

_LEN = struct.Struct(">I")
LINES, POINTS = ".lp", ".pts"


def encode_frame(
    points: Sequence[Point], codec: str, lines: Sequence[str | None] = ()
) -> tuple[bytes, int]:
    """One frame of `points`, and how many points could not be encoded (line protocol).

    `lines`, if given, holds each point's line protocol where the caller has it already.
    """
    if codec == POINTS:
        body = marshal.dumps(
            [(p.measurement, dict(p.tags), dict(p.fields), p.ts_ns) for p in points]
        )
        return _LEN.pack(len(body)) + body, 0
    out: list[str] = []
    refused = 0
    for i, p in enumerate(points):
        line = lines[i] if i < len(lines) else None
        if line is not None:
            out.append(line)
            continue
        try:
            out.append(encode_point(p))
        except ValueError as err:  # the store would refuse it too; say so once here
            refused += 1
            log.error("not storing a point that line protocol cannot carry: %s", err)
    if not out:
        return b"", refused
    body = "\n".join(out).encode()
    return _LEN.pack(len(body)) + body, refused


def decode_frames(data: bytes) -> list[bytes]:
    """The whole frames of a segment file; a last one cut short by a crash is left out."""
    frames: list[bytes] = []
    pos, end = 0, len(data)
    while pos + 4 <= end:
        (n,) = _LEN.unpack_from(data, pos)
        if pos + 4 + n > end:
            break  # cut short by a crash: never acknowledged, the broker sends it again
        frames.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return frames


@dataclass(frozen=True, slots=True)
class Segment:
    """A sealed segment: line protocol (`lines`, `count` lines) or `points`."""

    n: int
    count: int
    lines: bytes = b""
    points: tuple[Point, ...] = ()


class SpoolLocked(RuntimeError):
    """Another gateway process is using this spool directory."""


class Spool:
    """Segment files under one directory; appends from any thread, reads from the writer.

    One process per directory: an exclusive lock on ``.lock`` is held while it is open.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        segment_points: int = 5000,
        max_bytes: int = 1 << 30,
        codec: str = POINTS,
    ) -> None:
        if codec not in (LINES, POINTS):
            raise ValueError(f"unknown spool codec {codec!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(f"spool {self.directory} is in use by another process") from None
        self.codec = codec
        self.segment_points = segment_points
        self.max_bytes = max_bytes
        self.refused = 0  # points line protocol cannot carry (never stored)
        self._lock = threading.Lock()
        self._sealed: deque[int] = deque()
        self._bytes = 0
        other = LINES if codec == POINTS else POINTS
        if any(self.directory.glob("*" + other)):
            log.error(
                "spool %s holds %s segments of another store; they are left alone",
                self.directory,
                other,
            )
        existing = sorted(int(p.stem) for p in self.directory.glob("*" + codec))
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
        return self.directory / f"{n:012d}{self.codec}"

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
        self.append_many([point])

    def append_many(self, points: Sequence[Point], lines: Sequence[str | None] = ()) -> None:
        """Put several points on disk with one write; a segment may run a batch over.

        `lines`: each point's line protocol where the caller has it already (optional).
        """
        if not points:
            return
        frame, refused = encode_frame(points, self.codec, lines)
        with self._lock:
            self.refused += refused
            if not frame:
                return
            if self._fd < 0:
                self._open_n = self._next
                self._next += 1
                self._fd = os.open(
                    self._path(self._open_n), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
                )
                self._opened_at = time.monotonic()
            written = os.write(self._fd, frame)
            if written != len(frame):  # a full disk: the caller must not acknowledge these
                raise OSError(f"spool {self.directory}: wrote {written} of {len(frame)} bytes")
            self._bytes += len(frame)
            self._open_points += len(points) - refused
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

    def oldest(self) -> Segment | None:
        """The oldest sealed segment, or None."""
        with self._lock:
            if not self._sealed:
                self.sealed_event.clear()
                return None
            n = self._sealed[0]
        frames = decode_frames(self._path(n).read_bytes())
        if self.codec == LINES:
            lines = b"\n".join(frames)
            return Segment(n, lines.count(b"\n") + 1 if lines else 0, lines=lines)
        points = tuple(
            Point(m, t, f, ts) for frame in frames for m, t, f, ts in marshal.loads(frame)
        )
        return Segment(n, len(points), points=points)

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
