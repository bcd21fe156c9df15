"""Demand over a sliding window, per title and per call-number class, and its store points.

A *title* groups the copies of one work: the items of one collection whose call numbers
agree once trailing volume and copy parts (``v. 2``, ``c.3``) are dropped and whose titles
agree once case, spacing and trailing ``/:;,.`` are ignored. Editions (the year) stay apart.

A *call-number class* is, for LC, the class letters and the integer part of the class
number (``QA76.73 .P98`` -> ``QA76``); for Dewey, the hundreds (``510.5 .S6`` -> ``500``).

Score of a title: the weighted signals of the window per copy, with WEIGHTS (a hold 3, a
checkout 2, an in-library use 1, a renewal 1, a checkin 0). Buying is suggested when holds
per copy reach ``holds_per_copy`` or in-library uses per copy reach ``uses_per_copy``.

Counts live in hourly buckets; a bucket is dropped once it is wholly older than the window
measured back from the newest time seen (a signal's or a ``now``), so memory is bounded by
the window's hours times the titles with signals, and the window is exact to the hour.
"""

from __future__ import annotations

import hashlib
import heapq
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, get_args

from stackpulse.kernel.callnumbers import CallNumberError, Scheme, parse
from stackpulse.kernel.catalog import CatalogItem
from stackpulse.kernel.schema import DEMAND_RANK, DEMAND_SIGNAL, to_ns
from stackpulse.kernel.store.base import Point
from stackpulse.services.inventory.model import (
    ClassDemand,
    DemandRow,
    InventorySettings,
    Signal,
    SignalKind,
)

__all__ = [
    "BUCKET",
    "DEMAND_RANK",
    "DEMAND_SIGNAL",
    "KINDS",
    "WEIGHTS",
    "Demand",
    "TitleKey",
    "base_call_number",
    "call_class",
    "rank_points",
    "signal_point",
    "title_key",
]

KINDS: Final[tuple[SignalKind, ...]] = get_args(SignalKind)
WEIGHTS: Final[Mapping[SignalKind, int]] = {
    "hold": 3,
    "checkout": 2,
    "use": 1,
    "renew": 1,
    "checkin": 0,  # a return says nothing about wanting the book; counted, not scored
}
BUCKET: Final = timedelta(hours=1)
CHECKPOINT_VERSION: Final = 1
UNCLASSED: Final = "?"  # a call number that does not parse (the catalog loader refuses those)

_KIND_AT: Final[dict[str, int]] = {kind: i for i, kind in enumerate(KINDS)}
_WEIGHT_VECTOR: Final = tuple(WEIGHTS[kind] for kind in KINDS)
_BUCKET_NS: Final = BUCKET // timedelta(microseconds=1) * 1_000
_NS_PER_S: Final = 1_000_000_000
_VOLUME_COPY = re.compile(r"(?:\s+[A-Za-z]{1,5}\.\s?\d{1,6})+\s*$")
_TITLE_TAIL = re.compile(r"[\s/:;,.]+$")

TitleKey = tuple[str, str, str]
"""(collection, call number without volume/copy parts in upper case, normalized title)."""
_Counts = list[int]  # per kind, in KINDS order


def base_call_number(call_number: str) -> str:
    """The call number without trailing volume and copy parts: ``QA76 .P98 2001 v. 2`` ->
    ``QA76 .P98 2001``."""
    text = " ".join(call_number.split())
    return _VOLUME_COPY.sub("", text) or text


def title_key(item: CatalogItem) -> TitleKey:
    title = _TITLE_TAIL.sub("", " ".join(item.title.split())).casefold()
    return (item.collection, base_call_number(item.call_number).upper(), title)


def call_class(call_number: str, scheme: Scheme) -> str:
    """LC class letters + integer class number (``QA76``), or the Dewey hundreds (``500``)."""
    try:
        cn = parse(call_number, scheme, cached=False)
    except CallNumberError:
        return UNCLASSED
    if scheme == "dewey":
        return f"{int(cn.parts[0].partition('.')[0]) // 100 * 100:03d}"
    letters = cn.parts[0].upper()
    if len(cn.parts) > 1 and cn.kinds[1] == "class":
        return letters + str(int(cn.parts[1].partition(".")[0]))
    return letters


def _class_of_key(shelf_key: str) -> str | None:
    """call_class() from a shelf-order key (kernel.callnumbers), without parsing again."""
    pieces = shelf_key.split("!", 2)
    if not pieces[0]:
        return None
    if pieces[0][0].isdigit():  # Dewey keys begin with the class number
        return f"{int(pieces[0].partition('.')[0]) // 100 * 100:03d}"
    if len(pieces) > 1 and pieces[1][:1].isdigit():
        return pieces[0].upper() + str(int(pieces[1].partition(".")[0]))
    return pieces[0].upper()


