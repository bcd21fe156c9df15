"""LC and Dewey call numbers in shelf order, and the shelf-label rule of protocol.md section 3."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, get_args

Scheme = Literal["lc", "dewey"]
SCHEMES: tuple[Scheme, ...] = get_args(Scheme)

# A key is the call number's parts joined by "!". Keys hold only [a-z0-9.!] and "!" sorts
# below every other character, so a shorter part sorts first (.P98 < .P985 < .P99) and
# everything beginning with `last` part by part sorts below `last` + '"'.
_SEP = "!"
_ABOVE_SEP = '"'
_KEY_CHARS = re.compile(r"[a-z0-9.!]*")

# The fast path covers what catalogs write almost always (on lower-cased text);
# pycallnumber parses the rest.
_YEAR_ITEMS = r"(?: (?P<y>\d{4})(?P<yl>[a-z]{0,3}))?(?P<it>(?: [a-z]{1,5}\. ?\d{1,6})*)"
_LC_RE = re.compile(
    r"(?P<l>[a-z]{1,3})(?: ?(?P<i>\d{1,4})(?:\.(?P<d>\d{1,4}))?"
    r"(?: ?\.? ?(?P<c1>[a-z]{1,3})(?P<n1>\d{1,8})"
    r"(?: \.?(?P<c2>[a-z]{1,3})(?P<n2>\d{1,8})(?: \.?(?P<c3>[a-z]{1,3})(?P<n3>\d{1,8}))?)?)?"
    rf"{_YEAR_ITEMS})?"
)
_DEWEY_RE = re.compile(
    r"(?P<i>\d{1,3})(?:\.(?P<d>\d{1,8}))?"
    r"(?: \.?(?P<c1>[a-z]{1,3})(?P<n1>\d{1,8})(?P<w1>[a-z]{0,3})"
    r"(?: \.?(?P<c2>[a-z]{1,3})(?P<n2>\d{1,8})(?P<w2>[a-z]{0,3}))?)?"
    rf"{_YEAR_ITEMS}"
)
_ITEM_RE = re.compile(r" [a-z]{1,5}\. ?(\d{1,6})")
_CLASS_WIDTH = {"lc": 4, "dewey": 3}


class CallNumberError(ValueError):
    """A call number that does not parse; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class CallNumber:
    """A parsed call number (or a shelf-label prefix of one), ordered as on the shelf.

    Made by parse(); `key` is the parts joined by "!", kept so sorting does not rebuild it.
    """

    text: str
    scheme: Scheme
    parts: tuple[str, ...]  # normalized parts: class letters, class number, cutters, ...
    kinds: tuple[str, ...]  # per part: letters | class | cutter | edition | item
    key: str = field(repr=False)  # shelf-order sort key, within one scheme

    @property
    def end_key(self) -> str:
        """Exclusive upper bound of every call number that begins with this one part by part."""
        return self.key + _ABOVE_SEP

    def begins_with(self, prefix: CallNumber) -> bool:
        """True when `prefix`'s parts are this call number's first parts, part by part."""
        n = len(prefix.parts)
        return self.scheme == prefix.scheme and self.parts[:n] == prefix.parts

    def _same(self, other: CallNumber) -> CallNumber:
        if other.scheme != self.scheme:
            raise TypeError(f"cannot order {self.scheme} against {other.scheme} call numbers")
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallNumber):
            return NotImplemented
        return self.scheme == other.scheme and self.parts == other.parts

    def __hash__(self) -> int:
        return hash((self.scheme, self.parts))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, CallNumber):
            return NotImplemented
        return self.key < self._same(other).key

    def __le__(self, other: object) -> bool:
        if not isinstance(other, CallNumber):
            return NotImplemented
        return self.key <= self._same(other).key

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, CallNumber):
            return NotImplemented
        return self.key > self._same(other).key

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, CallNumber):
            return NotImplemented
        return self.key >= self._same(other).key

    def __str__(self) -> str:
        return self.text


