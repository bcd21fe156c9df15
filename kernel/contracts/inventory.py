"""`_state/inventory/...`: item lists, finding changes, demand.

Producer: the inventory service. Consumers: the API's read model (staff lists and
tasks, managers' demand), the alerts service (finding changes), the managers' page.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from stackpulse.kernel.contracts.base import Contract, StateTopic
from stackpulse.kernel.models import Timestamp

SERVICE = "inventory"
MAX_LIST_BYTES = 32 * 1024 * 1024  # 20,000 entries of a few hundred bytes fit easily

ListName = Literal["misplaced", "missing", "reshelving", "tasks"]
LIST_NAMES: tuple[ListName, ...] = ("misplaced", "missing", "reshelving", "tasks")
FindingName = Literal["misplaced", "missing", "reshelving"]
DemandList = Literal["ranked", "classes"]
DEMAND_LISTS: tuple[DemandList, ...] = ("ranked", "classes")

ItemId = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
SectionId = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Text = Annotated[StrictStr, Field(max_length=500)]
Count = Annotated[StrictInt, Field(ge=0, le=100_000_000)]
Score = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


class MisplacedItem(Contract):
    """An item confirmed on a shelf section that does not hold its call number."""

    item: ItemId
    call_number: Text
    title: Text
    seen_section: SectionId
    expected_sections: tuple[SectionId, ...] = Field(max_length=64)
    since: Timestamp


class MissingItem(Contract):
    """An item unseen where it belongs for long enough, and not on loan."""

    item: ItemId
    call_number: Text
    title: Text
    last_seen_section: SectionId | None
    last_seen_at: Timestamp | None
    since: Timestamp | None = None  # when it was declared missing


class ReshelvingItem(Contract):
    """A checked-in item not yet seen back on any shelf within the allowed time."""

    item: ItemId
    call_number: Text
    title: Text
    checked_in_at: Timestamp
    overdue_since: Timestamp


class ReshelvingTask(Contract):
    """Move `item` from `from_section` to `to_section`."""

    item: ItemId
    call_number: Text
    title: Text
    from_section: SectionId
    to_section: SectionId
    floor: Annotated[StrictInt, Field(ge=-100, le=1000)] | None
    opened_at: Timestamp
    order: tuple[StrictInt, StrictInt]  # walking order within the floor: (shelf, section)


class _Doc(Contract):
    site: StrictStr | None = None  # informative only: the topic's site is the truth
    updated_at: Timestamp
    total: Count  # entries in the list; more than `items` when it was capped


class MisplacedDoc(_Doc):
    items: tuple[MisplacedItem, ...] = ()


class MissingDoc(_Doc):
    items: tuple[MissingItem, ...] = ()


class ReshelvingDoc(_Doc):
    items: tuple[ReshelvingItem, ...] = ()


class TasksDoc(_Doc):
    items: tuple[ReshelvingTask, ...] = ()


AnyDoc = MisplacedDoc | MissingDoc | ReshelvingDoc | TasksDoc
DOC_MODELS: dict[ListName, type[AnyDoc]] = {
    "misplaced": MisplacedDoc,
    "missing": MissingDoc,
    "reshelving": ReshelvingDoc,
    "tasks": TasksDoc,
}
Detail = MisplacedItem | MissingItem | ReshelvingItem


class FindingChange(Contract):
    """`_state/inventory/change/{finding}`, not retained: a finding opened or closed."""

    finding: FindingName
    item: ItemId
    state: Literal["opened", "closed"]
    at: Timestamp
    detail: Detail | None = None  # the list entry, when opened
    site: StrictStr | None = None  # informative only: the topic's site is the truth


class DemandTitle(Contract):
    """One title's demand over the window: score is weighted signals per copy."""

    title: Text
    call_number: Text
    call_class: Annotated[StrictStr, Field(max_length=40)]
    copies: Count
    score: Score
    signals: dict[Annotated[StrictStr, Field(max_length=20)], Count] = Field(max_length=16)
    suggest_purchase: StrictBool
    reason: Text | None


class DemandClass(Contract):
    """One call-number class's demand over the window."""

    call_class: Annotated[StrictStr, Field(max_length=40)]
    copies: Count
    titles: Count
    score: Score
    per_copy: Score
    signals: dict[Annotated[StrictStr, Field(max_length=20)], Count] = Field(max_length=16)


class _DemandDoc(Contract):
    site: StrictStr | None = None  # informative only: the topic's site is the truth
    updated_at: Timestamp


class RankedDoc(_DemandDoc):
    items: tuple[DemandTitle, ...] = Field((), max_length=1000)


class ClassesDoc(_DemandDoc):
    items: tuple[DemandClass, ...] = Field((), max_length=10_000)


LIST = {
    name: StateTopic(SERVICE, "list", DOC_MODELS[name], max_bytes=MAX_LIST_BYTES)
    for name in LIST_NAMES
}
CHANGE = StateTopic(SERVICE, "change", FindingChange, retained=False)
DEMAND_RANKED = StateTopic(SERVICE, "demand", RankedDoc)
DEMAND_CLASSES = StateTopic(SERVICE, "demand", ClassesDoc, max_bytes=MAX_LIST_BYTES)

__all__ = [
    "CHANGE",
    "DEMAND_CLASSES",
    "DEMAND_LISTS",
    "DEMAND_RANKED",
    "LIST",
    "LIST_NAMES",
    "AnyDoc",
    "ClassesDoc",
    "DemandClass",
    "DemandList",
    "DemandTitle",
    "Detail",
    "FindingChange",
    "FindingName",
    "ListName",
    "MisplacedDoc",
    "MisplacedItem",
    "MissingDoc",
    "MissingItem",
    "RankedDoc",
    "ReshelvingDoc",
    "ReshelvingItem",
    "ReshelvingTask",
    "TasksDoc",
]