def _guess_scheme(call_number: str) -> Scheme:
    # Dewey numbers begin with a digit, LC ones with letters.
    return "dewey" if call_number.lstrip()[:1].isdigit() else "lc"


def _signal_ns(signal: Signal) -> int:
    """The signal's second, with a hash of the item in the sub-second digits.

    An in-library use is stamped with the sweep that saw the item back, so many items of
    one class share a timestamp; InfluxDB keeps one point per series and time. The hash
    keeps them apart, and a replay of the same signal overwrites itself.
    """
    digest = hashlib.blake2b(signal.item.encode(), digest_size=8).digest()
    seconds = to_ns(signal.at) // _NS_PER_S
    return seconds * _NS_PER_S + int.from_bytes(digest, "big") % _NS_PER_S


def signal_point(site: str, signal: Signal, item: CatalogItem, cls: str) -> Point:
    """A `demand_signal` point: item, title and call number are fields, never tags."""
    return Point(
        DEMAND_SIGNAL,
        {"site": site, "kind": signal.kind, "call_class": cls},
        {
            "item": signal.item,
            "title": item.title,
            "call_number": item.call_number,
            "collection": item.collection,
            "count": 1,
            "weight": WEIGHTS[signal.kind],
        },
        _signal_ns(signal),
    )


def rank_points(site: str, rows: Sequence[DemandRow], at: datetime, slots: int) -> list[Point]:
    """A `demand_rank` snapshot: one point per rank 01..slots; empty slots have copies 0.

    Every slot is written each time so that a rank the list no longer reaches shows as
    empty rather than keeping an older snapshot's title (the panel hides copies 0).
    """
    if not 0 < slots < 100:
        raise ValueError(f"slots must be 1..99, got {slots}")
    if len(rows) > slots:
        raise ValueError(f"{len(rows)} rows do not fit {slots} slots")
    ts = to_ns(at)
    points = []
    for rank in range(1, slots + 1):
        fields: dict[str, float | int | str | bool]
        if rank <= len(rows):
            row = rows[rank - 1]
            fields = {
                "title": row.title,
                "call_number": row.call_number,
                "call_class": row.call_class,
                "copies": row.copies,
                "score": float(row.score),
                "suggest": row.suggest_purchase,
                "reason": row.reason or "",
            }
            fields.update({kind: row.signals.get(kind, 0) for kind in KINDS})
        else:
            fields = {"title": "", "call_number": "", "call_class": "", "copies": 0}
            fields.update({"score": 0.0, "suggest": False, "reason": ""})
            fields.update(dict.fromkeys(KINDS, 0))
        points.append(Point(DEMAND_RANK, {"site": site, "rank": f"{rank:02d}"}, fields, ts))
    return points


@dataclass(frozen=True, slots=True)
class _Title:
    title: str  # as the first copy (in shelf order) spells it
    call_number: str  # of the first copy
    call_class: str
    copies: int


def _bucket(at: datetime) -> int:
    if at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone")
    return to_ns(at) // _BUCKET_NS


def _bucket_start(index: int) -> datetime:
    return datetime.fromtimestamp(0, UTC) + index * BUCKET


def _plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def _reason(counts: Mapping[str, int], copies: int, settings: InventorySettings) -> str | None:
    why = []
    holds, uses = counts["hold"], counts["use"]
    on = _plural(copies, "copy", "copies")
    if holds / copies >= settings.holds_per_copy:
        why.append(
            f"{_plural(holds, 'hold')} on {on}"
            f" ({holds / copies:.3g} per copy, threshold {settings.holds_per_copy:g})"
        )
    if uses / copies >= settings.uses_per_copy:
        why.append(
            f"{_plural(uses, 'in-library use')} on {on}"
            f" ({uses / copies:.3g} per copy, threshold {settings.uses_per_copy:g})"
        )
    return "; ".join(why) or None


def _by_kind(counts: Sequence[int]) -> dict[str, int]:
    return {kind: counts[i] for i, kind in enumerate(KINDS)}


def _weighted(counts: Sequence[int]) -> int:
    return sum(map(operator.mul, _WEIGHT_VECTOR, counts))


def _add_into(target: dict[Any, _Counts], key: Any, counts: Sequence[int], sign: int = 1) -> None:
    mine = target.setdefault(key, [0] * len(KINDS))
    for i, n in enumerate(counts):
        mine[i] += sign * n
    if not any(mine):
        del target[key]