def parse(call_number: str, scheme: Scheme = "lc", *, cached: bool = True) -> CallNumber:
    """Parse an LC or Dewey call number, or a shelf-label prefix such as `QA` or `QA76.75`.

    Bulk loads of distinct call numbers pass cached=False: they would only churn the cache.
    """
    if scheme not in SCHEMES:
        raise CallNumberError(f"unknown call number scheme {scheme!r} (use 'lc' or 'dewey')")
    if not isinstance(call_number, str):
        raise CallNumberError(f"a call number must be a string, not {type(call_number).__name__}")
    text = " ".join(call_number.split())
    return _parse(text, scheme) if cached else _parse.__wrapped__(text, scheme)


def sort_key(call_number: str, scheme: Scheme = "lc") -> str:
    """Shelf-order key of a call number string (see CallNumber.key), uncached.

    For bulk loads: the common forms skip building a CallNumber at all.
    """
    fast = _FAST.get(scheme)
    if fast is not None and isinstance(call_number, str):
        parsed = fast(" ".join(call_number.split()).lower())
        if parsed is not None:
            return _SEP.join(parsed[0])
    return parse(call_number, scheme, cached=False).key


def section_holds(
    first: CallNumber | str,
    last: CallNumber | str,
    cn: CallNumber | str,
    scheme: Scheme = "lc",
) -> bool:
    """The protocol's shelf-label rule: `first` <= cn, and cn <= `last` or cn begins with `last`."""
    lo, hi, x = (c if isinstance(c, CallNumber) else parse(c, scheme) for c in (first, last, cn))
    if not lo.scheme == hi.scheme == x.scheme:
        raise TypeError("first, last and the call number must share one scheme")
    return lo.key <= x.key < hi.end_key


def clear_cache() -> None:
    """Forget parsed call numbers (tests and memory-conscious callers)."""
    _parse.cache_clear()


@lru_cache(maxsize=1 << 18)
def _parse(text: str, scheme: Scheme) -> CallNumber:
    if not text:
        raise CallNumberError("empty call number")
    fast = _FAST[scheme](text.lower())
    if fast is not None:
        return CallNumber(text, scheme, fast[0], fast[1], _SEP.join(fast[0]))
    parts, kinds = _slow(text, scheme)
    key = _SEP.join(parts)
    if not _KEY_CHARS.fullmatch(key):
        raise CallNumberError(f"{text!r}: unsupported characters for {_label(scheme)}")
    return CallNumber(text, scheme, parts, kinds, key)


_Parsed = tuple[tuple[str, ...], tuple[str, ...]]


def _class_number(integer: str, decimals: str | None, width: int) -> str:
    # Class numbers are decimals: 76.70 and 76.7 are one class.
    if decimals and (decimals := decimals.rstrip("0")):
        return integer.zfill(width) + "." + decimals
    return integer.zfill(width)


def _cutter_number(digits: str) -> str:
    # Cutter numbers are decimal fractions: .K30 files with .K3.
    return digits.rstrip("0") or "0"


_LC_CUTTERS = (("c1", "n1", None), ("c2", "n2", None), ("c3", "n3", None))
_DEWEY_CUTTERS = (("c1", "n1", "w1"), ("c2", "n2", "w2"))


def _tail(
    m: re.Match[str],
    parts: list[str],
    kinds: list[str],
    cutters: tuple[tuple[str, str, str | None], ...],
) -> _Parsed:
    for letters_group, number_group, workmark_group in cutters:
        letters = m.group(letters_group)
        if letters is None:
            break
        part = letters + _SEP + _cutter_number(m.group(number_group))
        workmark = m.group(workmark_group) if workmark_group else None
        parts.append(part + _SEP + workmark if workmark else part)
        kinds.append("cutter")
    year = m.group("y")
    if year:
        suffix = m.group("yl")
        parts.append(year.zfill(10) + _SEP + suffix if suffix else year.zfill(10))
        kinds.append("edition")
    items = m.group("it")
    if items:
        for i in _ITEM_RE.finditer(items):
            parts.append(_SEP + i[1].zfill(10))
            kinds.append("item")
    return tuple(parts), tuple(kinds)


_LETTERS = ("letters",)
_CLASS = ("letters", "class")
_CUTTER1 = ("letters", "class", "cutter")
_CUTTER1_YEAR = ("letters", "class", "cutter", "edition")


