"""What the gateway knows of the sites, and what decoding a message yields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.base import Point
from stackpulse.kernel.topics import Channel, Kind

MAX_AHEAD = timedelta(minutes=5)
MAX_BEHIND = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class SiteIndex:
    """What the gateway must know of a site's layout to validate a message."""

    devices: Mapping[str, Kind]
    seats: Mapping[str, tuple[str, str]]  # device -> (seat id, zone)
    sections: Mapping[str, frozenset[str]]  # shelf device -> its section ids

    @classmethod
    def of(cls, layout: Layout) -> SiteIndex:
        return cls(
            devices=layout.devices(),
            seats={s.device: (s.id, s.zone) for s in layout.seats},
            sections={s.device: frozenset(x.id for x in s.sections) for s in layout.shelves},
        )


def index_sites(layouts: Iterable[Layout]) -> dict[str, SiteIndex]:
    return {layout.site: SiteIndex.of(layout) for layout in layouts}


def correct_clock(ts: datetime, received: datetime) -> tuple[datetime, bool]:
    """Protocol section 4: a device clock too far ahead or behind gives way to ours."""
    if ts - received > MAX_AHEAD or received - ts > MAX_BEHIND:
        return received, True
    return ts, False


@dataclass(slots=True)  # not frozen: built once per message on the hot path
class Accepted:
    """An accepted message: its store point, dedup key and normalized event (JSON)."""

    site: str
    kind: Kind
    device: str
    channel: Channel
    ts: datetime  # device time, or receive time when the device clock was off
    received: datetime
    point: Point
    key: tuple[str, str, str, int, int] | None  # (site, kind, device, boot, seq); None: status
    body: bytes  # the normalized event, JSON (kernel.models.Event)
    line: str | None = None  # the point in line protocol, when the decoder made it already

    @property
    def event(self) -> Event:
        return Event.model_validate_json(self.body)


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # short and stable: a metric label
    detail: str
    topic: str
    site: str | None
    kind: str | None
    device: str | None
    dead_letter: str  # topic to keep it on
    body: bytes  # the dead-letter payload (JSON)
