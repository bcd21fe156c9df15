"""What a component's `entry.start(ctx, tg)` is given: the real adapters, built once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from stackpulse.kernel.bus import BrokerAddress
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.health import Health
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.settings import ComponentSettings, Settings

if TYPE_CHECKING:
    from stackpulse.kernel.catalog import Catalog
    from stackpulse.kernel.statedb import StateDB
    from stackpulse.kernel.store.base import SeriesStore

S = TypeVar("S", bound=ComponentSettings)


@dataclass
class Context:
    """The process's deployment settings, layouts and adapters (the composition root
    fills it); each component takes what it needs and nothing else."""

    settings: Settings
    layouts: list[Layout]
    broker: BrokerAddress
    clock: Clock
    health: Health = field(default_factory=Health)
    store: SeriesStore | None = None
    db: StateDB | None = None
    catalogs: dict[str, Catalog] = field(default_factory=dict)
    components: dict[type[ComponentSettings], ComponentSettings] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)  # started, by name (for tests)

    @property
    def root(self) -> str:
        return self.settings.root

    @property
    def by_site(self) -> Mapping[str, Layout]:
        return {lay.site: lay for lay in self.layouts}

    def component(self, kind: type[S]) -> S:
        """The settings of one component, built by the composition root (or defaults)."""
        found = self.components.get(kind)
        if found is None:
            found = self.components[kind] = kind.from_env()
        assert isinstance(found, kind)
        return found

    def need_store(self) -> SeriesStore:
        if self.store is None:
            raise RuntimeError("this component needs the time-series store (--store)")
        return self.store

    def need_db(self) -> StateDB:
        if self.db is None:
            raise RuntimeError("this component needs the state database (--db)")
        return self.db
