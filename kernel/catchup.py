"""Catching up from the store: the accepted device messages of a time range, as Events.

The gateway stores every message it accepts (kernel.schema) before the services can miss
it, so the store is also the log a service reads when its broker session cannot give it
everything: a first start, a session the broker dropped, a service down for longer than
the broker keeps messages. Points carry what the Events carried (fields and tags), and
their timestamps are fixed at capture, so what is read back is what was published, to
the millisecond.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.schema import CIRC, DEVICE_STATUS, GATE, SEAT, SHELF
from stackpulse.kernel.store.base import Row, SeriesStore
from stackpulse.kernel.store.influxql import Agg, Query, TagEq
from stackpulse.kernel.topics import Channel, Kind

# What each kind's data point holds, read back as its payload.
_DATA: dict[Kind, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    Kind.GATE: (GATE, ("in_total", "out_total", "boot", "seq", "clock_corrected"), ("device",)),
    Kind.SEAT: (SEAT, ("presence", "battery", "boot", "seq", "clock_corrected"), ("device",)),
    Kind.SHELF: (
        SHELF,
        ("sweep", "part", "parts", "items", "rssi", "boot", "seq", "clock_corrected"),
        ("device", "section"),
    ),
    Kind.CIRC: (CIRC, ("item", "boot", "seq", "clock_corrected"), ("device", "action")),
}
_STATUS_FIELDS = ("online", "boot", "fw")


def _ms(ts: datetime) -> datetime:
    """Back to the millisecond: the digits below it hold the message's seq (schema)."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def _num(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return int(value)


def _payload(kind: Kind, row: Row) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ts": format_ts(row["time"]),
        "boot": _num(row["boot"]),
        "seq": _num(row["seq"]),
    }
    if kind is Kind.GATE:
        payload |= {"in": _num(row["in_total"]), "out": _num(row["out_total"])}
    elif kind is Kind.SEAT:
        payload["presence"] = row["presence"]
        if row.get("battery") is not None:
            payload["battery"] = float(row["battery"])
    elif kind is Kind.SHELF:
        ids = [i for i in str(row.get("items") or "").split(",") if i]
        levels = str(row.get("rssi") or "").split(",") if row.get("rssi") else []
        reads: list[dict[str, Any]] = []
        for n, item in enumerate(ids):
            level = levels[n] if n < len(levels) else ""
            reads.append({"id": item, "rssi": float(level)} if level else {"id": item})
        payload |= {
            "sweep": _num(row["sweep"]),
            "section": row["section"],
            "part": _num(row["part"]),
            "parts": _num(row["parts"]),
            "items": reads,
        }
    else:
        payload |= {"item": row["item"], "action": row["action"]}
    return payload


def _data_event(site: str, kind: Kind, row: Row) -> Event:
    ts = _ms(row["time"])
    row = {**row, "time": ts}
    return Event(
        site=site,
        kind=kind,
        device=row["device"],
        channel=Channel.DATA,
        ts=ts,
        received=ts,
        clock_corrected=bool(row.get("clock_corrected")),
        payload=_payload(kind, row),
    )


def _status_event(site: str, row: Row) -> Event:
    ts = _ms(row["time"])
    payload: dict[str, Any] = {"online": bool(row["online"])}
    if row.get("boot") is not None:
        payload["boot"] = _num(row["boot"])
    if row.get("fw") is not None:
        payload["fw"] = str(row["fw"])
    return Event(
        site=site,
        kind=Kind(row["kind"]),
        device=row["device"],
        channel=Channel.STATUS,
        ts=ts,
        received=ts,
        payload=payload,
    )


def queries(
    site: str, kinds: Iterable[Kind], start: datetime, end: datetime, *, status: bool
) -> list[tuple[Query, Callable[[Row], Event]]]:
    """The typed queries of one site and time range, each with its row -> Event."""
    out: list[tuple[Query, Callable[[Row], Event]]] = []
    where = (TagEq("site", site),)
    wanted = set(kinds)
    for kind, (measurement, fields, tags) in _DATA.items():
        if kind not in wanted:
            continue
        q = Query(
            measurement,
            tuple(Agg(None, f) for f in fields),
            where=where,
            start=start,
            end=end,
            group_by_tags=tags,
        )
        out.append((q, functools.partial(_data_event, site, kind)))
    if status:
        q = Query(
            DEVICE_STATUS,
            tuple(Agg(None, f) for f in _STATUS_FIELDS),
            where=where,
            start=start,
            end=end,
            group_by_tags=("kind", "device"),
        )
        out.append((q, functools.partial(_status_event, site)))
    return out


async def stored_events(
    store: SeriesStore,
    site: str,
    kinds: Sequence[Kind],
    start: datetime,
    end: datetime,
    *,
    status: bool = True,
    chunk: timedelta = timedelta(minutes=10),
    on_bad_row: Callable[[str], None] | None = None,
) -> AsyncIterator[list[Event]]:
    """The site's stored events of `kinds` in [start, end), oldest first, a chunk at a time.

    Status events (birth messages and Last Wills) come with them when `status`, for the
    devices of every kind. A row that does not make an Event (written by hand, say) is
    skipped and named to `on_bad_row`. StoreError propagates: the caller retries.
    """
    if not kinds and not status:
        return
    at = start
    while at < end:
        upto = min(end, at + chunk)
        merged: list[tuple[datetime, int, Event]] = []
        for n, (q, make) in enumerate(queries(site, kinds, at, upto, status=status)):
            for row in await store.query(q):
                try:
                    ev = make(row)
                except (KeyError, TypeError, ValueError) as err:
                    if on_bad_row is not None:
                        on_bad_row(f"{q.measurement} at {row.get('time')}: {err}")
                    continue
                merged.append((ev.ts, n, ev))
        if merged:
            # Each query's rows come in time order; across kinds, merge by time.
            merged.sort(key=lambda t: (t[0], t[1]))
            yield [ev for _, _, ev in merged]
        at = upto


__all__ = ["queries", "stored_events"]