class Demand:
    """Windowed demand of one site's catalog. Pure: every time is an argument.

    `now` and signal times should not go backwards by more than the window: what has
    left the window is gone, and a signal older than the window is refused.
    """

    def __init__(
        self,
        catalog: Mapping[str, CatalogItem],
        settings: InventorySettings,
        schemes: Mapping[str, Scheme] | None = None,
    ) -> None:
        """`schemes`: each collection's call-number scheme (`Layout.collections`);
        a collection not in it is guessed from its call numbers."""
        self._settings = settings
        self._catalog = catalog
        self._item_key: dict[str, TitleKey] = {}
        self._item_class: dict[str, str] = {}
        self._titles: dict[TitleKey, _Title] = {}
        self._class_copies: dict[str, int] = {}
        self._index(catalog.values(), schemes or {})
        self._buckets: dict[int, dict[TitleKey, _Counts]] = {}
        self._totals: dict[TitleKey, _Counts] = {}
        self._horizon: datetime | None = None
        self._oldest: int | None = None  # the oldest bucket the window reaches

    def _index(self, items: Iterable[CatalogItem], schemes: Mapping[str, Scheme]) -> None:
        copies: dict[TitleKey, list[CatalogItem]] = {}
        for it in items:
            key = title_key(it)
            cls = _class_of_key(it.shelf_key) if it.shelf_key else None
            if cls is None:
                scheme = schemes.get(it.collection) or _guess_scheme(it.call_number)
                cls = call_class(it.call_number, scheme)
            self._item_key[it.item] = key
            self._item_class[it.item] = cls
            self._class_copies[cls] = self._class_copies.get(cls, 0) + 1
            copies.setdefault(key, []).append(it)
        for key, group in copies.items():
            first = group[0]
            if len(group) > 1:
                first = min(group, key=lambda i: (i.shelf_key, i.call_number, i.item))
            cls = self._item_class[first.item]
            self._titles[key] = _Title(first.title, first.call_number, cls, len(group))

    # -- input ---------------------------------------------------------------------

    def add(self, signal: Signal) -> bool:
        """Count one signal; False (and nothing counted) for an item not in the catalog,
        an unknown kind, or a time already out of the window."""
        key = self._item_key.get(signal.item)
        kind_at = _KIND_AT.get(signal.kind)
        if key is None or kind_at is None:
            return False
        bucket = _bucket(signal.at)
        if self._oldest is not None and bucket < self._oldest:
            return False
        one = [0] * len(KINDS)
        one[kind_at] = 1
        _add_into(self._buckets.setdefault(bucket, {}), key, one)
        _add_into(self._totals, key, one)
        self._advance(signal.at)
        return True

    def record(self, site: str, signals: Iterable[Signal]) -> list[Point]:
        """add() each signal; the `demand_signal` points of every catalogued one to store
        (also of one too old to count: the store keeps history, the window does not)."""
        points = []
        for signal in signals:
            self.add(signal)
            point = self.signal_point(site, signal)
            if point is not None:
                points.append(point)
        return points

    def signal_point(self, site: str, signal: Signal) -> Point | None:
        """The signal's `demand_signal` point; None for an item not in the catalog."""
        item = self._catalog.get(signal.item)
        if item is None or signal.kind not in _KIND_AT:
            return None
        return signal_point(site, signal, item, self._item_class[signal.item])

    # -- output --------------------------------------------------------------------

    def ranked(self, now: datetime, limit: int = 20) -> list[DemandRow]:
        """Titles with signals in the window ending at `now`, highest score first
        (ties: more signals, then title and call number)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        scored = []
        for key, counts in self._counts_at(now).items():
            info = self._titles[key]
            score = round(_weighted(counts) / info.copies, 3)
            # The key is unique, so the counts after it are never compared.
            scored.append((-score, -sum(counts), info.title, info.call_number, key, counts))
        top = heapq.nsmallest(limit, scored)
        return [self._row(key, counts, -score) for score, _, _, _, key, counts in top]

    def _row(self, key: TitleKey, counts: Sequence[int], score: float) -> DemandRow:
        info = self._titles[key]
        signals = _by_kind(counts)
        reason = _reason(signals, info.copies, self._settings)
        return DemandRow(
            title=info.title,
            call_number=info.call_number,
            call_class=info.call_class,
            copies=info.copies,
            score=score,
            signals=signals,
            suggest_purchase=reason is not None,
            reason=reason,
        )

    def classes(self, now: datetime) -> list[ClassDemand]:
        """Call-number classes with signals in the window, highest score first.

        `score` is the class's weighted signals (not per copy); `per_copy` divides by the
        class's copies in the catalog.
        """
        sums: dict[str, _Counts] = {}
        titles: dict[str, int] = {}
        for key, counts in self._counts_at(now).items():
            cls = self._titles[key].call_class
            _add_into(sums, cls, counts)
            titles[cls] = titles.get(cls, 0) + 1
        out = []
        for cls, counts in sums.items():
            copies = self._class_copies[cls]
            score = _weighted(counts)
            out.append(
                ClassDemand(
                    call_class=cls,
                    copies=copies,
                    titles=titles[cls],
                    score=float(score),
                    per_copy=round(score / copies, 3),
                    signals=_by_kind(counts),
                )
            )
        out.sort(key=lambda c: (-c.score, c.call_class))
        return out

    # -- the window ------------------------------------------------------------------

    def _advance(self, at: datetime) -> None:
        """Move the newest time seen to `at` if later, dropping buckets that left the window."""
        if self._horizon is not None and at <= self._horizon:
            return
        self._horizon = at
        oldest = _bucket(at - self._settings.demand_window)
        if oldest == self._oldest:
            return
        self._oldest = oldest
        for bucket in [b for b in self._buckets if b < oldest]:
            for key, counts in self._buckets.pop(bucket).items():
                _add_into(self._totals, key, counts, -1)

    def _counts_at(self, now: datetime) -> Mapping[TitleKey, Sequence[int]]:
        """Counts per title in the window ending at `now` (buckets after now left out).

        The running totals themselves when nothing is later than `now`: read, don't keep.
        """
        self._advance(now)
        current = _bucket(now)
        later = [b for b in self._buckets if b > current]
        if not later:
            return self._totals
        counts = {k: list(v) for k, v in self._totals.items()}
        for bucket in later:
            for key, c in self._buckets[bucket].items():
                _add_into(counts, key, c, -1)
        return counts

    # -- restarts --------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """JSON-ready state; `restore` takes it back (also into a newer catalog)."""
        return {
            "version": CHECKPOINT_VERSION,
            "kinds": list(KINDS),
            "bucket_seconds": int(BUCKET.total_seconds()),
            "horizon": None if self._horizon is None else self._horizon.isoformat(),
            "buckets": [
                {
                    "start": _bucket_start(b).isoformat(),
                    "titles": [[*key, list(c)] for key, c in sorted(self._buckets[b].items())],
                }
                for b in sorted(self._buckets)
            ],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace the state with a checkpoint's. Titles the catalog no longer has, and
        buckets the (maybe shorter) window no longer reaches, are dropped.

        Raises ValueError naming what is wrong with a checkpoint this version cannot read.
        """
        try:
            buckets, horizon = _read_checkpoint(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"demand checkpoint unusable: {err}") from None
        self._buckets, self._totals, self._horizon, self._oldest = {}, {}, None, None
        for bucket, titles in buckets.items():
            for key, counts in titles.items():
                if key in self._titles:
                    _add_into(self._buckets.setdefault(bucket, {}), key, counts)
                    _add_into(self._totals, key, counts)
        self._buckets = {b: t for b, t in self._buckets.items() if t}
        if horizon is not None:
            self._advance(horizon)


