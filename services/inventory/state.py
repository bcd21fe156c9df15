"""The inventory's per-item state as compact columns, and its JSON checkpoint form.

Per item there are only dict entries of small ints and shared floats (device times in
epoch seconds): no per-item objects, so a million items fit in well under a gigabyte.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast, get_args

from stackpulse.kernel.catalog import CatalogItem
from stackpulse.services.inventory.model import Signal, SignalKind
from stackpulse.services.inventory.sweeps import WEAKEST, OpenSweep, Sections

FORMAT = "stackpulse.inventory"
VERSION = 1
SIGNAL_KINDS: frozenset[str] = frozenset(get_args(SignalKind))
T = TypeVar("T")
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


class CheckpointError(ValueError):
    """A checkpoint that cannot be taken up; the message says what is wrong with it."""


@dataclass(slots=True)
class State:
    """Everything the inventory knows; item keys are catalog item ids."""

    last_sid: dict[str, int] = field(default_factory=dict)  # section last placed in
    last_ts: dict[str, float] = field(default_factory=dict)  # ... and when
    absent: dict[str, int] = field(default_factory=dict)  # full sweeps of its place unheard
    away: dict[str, int] = field(default_factory=dict)  # heard sweeps in a row away from home
    away_since: dict[str, float] = field(default_factory=dict)  # first sweep of that run
    home: dict[str, int] = field(default_factory=dict)  # misplaced, heard sweeps in a row home
    misplaced: dict[str, float] = field(default_factory=dict)  # open finding -> opened at
    missing: dict[str, float] = field(default_factory=dict)  # open finding -> declared at
    loan: dict[str, float] = field(default_factory=dict)  # checked out at
    pending: dict[str, float] = field(default_factory=dict)  # checked in at, clock running
    overdue: dict[str, float] = field(default_factory=dict)  # checked in at, finding open
    closed: dict[str, tuple[int, int]] = field(default_factory=dict)  # device -> (boot, sweep)
    closed_ts: dict[str, float] = field(default_factory=dict)  # device -> its newest report
    open: dict[str, OpenSweep] = field(default_factory=dict)  # device -> sweep being heard
    signals: deque[Signal] = field(default_factory=deque)
    dropped: int = 0  # signals dropped from a full buffer
    unknown: int = 0  # items heard that the catalog does not know


def to_epoch(at: datetime) -> float:
    return at.timestamp()


def from_epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# -- writing ------------------------------------------------------------------


def encode(state: State, sections: Sections) -> dict[str, Any]:
    """The state as JSON-safe columns; device times go through one shared table."""
    times: dict[float, int] = {}

    def t(x: float) -> int:
        return times.setdefault(x, len(times))

    def column(d: Mapping[str, float]) -> dict[str, list[Any]]:
        return {"id": list(d), "t": [t(x) for x in d.values()]}

    out: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "sections": list(sections.names),
        "located": {
            "id": list(state.last_sid),
            "sid": list(state.last_sid.values()),
            "t": [t(state.last_ts[i]) for i in state.last_sid],
        },
        "absent": {"id": list(state.absent), "n": list(state.absent.values())},
        "away": {
            "id": list(state.away),
            "n": list(state.away.values()),
            "t": [t(state.away_since[i]) for i in state.away],
        },
        "home": {"id": list(state.home), "n": list(state.home.values())},
        "misplaced": column(state.misplaced),
        "missing": column(state.missing),
        "loan": column(state.loan),
        "pending": column(state.pending),
        "overdue": column(state.overdue),
        "closed": {d: list(k) for d, k in state.closed.items()},
        "closed_t": {d: t(x) for d, x in state.closed_ts.items()},
        "open": {d: _encode_sweep(op, t) for d, op in state.open.items()},
        "signals": {
            "kind": [s.kind for s in state.signals],
            "id": [s.item for s in state.signals],
            "t": [t(to_epoch(s.at)) for s in state.signals],
        },
        "dropped": state.dropped,
        "unknown": state.unknown,
    }
    out["times"] = list(times)
    return out


def _encode_sweep(op: OpenSweep, t: Callable[[float], int]) -> dict[str, Any]:
    return {
        "boot": op.boot,
        "sweep": op.sweep,
        "t": t(op.last_ts),
        "sections": [
            [sid, op.parts[sid], sorted(got), t(op.section_ts[sid])] for sid, got in op.got.items()
        ],
        "id": list(op.best_sid),
        "sid": list(op.best_sid.values()),
        "rssi": [None if r == WEAKEST else r for r in op.best_rssi.values()],
    }


# -- reading ------------------------------------------------------------------


class _Reader:
    """Typed access to a decoded checkpoint; every shape error names the field."""

    def __init__(self, data: object, sections: Sections, catalog: Mapping[str, CatalogItem]):
        if not isinstance(data, dict):
            raise CheckpointError(f"an inventory checkpoint is a JSON object, not {_kind(data)}")
        if data.get("format") != FORMAT:
            raise CheckpointError(
                f"not an inventory checkpoint (format {data.get('format')!r:.40})"
            )
        if data.get("version") != VERSION:
            raise CheckpointError(
                f"checkpoint version {data.get('version')!r:.20} is not {VERSION}"
            )
        self.data = data
        self.catalog = catalog
        self.times = [float(x) for x in self.list_of(data, "times", (int, float))]
        if not all(_EARLIEST <= x <= _LATEST for x in self.times):
            raise CheckpointError("times holds a time outside the years 1 to 9999")
        # Sections are stored by name: a layout that changed drops what it no longer has.
        names = self.list_of(data, "sections", str)
        self.sid: list[int | None] = [sections.sid.get(n) for n in names]

    def field(self, parent: Mapping[str, Any], name: str, kind: type[T], where: str = "") -> T:
        value = parent.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{where}{name} is {_kind(value)}, not {kind.__name__}")
        return value

    def list_of(
        self, parent: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str = ""
    ) -> list[Any]:
        value = parent.get(name)
        if not isinstance(value, list):
            raise CheckpointError(f"{where}{name} is {_kind(value)}, not a list")
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not set(map(type, value)) <= set(kinds):  # exact types: no bools for ints
            raise CheckpointError(f"{where}{name} holds a value of the wrong type")
        return value

    def columns(self, name: str, spec: dict[str, type | tuple[type, ...]]) -> list[list[Any]]:
        group = self.field(self.data, name, dict)
        cols = [self.list_of(group, key, kind, f"{name}.") for key, kind in spec.items()]
        if len({len(c) for c in cols}) > 1:
            raise CheckpointError(f"the columns of {name} differ in length")
        return cols

    def indexes(self, column: list[int], table: list[Any], where: str, what: str) -> None:
        """Refuse a column of indexes into `table` that point outside it."""
        if column and (min(column) < 0 or max(column) >= len(table)):
            raise CheckpointError(f"{where} refers to a {what} past the table")

    def time(self, index: int, where: str) -> float:
        if not 0 <= index < len(self.times):
            raise CheckpointError(f"{where} refers to time {index}, past the table")
        return self.times[index]

    def section(self, index: int, where: str) -> int | None:
        if not 0 <= index < len(self.sid):
            raise CheckpointError(f"{where} refers to section {index}, past the table")
        return self.sid[index]

    def timed(self, name: str) -> dict[str, float]:
        ids, ts = self.columns(name, {"id": str, "t": int})
        return {i: self.time(x, name) for i, x in zip(ids, ts, strict=True) if i in self.catalog}


def decode(data: object, sections: Sections, catalog: Mapping[str, CatalogItem]) -> State:
    """A State from `encode`'s output; CheckpointError says why it cannot be one."""
    r = _Reader(data, sections, catalog)
    s = State()
    ids, sids, ts = r.columns("located", {"id": str, "sid": int, "t": int})
    r.indexes(sids, r.sid, "located.sid", "section")
    r.indexes(ts, r.times, "located.t", "time")
    section, times, known = r.sid, r.times, set(catalog)
    for i, n, x in zip(ids, sids, ts, strict=True):
        sid = section[n]
        if sid is not None and i in known:
            s.last_sid[i] = sid
            s.last_ts[i] = times[x]  # one float object per distinct time, shared
    ids, ns = r.columns("absent", {"id": str, "n": int})
    s.absent = {i: n for i, n in zip(ids, ns, strict=True) if n > 0 and i in catalog}
    ids, ns, ts = r.columns("away", {"id": str, "n": int, "t": int})
    for i, n, x in zip(ids, ns, ts, strict=True):
        if n > 0 and i in catalog:
            s.away[i] = n
            s.away_since[i] = r.time(x, "away")
    if "home" in r.data:  # absent from checkpoints written before the rule to close
        ids, ns = r.columns("home", {"id": str, "n": int})
        s.home = {i: n for i, n in zip(ids, ns, strict=True) if n > 0 and i in catalog}
    s.misplaced, s.missing = r.timed("misplaced"), r.timed("missing")
    s.loan, s.pending, s.overdue = r.timed("loan"), r.timed("pending"), r.timed("overdue")
    s.misplaced = {i: x for i, x in s.misplaced.items() if i in s.last_sid}
    s.home = {i: n for i, n in s.home.items() if i in s.misplaced}
    for device, key in r.field(r.data, "closed", dict).items():
        if not (isinstance(key, list) and len(key) == 2 and all(_is_int(k) for k in key)):
            raise CheckpointError(f"closed.{device:.64} is not [boot, sweep]")
        if device in sections.by_device:
            s.closed[device] = (key[0], key[1])
    closed_t = r.field(r.data, "closed_t", dict) if "closed_t" in r.data else {}
    for device, x in closed_t.items():  # absent from older checkpoints
        if not _is_int(x):
            raise CheckpointError(f"closed_t.{device:.64} is not a time index")
        if device in s.closed:
            s.closed_ts[device] = r.time(x, "closed_t")
    for device, sweep in r.field(r.data, "open", dict).items():
        op = _decode_sweep(r, sweep, f"open.{device:.64}.")
        if device in sections.by_device:
            s.open[device] = op
    kinds, ids, ts = r.columns("signals", {"kind": str, "id": str, "t": int})
    if not SIGNAL_KINDS.issuperset(kinds):
        raise CheckpointError("signals.kind holds an unknown kind")
    s.signals = deque(
        Signal(cast(SignalKind, k), i, from_epoch(r.time(x, "signals")))
        for k, i, x in zip(kinds, ids, ts, strict=True)
    )
    s.dropped = r.field(r.data, "dropped", int)
    s.unknown = r.field(r.data, "unknown", int)
    return s