def _fast_lc(text: str) -> _Parsed | None:
    m = _LC_RE.fullmatch(text)
    if m is None:
        return None
    letters, integer, decimals, c1, n1, c2, _, _, _, year, suffix, items = m.groups()
    if integer is None:
        return (letters,), _LETTERS
    number = _class_number(integer, decimals, 4)
    if c1 is None or c2 is not None or suffix or items:
        return _tail(m, [letters, number], list(_CLASS), _LC_CUTTERS)
    # The common case, one cutter and maybe a year, kept lean for bulk loads.
    cutter = c1 + _SEP + (n1.rstrip("0") or "0")
    if year:
        return (letters, number, cutter, year.zfill(10)), _CUTTER1_YEAR
    return (letters, number, cutter), _CUTTER1


def _fast_dewey(text: str) -> _Parsed | None:
    m = _DEWEY_RE.fullmatch(text)
    if m is None:
        return None
    number = _class_number(m.group("i"), m.group("d"), 3)
    return _tail(m, [number], ["class"], _DEWEY_CUTTERS)


_FAST = {"lc": _fast_lc, "dewey": _fast_dewey}


def _label(scheme: Scheme) -> str:
    return "an LC call number" if scheme == "lc" else "a Dewey call number"


def _slow(text: str, scheme: Scheme) -> _Parsed:
    # Imported here: pycallnumber takes seconds to import and most call numbers never need it.
    import pycallnumber
    from pycallnumber.units import LC, Dewey, DeweyClass, LcClass

    full, short = (LC, LcClass) if scheme == "lc" else (Dewey, DeweyClass)
    for unit_type in (full, short):
        try:
            unit = pycallnumber.callnumber(text, unittypes=[unit_type])
        except pycallnumber.InvalidCallNumberStringError:
            continue
        return _from_unit(unit, scheme, unit_type is full)
    example = "QA76.73 .P98 2005" if scheme == "lc" else "005.133 P98 2005"
    raise CallNumberError(f"{text!r} is not {_label(scheme)} (expected e.g. {example!r})")


def _from_unit(unit: Any, scheme: Scheme, full: bool) -> _Parsed:
    parts: list[str] = []
    kinds: list[str] = []
    cls = unit.classification if full else unit
    if scheme == "lc":
        parts.append(str(cls.letters.for_sort()))
        kinds.append("letters")
        number = str(cls.number.for_sort())
    else:
        number = str(cls.for_sort())
    integer, _, decimals = number.partition(".")
    parts.append(_class_number(integer, decimals, _CLASS_WIDTH[scheme]))
    kinds.append("class")
    if not full:
        return tuple(parts), tuple(kinds)
    for cutter in unit.cutters:
        pieces = str(cutter.for_sort()).split(_SEP)
        pieces[1] = _cutter_number(pieces[1])
        parts.append(_SEP.join(pieces))
        kinds.append("cutter")
    for name in ("edition", "item"):
        value = getattr(unit, name)
        if value is None:
            continue
        part = str(value.for_sort())
        if not part.strip(_SEP):
            # pycallnumber accepts symbols it then ignores: junk, not a volume or copy.
            why = f"{str(value)!r} is no volume, copy or date"
            raise CallNumberError(f"{str(unit)!r} is not {_label(scheme)}: {why}")
        parts.append(part)
        kinds.append(name)
    return tuple(parts), tuple(kinds)


def successor_key(cn: CallNumber) -> str | None:
    """Key of the next label at the precision `cn` is written in: QA76.75 -> QA76.76.

    Decimals are dense, so a section ending at `cn` and the next one starting at this key
    still leave numbers of finer precision (QA76.751) with no home; at the precision of
    the labels, though, nothing lies between them. None when nothing can follow.
    """
    parts = list(cn.parts)
    while parts:
        nxt = _next_part(parts[-1], cn.kinds[len(parts) - 1], cn.scheme)
        if nxt is not None:
            return _SEP.join([*parts[:-1], nxt])
        parts.pop()
    return None


def _next_letters(letters: str) -> str | None:
    while letters:
        if letters[-1] != "z":
            return letters[:-1] + chr(ord(letters[-1]) + 1)
        letters = letters[:-1]
    return None


def _next_decimal(number: str, width: int) -> str | None:
    integer, _, decimals = number.partition(".")
    step = Decimal(1).scaleb(-len(decimals))
    value = Decimal(number) + step
    if value >= 10**width:
        return None
    integer, _, decimals = f"{value:f}".partition(".")
    return _class_number(integer, decimals, width)