def _read_checkpoint(
    data: Mapping[str, Any],
) -> tuple[dict[int, dict[TitleKey, _Counts]], datetime | None]:
    if data.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"version {data.get('version')!r}, this code reads {CHECKPOINT_VERSION}")
    if data.get("bucket_seconds") != int(BUCKET.total_seconds()):
        raise ValueError(f"bucket_seconds {data.get('bucket_seconds')!r} is not {BUCKET}")
    kinds = [str(k) for k in data["kinds"]]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown signal kinds {sorted(unknown)}")
    horizon = None if data["horizon"] is None else datetime.fromisoformat(data["horizon"])
    if horizon is not None and horizon.utcoffset() is None:
        raise ValueError(f"horizon {horizon.isoformat()} has no time zone")
    buckets: dict[int, dict[TitleKey, _Counts]] = {}
    for entry in data["buckets"]:
        titles = buckets.setdefault(_bucket(datetime.fromisoformat(entry["start"])), {})
        for collection, call_number, title, counts in entry["titles"]:
            if len(counts) != len(kinds) or not all(isinstance(n, int) and n >= 0 for n in counts):
                raise ValueError(f"counts {counts!r} do not match kinds {kinds}")
            mine = [0] * len(KINDS)
            for kind, n in zip(kinds, counts, strict=True):
                mine[_KIND_AT[kind]] = n
            _add_into(titles, (str(collection), str(call_number), str(title)), mine)
    return buckets, horizon
