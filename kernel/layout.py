"""Site layout (protocol.md section 3): zones, gates, seats and shelves of one building."""

from __future__ import annotations

import re
from collections import deque
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stackpulse.kernel.callnumbers import (
    CallNumber,
    CallNumberError,
    CallNumberRange,
    RangeIndex,
    Scheme,
    parse,
)
from stackpulse.kernel.topics import DEVICE_RE, SITE_RE, Kind

OUTSIDE = "outside"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# pydantic patterns match anywhere in the string unless anchored
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=f"^{DEVICE_RE.pattern}$")]
Loc = tuple[str | int, ...]

_DAYS_RE = re.compile(rf"({'|'.join(DAYS)})(?:-({'|'.join(DAYS)}))?")
_SPAN_RE = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
_MINUTES_PER_DAY = 24 * 60


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Zone(_Strict):
    id: Id
    name: str
    floor: int
    capacity: Annotated[int, Field(gt=0)]


class Gate(_Strict):
    """A people counter; "in" is a move from `outer` into `inner`."""

    device: Id
    outer: Id
    inner: Id


class Seat(_Strict):
    id: Id
    device: Id
    zone: Id
    features: tuple[str, ...] = ()
    x: float | None = None  # position on the zone's seat map grid
    y: float | None = None


class Section(_Strict):
    """Call numbers `first` to `last` inclusive, `last` read as a shelf label."""

    id: Id
    first: str
    last: str


class Shelf(_Strict):
    device: Id
    zone: Id
    collection: str = "main"
    scheme: Scheme = "lc"
    sections: tuple[Section, ...]


class Desk(_Strict):
    """A circulation point: self-check kiosk, desk, or a bridge from the ILS."""

    device: Id
    zone: Id


class Opening(NamedTuple):
    """Opening minutes after local midnight; `close` past 1440 runs into the next day."""

    open: int
    close: int


class Coverage(NamedTuple):
    """How one collection's sections tile it: pairs of section ids, in shelf order."""

    overlaps: list[tuple[str, str]]
    gaps: list[tuple[str, str]]


