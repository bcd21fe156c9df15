"""Readiness and metrics of the components of one process (`/readyz`, `/metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


@dataclass(slots=True)
class Readiness:
    """One component's state: ready when connected, subscribed and restored."""

    name: str
    connected: bool = False
    subscribed: bool = False
    restored: bool = False
    needs_broker: bool = True  # a component without a broker session (reports) does not
    problem: str | None = None  # the last thing that went wrong, for people

    @property
    def ready(self) -> bool:
        if not self.restored:
            return False
        return not self.needs_broker or (self.connected and self.subscribed)

    @property
    def reason(self) -> str:
        if self.ready:
            return "ready"
        missing = [
            what
            for what, done in (
                ("restored", self.restored),
                ("connected", self.connected or not self.needs_broker),
                ("subscribed", self.subscribed or not self.needs_broker),
            )
            if not done
        ]
        why = "not " + ", not ".join(missing)
        return f"{why}: {self.problem}" if self.problem else why

    def down(self, problem: str) -> None:
        self.connected = self.subscribed = False
        self.problem = problem[:300]


@dataclass(slots=True)
class Health:
    """Every component of the process, and one Prometheus registry for all of them."""

    components: dict[str, Readiness] = field(default_factory=dict)
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=False)
    )
    # Open Server-Sent Event streams, per stream kind: read at scrape time.
    streams: dict[str, Callable[[], int]] = field(default_factory=dict)
    # Every service runner's counters; one collector reports them all, by component.
    services: list[ServiceMetrics] = field(default_factory=list)

    def component(self, name: str, *, needs_broker: bool = True) -> Readiness:
        """The readiness of `name`, made on first use."""
        found = self.components.get(name)
        if found is None:
            found = self.components[name] = Readiness(name, needs_broker=needs_broker)
        return found

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self.components.values())

    def report(self) -> dict[str, str]:
        """Each component's reason: "ready", or what it still waits for."""
        return {name: c.reason for name, c in sorted(self.components.items())}

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def __post_init__(self) -> None:
        self.registry.register(_ReadyCollector(self))
        self.registry.register(ServiceCollector(self.services))
        self.registry.register(
            Gauge(
                "stackpulse_sse_clients",
                "Server-Sent Event streams open",
                ["stream"],
                lambda: [([k], float(read())) for k, read in sorted(self.streams.items())],
            )
        )


class _ReadyCollector(Collector):
    def __init__(self, health: Health) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "stackpulse_component_ready", "1 when the component is ready", labels=["component"]
        )
        for name, c in sorted(self._health.components.items()):
            ready.add_metric([name], int(c.ready))
        yield ready


@dataclass(slots=True)
class ServiceMetrics:
    """A service's counters: plain numbers on the hot path, read at scrape time."""

    component: str
    received: int = 0  # events received live (after decoding)
    applied: int = 0  # events applied (live and caught up)
    duplicates: int = 0  # events dropped as already applied
    refused: int = 0  # messages that failed their contract or named what is unknown
    caught_up: int = 0  # events read back from the store
    catch_ups: int = 0  # catch-up passes run
    lag_seconds: float = 0.0  # now minus receive time of the last live event
    checkpoints: dict[str, datetime] = field(default_factory=dict)  # site -> last saved
    queue_depth: Callable[[], int] = lambda: 0
    clock: Callable[[], datetime] | None = None


COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("events_received", "received", "Events received live"),
    ("events_applied", "applied", "Events applied, live and caught up"),
    ("events_duplicate", "duplicates", "Events dropped as applied already"),
    ("messages_refused", "refused", "Messages refused: contract or unknown ids"),
    ("events_caught_up", "caught_up", "Events read back from the store"),
    ("catch_ups", "catch_ups", "Catch-up passes over the store"),
)


class ServiceCollector(Collector):
    """Every service of the process in one family per metric, labelled by component."""

    def __init__(self, services: list[ServiceMetrics]) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        for name, attr, doc in COUNTERS:
            c = CounterMetricFamily(f"stackpulse_{name}", doc, labels=["component"])
            for m in self._services:
                c.add_metric([m.component], getattr(m, attr))
            yield c
        lag = GaugeMetricFamily(
            "stackpulse_event_lag_seconds",
            "Now minus the receive time of the last live event",
            labels=["component"],
        )
        depth = GaugeMetricFamily(
            "stackpulse_publish_queue", "Messages waiting to be published", labels=["component"]
        )
        age = GaugeMetricFamily(
            "stackpulse_checkpoint_age_seconds",
            "Seconds since the last checkpoint was saved",
            labels=["component", "site"],
        )
        for m in self._services:
            lag.add_metric([m.component], m.lag_seconds)
            depth.add_metric([m.component], m.queue_depth())
            if m.clock is not None:
                now = m.clock()
                for site, at in sorted(m.checkpoints.items()):
                    age.add_metric([m.component, site], max(0.0, (now - at).total_seconds()))
        yield from (lag, depth, age)


class Gauge(Collector):
    """One gauge family read at scrape time: `read()` gives (label values, value) pairs.

    `read` runs on the scraping thread or loop: it must only read numbers in memory."""

    def __init__(
        self,
        name: str,
        doc: str,
        labels: list[str],
        read: Callable[[], list[tuple[list[str], float]]],
    ) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        for values, value in self._read():
            family.add_metric(values, value)
        yield family
