"""InfluxQL targets for grafana-foundation-sdk panels, and Grafana's macros for running them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, Self, TypeAlias

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from stackpulse.kernel.store.influxql import (
    AGG_FUNCS,
    Agg,
    Query,
    TagEq,
    quote_ident,
    quote_string,
    render,
)

__all__ = [
    "DATASOURCE_TYPE",
    "Arith",
    "Call",
    "InfluxQLQuery",
    "InfluxQLTarget",
    "Term",
    "expand_macros",
    "panel_queries",
    "render_computed",
    "render_nested",
    "show_tag_values",
    "variable_queries",
    "variant_config",
]

DATASOURCE_TYPE: Final = "influxdb"
ResultFormat: TypeAlias = Literal["time_series", "table"]
Op: TypeAlias = Literal["+", "-", "*", "/"]
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Call:
    """An aggregate of one field, ``func("field")``: an operand of an arithmetic select."""

    func: str
    field: str

    def __post_init__(self) -> None:
        if self.func not in AGG_FUNCS:
            raise ValueError(f"aggregate {self.func!r} is not one of {sorted(AGG_FUNCS)}")
        if not self.field:
            raise ValueError("an aggregate needs a field name")


@dataclass(frozen=True, slots=True)
class Arith:
    """``left op right`` over aggregates and numbers, e.g. mean(occupancy) / mean(capacity)."""

    left: Term
    op: Op
    right: Term

    def __post_init__(self) -> None:
        if self.op not in ("+", "-", "*", "/"):
            raise ValueError(f"operator {self.op!r} is not one of + - * /")


Term: TypeAlias = Call | Arith | int | float


def _calls(term: Term) -> Iterator[Call]:
    if isinstance(term, Call):
        yield term
    elif isinstance(term, Arith):
        yield from _calls(term.left)
        yield from _calls(term.right)


def _term_text(term: Term) -> str:
    if isinstance(term, Call):
        return f"{term.func}({quote_ident(term.field)})"
    if isinstance(term, Arith):
        # Parenthesised at every level so the text means what the tree means.
        return f"({_term_text(term.left)} {term.op} {_term_text(term.right)})"
    if isinstance(term, bool) or not isinstance(term, int | float):
        raise TypeError(f"{term!r} is not an aggregate, an expression or a number")
    text = repr(term)
    if not _NUMBER.fullmatch(text):  # InfluxQL has no exponents, inf or nan
        raise ValueError(f"{term!r} cannot be written as an InfluxQL number literal")
    return text


def render_computed(q: Query, expr: Arith, alias: str, *, grafana: bool = True) -> str:
    """``render(q)`` with its select list replaced by ``expr AS alias``.

    kernel.store.influxql selects only ``func(field)``; arithmetic between aggregates is
    rendered here. The rest of the statement (WHERE, GROUP BY, fill, ...) still comes
    from the typed builder, validated the same way, so only the select list is ours.
    """
    calls = list(_calls(expr))
    if not calls:
        raise ValueError("a computed column needs at least one aggregate")
    first = calls[0]
    stand_in = dataclasses.replace(q, fields=(Agg(first.func, first.field, alias),))
    text = render(stand_in, grafana=grafana)
    head = f"SELECT {first.func}({quote_ident(first.field)}) AS {quote_ident(alias)} FROM "
    if not text.startswith(head):
        raise RuntimeError(f"the InfluxQL renderer writes selects differently now: {text!r}")
    inner = _term_text(expr)[1:-1]  # the outermost parentheses add nothing
    return f"SELECT {inner} AS {quote_ident(alias)} FROM {text[len(head) :]}"


def render_nested(outer: Query, inner: Query, *, inner_text: str | None = None) -> str:
    """``outer`` selecting FROM the subquery ``inner`` instead of a measurement.

    InfluxQL aggregates across series only through a subquery: the inner query reduces
    each series per interval (say each zone's mean occupancy), the outer one sums those
    (the floor's). ``outer.measurement`` is a placeholder; both parts keep ``$timeFilter``
    because InfluxDB bounds the outer query by its own WHERE only. ``inner_text`` replaces
    the inner statement's text when it has a computed select (render_computed).
    """
    text = render(outer, grafana=True)
    placeholder = f"FROM {quote_ident(outer.measurement)}"
    if text.count(placeholder) != 1:
        raise RuntimeError(f"the InfluxQL renderer writes FROM differently now: {text!r}")
    sub = inner_text if inner_text is not None else render(inner, grafana=True)
    return text.replace(placeholder, f"FROM ({sub})")


def show_tag_values(measurement: str, key: str, where: tuple[TagEq, ...] = ()) -> str:
    """``SHOW TAG VALUES`` of one tag key: a template variable's options."""
    text = f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(key)}"
    if where:
        text += " WHERE " + " AND ".join(_tag_condition(c) for c in where)
    return text


def _tag_condition(cond: TagEq) -> str:
    """A WHERE condition as kernel.store.influxql writes it (SHOW has no typed builder)."""
    if cond.variable:
        return f"{quote_ident(cond.key)} =~ /^{cond.value}$/"
    return f"{quote_ident(cond.key)} = {quote_string(cond.value)}"


class InfluxQLQuery(cogvariants.Dataquery):
    """One InfluxQL panel target as Grafana's InfluxDB data source stores it (raw mode)."""

    def __init__(
        self,
        ref_id: str = "",
        query: str = "",
        raw_query: bool = True,
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        datasource: DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.raw_query = raw_query
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": self.raw_query,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(
            ref_id=str(data.get("refId", "")),
            query=str(data.get("query", "")),
            raw_query=bool(data.get("rawQuery", True)),
            result_format="table" if data.get("resultFormat") == "table" else "time_series",
            alias=data.get("alias"),
            datasource=DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            hide=data.get("hide"),
        )


def variant_config() -> cogruntime.DataqueryConfig:
    """Register with ``cogruntime.register_dataquery_variant`` so Dashboard.from_json knows us."""
    return cogruntime.DataqueryConfig(
        identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json
    )


class InfluxQLTarget(cogbuilder.Builder[InfluxQLQuery]):
    """Builds an InfluxQLQuery whose text comes from the typed kernel.store.influxql model."""

    def __init__(self) -> None:
        self._internal = InfluxQLQuery()

    def build(self) -> InfluxQLQuery:
        if not self._internal.query:
            raise ValueError(f"target {self._internal.ref_id or '?'} has no query")
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def select(self, q: Query) -> Self:
        """The query, rendered with ``$timeFilter`` (and ``$__interval`` for time "auto")."""
        self._internal.query = render(q, grafana=True)
        return self

    def select_computed(self, q: Query, expr: Arith, alias: str) -> Self:
        """Like select(), with ``expr AS alias`` as the only column (see render_computed)."""
        self._internal.query = render_computed(q, expr, alias)
        return self

    def select_nested(self, outer: Query, inner: Query, *, inner_text: str | None = None) -> Self:
        """Like select(), aggregating across series through a subquery (render_nested)."""
        self._internal.query = render_nested(outer, inner, inner_text=inner_text)
        return self

    def alias(self, alias: str) -> Self:
        """Series name in the legend; ``$tag_zone`` names it by its zone tag."""
        self._internal.alias = alias
        return self

    def result_format(self, result_format: ResultFormat) -> Self:
        self._internal.result_format = result_format
        return self

    def datasource(self, datasource: DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self


def _panels(panels: list[Any]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # a collapsed row holds its panels


def panel_queries(dashboard_json: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(panel title, refId, InfluxQL)`` of every InfluxQL target of every panel."""
    found: list[tuple[str, str, str]] = []
    for panel in _panels(list(dashboard_json.get("panels") or [])):
        for target in panel.get("targets") or []:
            if "query" in target:
                found.append((str(panel.get("title", "")), str(target["refId"]), target["query"]))
    return found


def variable_queries(dashboard_json: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(variable name, InfluxQL)`` of every query template variable."""
    variables = (dashboard_json.get("templating") or {}).get("list") or []
    return [(str(v["name"]), str(v["query"])) for v in variables if v.get("type") == "query"]


_REGEX_SPECIAL = re.compile(r"([\\/^$.|?*+()\[\]{}])")


def expand_macros(
    text: str,
    *,
    start: datetime,
    end: datetime,
    interval: str,
    variables: Mapping[str, str | Sequence[str]] | None = None,
) -> str:
    """The query as Grafana's InfluxDB data source sends it, for one absolute time range.

    ``$timeFilter`` becomes ``time >= <ms>ms and time <= <ms>ms``; ``$__interval`` and
    ``$interval`` the given interval; ``$name``/``${name}``/``[[name]]`` a variable's
    value, regex-escaped, since our queries only match variables with ``=~ /^$name$/``;
    a multi-value (or "All") variable given as a list becomes ``(a|b)``, as Grafana's
    InfluxDB data source formats it.
    """
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ValueError("the time range needs time zones")
    frm, to = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    out = text.replace("$timeFilter", f"time >= {frm}ms and time <= {to}ms")
    out = out.replace("$__interval", interval).replace("$interval", interval)
    for name, value in (variables or {}).items():
        if isinstance(value, str):
            escaped = _REGEX_SPECIAL.sub(r"\\\1", value)
        else:
            escaped = "(" + "|".join(_REGEX_SPECIAL.sub(r"\\\1", v) for v in value) + ")"
        pattern = rf"\$\{{{re.escape(name)}\}}|\[\[{re.escape(name)}\]\]|\${re.escape(name)}\b"
        out = re.sub(pattern, escaped.replace("\\", "\\\\"), out)
    return out