def _next_part(part: str, kind: str, scheme: Scheme) -> str | None:
    if kind == "letters":
        # After class B comes BA; two- and three-letter classes step along (BK -> BL).
        return part + "a" if len(part) == 1 else _next_letters(part)
    if kind == "class":
        return _next_decimal(part, _CLASS_WIDTH[scheme])
    pieces = part.split(_SEP)
    if kind == "cutter":
        return _next_cutter(pieces)
    if kind == "edition":
        if len(pieces) == 2 and (letters := _next_letters(pieces[1])) is not None:
            return pieces[0] + _SEP + letters
        return str(int(pieces[0]) + 1).zfill(len(pieces[0]))
    last = pieces[-1]
    if last.isdigit():
        pieces[-1] = str(int(last) + 1).zfill(len(last))
        return _SEP.join(pieces)
    nxt = _next_letters(last)
    return None if nxt is None else _SEP.join([*pieces[:-1], nxt])


def _next_cutter(pieces: list[str]) -> str | None:
    letters, digits = pieces[0], pieces[1]
    if len(pieces) == 3 and (workmark := _next_letters(pieces[2])) is not None:
        return _SEP.join([letters, digits, workmark])
    fraction = _next_decimal("0." + digits, 1)
    if fraction is None or not fraction.startswith("0"):
        return _next_letters(letters)
    return letters + _SEP + fraction.partition(".")[2]


@dataclass(frozen=True, slots=True)
class CallNumberRange:
    """One shelf section's holdings: `first` to `last`, `last` read as a shelf label."""

    ident: str
    first: CallNumber
    last: CallNumber

    def holds(self, cn: CallNumber) -> bool:
        return section_holds(self.first, self.last, cn)

    @property
    def empty(self) -> bool:
        """True when `first` sorts after everything `last` holds."""
        return self.first.key >= self.last.end_key


class RangeIndex:
    """Sections of one collection, sorted, to find the sections holding a call number fast."""

    def __init__(self, ranges: Iterable[CallNumberRange]) -> None:
        self.ranges: tuple[CallNumberRange, ...] = tuple(
            sorted(ranges, key=lambda r: (r.first.key, r.last.end_key, r.ident))
        )
        self._starts = [r.first.key for r in self.ranges]
        # Running maximum of end keys, so a lookup stops scanning back once nothing reaches.
        self._reach: list[str] = []
        for r in self.ranges:
            top = self._reach[-1] if self._reach else ""
            self._reach.append(max(top, r.last.end_key))

    def holders(self, cn: CallNumber) -> tuple[str, ...]:
        """Ids of the sections holding `cn`, in shelf order."""
        return self.holders_of_key(cn.key)

    def holders_of_key(self, key: str) -> tuple[str, ...]:
        """Ids of the sections holding the call number with this sort key, in shelf order."""
        i = bisect.bisect_right(self._starts, key) - 1
        found: list[str] = []
        while i >= 0 and self._reach[i] > key:
            r = self.ranges[i]
            if key < r.last.end_key:
                found.append(r.ident)
            i -= 1
        return tuple(reversed(found))

    def overlaps(self) -> list[tuple[str, str]]:
        """Pairs of sections (earlier, later) whose holdings overlap."""
        out: list[tuple[str, str]] = []
        for i, a in enumerate(self.ranges):
            for b in self.ranges[i + 1 :]:
                if b.first.key >= a.last.end_key:
                    break
                out.append((a.ident, b.ident))
        return out

    def gaps(self) -> list[tuple[str, str]]:
        """Consecutive sections (earlier, later) with labels missing between them.

        Judged at the precision of the earlier section's `last` (see successor_key).
        """
        out: list[tuple[str, str]] = []
        reach: CallNumberRange | None = None
        for r in self.ranges:
            if reach is not None and r.first.key >= reach.last.end_key:
                nxt = successor_key(reach.last)
                if nxt is not None and r.first.key > nxt:
                    out.append((reach.ident, r.ident))
            if reach is None or r.last.end_key > reach.last.end_key:
                reach = r
        return out


__all__ = [
    "SCHEMES",
    "CallNumber",
    "CallNumberError",
    "CallNumberRange",
    "RangeIndex",
    "Scheme",
    "clear_cache",
    "parse",
    "section_holds",
    "sort_key",
    "successor_key",
]