def _decode_sweep(r: _Reader, data: object, where: str) -> OpenSweep:
    if not isinstance(data, dict):
        raise CheckpointError(f"{where[:-1]} is {_kind(data)}, not an object")
    op = OpenSweep(
        r.field(data, "boot", int, where),
        r.field(data, "sweep", int, where),
        r.time(r.field(data, "t", int, where), where + "t"),
    )
    for entry in r.list_of(data, "sections", list, where):
        if not (len(entry) == 4 and _is_int(entry[0]) and _is_int(entry[1])):
            raise CheckpointError(f"{where}sections holds an entry that is not [sid, parts, ...]")
        if not (isinstance(entry[2], list) and all(_is_int(p) for p in entry[2])):
            raise CheckpointError(f"{where}sections holds a parts list that is not ints")
        if not _is_int(entry[3]):
            raise CheckpointError(f"{where}sections holds a time that is not an int")
        sid = r.section(entry[0], where + "sections")
        if sid is None:
            continue
        op.parts[sid], op.got[sid] = entry[1], set(entry[2])
        op.section_ts[sid] = r.time(entry[3], where + "sections")
    ids = r.list_of(data, "id", str, where)
    sids = r.list_of(data, "sid", int, where)
    rssi = data.get("rssi")
    if not (isinstance(rssi, list) and all(x is None or _is_number(x) for x in rssi)):
        raise CheckpointError(f"{where}rssi is not a list of numbers or null")
    if not len(ids) == len(sids) == len(rssi):
        raise CheckpointError(f"the columns of {where[:-1]} differ in length")
    for i, n, x in zip(ids, sids, rssi, strict=True):
        sid = r.section(n, where + "sid")
        if sid is not None and sid in op.got:
            op.best_sid[i] = sid
            op.best_rssi[i] = WEAKEST if x is None else float(x)
    return op


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _kind(value: object) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"