class Layout(_Strict):
    site: Annotated[str, Field(pattern=f"^{SITE_RE.pattern}$")]
    name: str
    timezone: str = "UTC"
    # keys `mon`, `mon-fri`, ...; values `HH:MM-HH:MM` or `closed`; unlisted days are
    # closed, and no hours at all means always open.
    hours: dict[str, str] = Field(default_factory=dict)
    zones: tuple[Zone, ...]
    gates: tuple[Gate, ...] = ()
    seats: tuple[Seat, ...] = ()
    shelves: tuple[Shelf, ...] = ()
    circulation: tuple[Desk, ...] = ()
    catalog: str | None = None  # load_layout resolves it against the layout's folder

    @model_validator(mode="after")
    def _consistent(self) -> Layout:
        problems = _problems(self)
        if problems:
            raise _Problems(problems)
        return self

    def devices(self) -> dict[str, Kind]:
        """Every device id the layout knows, with its kind."""
        out: dict[str, Kind] = {g.device: Kind.GATE for g in self.gates}
        out.update({s.device: Kind.SEAT for s in self.seats})
        out.update({s.device: Kind.SHELF for s in self.shelves})
        out.update({d.device: Kind.CIRC for d in self.circulation})
        return out

    def zone(self, zone_id: str) -> Zone:
        return self.zones_by_id[zone_id]

    @cached_property
    def zones_by_id(self) -> dict[str, Zone]:
        return {z.id: z for z in self.zones}

    @cached_property
    def seats_by_id(self) -> dict[str, Seat]:
        return {s.id: s for s in self.seats}

    @cached_property
    def seats_by_device(self) -> dict[str, Seat]:
        return {s.device: s for s in self.seats}

    @cached_property
    def gates_by_device(self) -> dict[str, Gate]:
        return {g.device: g for g in self.gates}

    @cached_property
    def shelves_by_device(self) -> dict[str, Shelf]:
        return {s.device: s for s in self.shelves}

    @cached_property
    def sections_by_id(self) -> dict[str, Section]:
        return {x.id: x for s in self.shelves for x in s.sections}

    @cached_property
    def shelf_of_section(self) -> dict[str, Shelf]:
        return {x.id: s for s in self.shelves for x in s.sections}

    @cached_property
    def collections(self) -> dict[str, Scheme]:
        """Each collection shelved here, with its call-number scheme."""
        return {s.collection: s.scheme for s in self.shelves}

    @cached_property
    def _indexes(self) -> dict[str, RangeIndex]:
        ranges: dict[str, list[CallNumberRange]] = {}
        for shelf in self.shelves:
            for x in shelf.sections:
                first, last = parse(x.first, shelf.scheme), parse(x.last, shelf.scheme)
                ranges.setdefault(shelf.collection, []).append(CallNumberRange(x.id, first, last))
        return {c: RangeIndex(r) for c, r in ranges.items()}

    def section_index(self, collection: str) -> RangeIndex:
        """The collection's sections in shelf order (KeyError for an unknown collection)."""
        return self._indexes[collection]

    def sections_holding(self, collection: str, call_number: CallNumber | str) -> tuple[str, ...]:
        """Ids of the sections of `collection` that hold `call_number` (none if not shelved)."""
        index = self._indexes.get(collection)
        if index is None:
            return ()
        if isinstance(call_number, str):
            call_number = parse(call_number, self.collections[collection])
        return index.holders(call_number)

    def coverage(self, collection: str) -> Coverage:
        """Overlapping and non-adjacent neighbouring sections of one collection."""
        index = self._indexes[collection]
        return Coverage(index.overlaps(), index.gaps())

    def coverage_report(self) -> list[str]:
        """One line per gap or overlap between sections, every collection, for the log at load.

        Overlaps are refused when the layout is checked, so a loaded layout reports gaps:
        call numbers that no section holds, whose items would have no home shelf.
        """
        out: list[str] = []
        sections = self.sections_by_id
        for collection in self.collections:
            overlaps, gaps = self.coverage(collection)
            for a, b in overlaps:
                out.append(f"collection {collection!r}: sections {a} and {b} overlap")
            for a, b in gaps:
                last, first = sections[a].last, sections[b].first
                out.append(
                    f"collection {collection!r}: no section holds call numbers after "
                    f"{last!r} (end of {a}) and before {first!r} (start of {b})"
                )
        return out

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def week(self) -> tuple[Opening | None, ...]:
        """Opening per weekday, Monday first (None: closed)."""
        if not self.hours:
            return (Opening(0, _MINUTES_PER_DAY),) * 7
        week, _ = _parse_hours(self.hours)
        return week

    def hours_for(self, day: date) -> tuple[datetime, datetime] | None:
        """Opening and closing on a local calendar day, in the site timezone; None if closed."""
        opening = self.week[day.weekday()]
        if opening is None:
            return None
        midnight = datetime.combine(day, time.min, self.tz)
        # Aware arithmetic with one tzinfo is wall-clock arithmetic: right across DST.
        return (
            midnight + timedelta(minutes=opening.open),
            midnight + timedelta(minutes=opening.close),
        )

    def is_open(self, at: datetime) -> bool:
        """Whether the site is open at an aware instant (openings past midnight count)."""
        if at.tzinfo is None:
            raise ValueError("is_open needs an aware datetime")
        today = at.astimezone(self.tz).date()
        for day in (today - timedelta(days=1), today):
            span = self.hours_for(day)
            # Compare instants: aware datetimes sharing a tzinfo would compare as wall times.
            if span is not None and span[0].astimezone(UTC) <= at < span[1].astimezone(UTC):
                return True
        return False

    def unreachable_zones(self) -> tuple[str, ...]:
        """Zones no path of gates connects to `outside` (their occupancy cannot be counted)."""
        links: dict[str, set[str]] = {}
        for g in self.gates:
            links.setdefault(g.outer, set()).add(g.inner)
            links.setdefault(g.inner, set()).add(g.outer)
        seen, todo = {OUTSIDE}, deque([OUTSIDE])
        while todo:
            for nxt in links.get(todo.popleft(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return tuple(z.id for z in self.zones if z.id not in seen)


class LayoutError(ValueError):
    """A layout that cannot be used; the message names the file, entry and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        shown = "; ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(shown + more)


class _Problems(ValueError):
    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.items = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))


def load_layout(path: str | Path) -> Layout:
    """Read and check a layout file; LayoutError names the file, line and entry at fault."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise LayoutError([f"{p}: cannot read layout: {err.strerror or err}"]) from None
    except UnicodeDecodeError as err:
        raise LayoutError([f"{p}: not UTF-8 text ({err.reason} at byte {err.start})"]) from None
    try:
        root, data = _compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        why = getattr(err, "problem", None) or str(err)
        raise LayoutError([f"{where}: YAML syntax error: {why}"]) from None
    if not isinstance(data, dict) or root is None:
        raise LayoutError([f"{p}:1: a layout is a YAML mapping with site, name, zones, ..."])
    problems = _duplicate_keys(root)
    if isinstance(data.get("catalog"), str):
        data["catalog"] = str(p.parent / data["catalog"])
        if not Path(data["catalog"]).is_file():
            problems.append((("catalog",), f"catalog file {data['catalog']!r} does not exist"))
    try:
        layout = Layout.model_validate(data)
    except ValidationError as err:
        problems += _validation_problems(err)
    if problems:
        raise LayoutError(_render(p, root, data, problems))
    return layout


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data built from it, in one pass."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
        return root, (None if root is None else loader.construct_document(root))
    finally:
        loader.dispose()


def _validation_problems(err: ValidationError) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for e in err.errors():
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            out += cause.items
        elif e["type"] == "extra_forbidden":
            out.append((tuple(e["loc"]), f"unknown field {e['loc'][-1]!r}"))
        elif e["type"] == "missing":
            out.append((tuple(e["loc"]), f"missing field {e['loc'][-1]!r}"))
        else:
            out.append((tuple(e["loc"]), f"{e['msg']} (got {e['input']!r:.60})"))
    return out


def _render(path: Path, root: yaml.Node, data: Any, problems: list[tuple[Loc, str]]) -> list[str]:
    lines = [(_node_at(root, loc).start_mark.line + 1, loc, msg) for loc, msg in problems]
    lines.sort(key=lambda t: t[0])
    return [f"{path}:{line}: {_describe(loc, data)}: {msg}" for line, loc, msg in lines]


def _node_at(root: yaml.Node, loc: Loc) -> yaml.Node:
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == str(part)]
            if not match:
                break
            node = match[-1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
        else:
            break
    return node


def _describe(loc: Loc, data: Any) -> str:
    """`seats[12] (id f2-q-013), field zone` for a location in the layout."""
    entry, label, node = "", "", data
    last_index = max((i for i, part in enumerate(loc) if isinstance(part, int)), default=-1)
    for part in loc[: last_index + 1]:
        if isinstance(part, int):
            entry += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            label = _label(node)
        else:
            entry += f".{part}" if entry else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    field = ".".join(str(part) for part in loc[last_index + 1 :])
    if not entry:
        return f"field {field}" if field else "layout"
    return f"{entry}{label}" + (f", field {field}" if field else "")


def _label(entry: Any) -> str:
    if isinstance(entry, dict):
        for key in ("id", "device"):
            if isinstance(entry.get(key), str):
                return f" ({key} {entry[key]})"
    return ""


def _duplicate_keys(node: yaml.Node, loc: Loc = ()) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                out.append(((*loc, key.value), f"key {key.value!r} is given more than once"))
            seen.add(key.value)
            out += _duplicate_keys(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, (*loc, i))
    return out


def _parse_hours(hours: dict[str, str]) -> tuple[tuple[Opening | None, ...], list[tuple[Loc, str]]]:
    week: list[Opening | None] = [None] * 7
    owner: dict[int, str] = {}
    problems: list[tuple[Loc, str]] = []
    for key, value in hours.items():
        days = _DAYS_RE.fullmatch(key)
        if days is None:
            problems.append(
                (("hours", key), f"bad day key {key!r} (use e.g. mon, mon-fri, sat-sun)")
            )
            continue
        opening, why = _parse_span(value)
        if why:
            problems.append((("hours", key), why))
            continue
        start = DAYS.index(days[1])
        end = DAYS.index(days[2] or days[1])
        for n in range((end - start) % 7 + 1):
            day = (start + n) % 7
            if day in owner:
                problems.append((("hours", key), f"{DAYS[day]} is also given by {owner[day]!r}"))
            owner[day] = key
            week[day] = opening
    return tuple(week), problems


def _parse_span(value: str) -> tuple[Opening | None, str]:
    if value.strip().lower() == "closed":
        return None, ""
    m = _SPAN_RE.fullmatch(value.strip())
    if m is None:
        return None, f"bad opening hours {value!r} (use HH:MM-HH:MM or closed)"
    oh, om, ch, cm = (int(g) for g in m.groups())
    if oh > 23 or om > 59 or ch > 24 or cm > 59 or (ch == 24 and cm):
        return None, f"bad time in opening hours {value!r}"
    opening, closing = oh * 60 + om, ch * 60 + cm
    if opening == closing:
        return None, f"opening hours {value!r} open and close at once (all day is 00:00-24:00)"
    # A closing time before the opening one runs past midnight (late-night opening).
    return Opening(opening, closing if closing > opening else closing + _MINUTES_PER_DAY), ""


def _problems(layout: Layout) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    try:
        ZoneInfo(layout.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.append(
            (("timezone",), f"unknown timezone {layout.timezone!r} (e.g. Asia/Shanghai)")
        )
    problems += _parse_hours(layout.hours)[1]
    problems += _check_ids(layout)
    problems += _check_zones(layout)
    problems += _check_sections(layout)
    return problems


def _check_ids(layout: Layout) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    sections: list[tuple[Loc, str]] = [
        (("shelves", i, "sections", j, "id"), x.id)
        for i, shelf in enumerate(layout.shelves)
        for j, x in enumerate(shelf.sections)
    ]
    devices = (
        _ids("gates", layout.gates, "device")
        + _ids("seats", layout.seats, "device")
        + _ids("shelves", layout.shelves, "device")
        + _ids("circulation", layout.circulation, "device")
    )
    groups = [
        ("zone id", _ids("zones", layout.zones, "id")),
        ("seat id", _ids("seats", layout.seats, "id")),
        ("section id", sections),
        ("device id", devices),
    ]
    for what, entries in groups:
        first: dict[str, Loc] = {}
        for loc, ident in entries:
            if ident in first:
                where = _loc_text(first[ident][:-1])
                problems.append((loc, f"{what} {ident!r} is already used by {where}"))
            else:
                first[ident] = loc
    for i, z in enumerate(layout.zones):
        if z.id == OUTSIDE:
            problems.append((("zones", i, "id"), f"{OUTSIDE!r} is implicit and cannot be declared"))
    return problems


def _ids(name: str, entries: tuple[BaseModel, ...], field: str) -> list[tuple[Loc, str]]:
    return [((name, i, field), str(getattr(e, field))) for i, e in enumerate(entries)]


def _check_zones(layout: Layout) -> list[tuple[Loc, str]]:
    known = {z.id for z in layout.zones}
    listed = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
    refs: list[tuple[Loc, str, bool]] = []  # (where, zone, may it be outside)
    for i, g in enumerate(layout.gates):
        refs += [(("gates", i, "outer"), g.outer, True), (("gates", i, "inner"), g.inner, True)]
    refs += [(("seats", i, "zone"), s.zone, False) for i, s in enumerate(layout.seats)]
    refs += [(("shelves", i, "zone"), s.zone, False) for i, s in enumerate(layout.shelves)]
    refs += [(("circulation", i, "zone"), d.zone, True) for i, d in enumerate(layout.circulation)]
    problems = [
        (loc, f"unknown zone {zone!r} (zones: {listed})")
        for loc, zone, outside_ok in refs
        if zone not in known and not (outside_ok and zone == OUTSIDE)
    ]
    for i, g in enumerate(layout.gates):
        if g.outer == g.inner:
            problems.append((("gates", i), f"outer and inner are both {g.outer!r}"))
    for i, s in enumerate(layout.seats):
        if (s.x is None) != (s.y is None):
            problems.append((("seats", i), "give both x and y, or neither"))
    return problems


def _check_sections(layout: Layout) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    scheme_of: dict[str, tuple[Scheme, int]] = {}
    ranges: dict[str, list[CallNumberRange]] = {}
    where: dict[str, Loc] = {}
    for i, shelf in enumerate(layout.shelves):
        seen = scheme_of.setdefault(shelf.collection, (shelf.scheme, i))
        if seen[0] != shelf.scheme:
            msg = f"collection {shelf.collection!r} is {seen[0]} in shelves[{seen[1]}]"
            problems.append((("shelves", i, "scheme"), msg))
            continue
        for j, x in enumerate(shelf.sections):
            loc: Loc = ("shelves", i, "sections", j)
            bounds: list[CallNumber] = []
            for name in ("first", "last"):
                try:
                    bounds.append(parse(getattr(x, name), shelf.scheme))
                except CallNumberError as err:
                    problems.append(((*loc, name), str(err)))
            if len(bounds) < 2:
                continue
            r = CallNumberRange(x.id, bounds[0], bounds[1])
            if r.empty:
                problems.append((loc, f"first {x.first!r} sorts after last {x.last!r}"))
                continue
            ranges.setdefault(shelf.collection, []).append(r)
            where[x.id] = loc
    for collection, found in ranges.items():
        for a, b in RangeIndex(found).overlaps():
            msg = f"overlaps {_loc_text(where[a])} (id {a}) in collection {collection!r}"
            problems.append((where[b], msg))
    return problems


def _loc_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
