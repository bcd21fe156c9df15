"""Gateway counters: plain numbers on the hot path, exported to Prometheus at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

# Upper bounds (seconds) of the batch write latency buckets.
BATCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class GatewayMetrics:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0  # the system's own output seen on a device subscription
    dead_lettered: Counter[str] = field(default_factory=Counter)
    events_published: int = 0
    events_dropped: int = 0  # the outgoing MQTT queue was full
    points_written: int = 0
    points_rejected: int = 0
    write_batches: int = 0
    write_errors: int = 0
    last_batch_seconds: float = 0.0
    batch_seconds_buckets: list[int] = field(default_factory=lambda: [0] * len(BATCH_BUCKETS))
    batch_seconds_sum: float = 0.0
    spool_full: int = 0  # times the spool hit its size bound (batch held, nothing acked)
    lag_seconds: float = 0.0  # receive time minus device time of the last accepted message
    spool_bytes: Callable[[], int] = lambda: 0
    spool_segments: Callable[[], int] = lambda: 0
    connected: Callable[[], bool] = lambda: False

    def observe_batch(self, seconds: float) -> None:
        self.batch_seconds_sum += seconds
        for i, bound in enumerate(BATCH_BUCKETS):
            if seconds <= bound:
                self.batch_seconds_buckets[i] += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "dead_lettered": dict(self.dead_lettered),
            "events_published": self.events_published,
            "events_dropped": self.events_dropped,
            "points_written": self.points_written,
            "points_rejected": self.points_rejected,
            "write_batches": self.write_batches,
            "write_errors": self.write_errors,
            "last_batch_seconds": self.last_batch_seconds,
            "spool_full": self.spool_full,
            "spool_bytes": self.spool_bytes(),
            "spool_segments": self.spool_segments(),
            "lag_seconds": self.lag_seconds,
        }

    def registry(self) -> CollectorRegistry:
        """A Prometheus registry reading these numbers whenever it is scraped."""
        reg = CollectorRegistry(auto_describe=False)
        reg.register(GatewayCollector(self))
        return reg


class GatewayCollector(Collector):
    def __init__(self, m: GatewayMetrics) -> None:
        self._m = m

    def collect(self) -> Iterator[Metric]:
        m = self._m
        p = "stackpulse_gateway_"
        for name, value, doc in (
            ("received", m.received, "Messages received on device topics"),
            ("accepted", m.accepted, "Messages accepted (valid, not duplicates)"),
            ("duplicates", m.duplicates, "Duplicate messages dropped"),
            ("ignored", m.ignored, "System output seen on device subscriptions"),
            ("events_published", m.events_published, "Normalized events published"),
            ("events_dropped", m.events_dropped, "Events not published: outgoing queue full"),
            ("points_written", m.points_written, "Points written to the store"),
            ("points_rejected", m.points_rejected, "Points the store refused as invalid"),
            ("write_errors", m.write_errors, "Failed store writes (retried)"),
            ("spool_full", m.spool_full, "Times the spool hit its size bound"),
        ):
            yield CounterMetricFamily(p + name, doc, value=value)
        dead = CounterMetricFamily(p + "dead_lettered", "Dead-lettered messages", labels=["reason"])
        for reason, n in sorted(m.dead_lettered.items()):
            dead.add_metric([reason], n)
        yield dead
        yield GaugeMetricFamily(p + "spool_bytes", "Bytes spooled on disk", value=m.spool_bytes())
        yield GaugeMetricFamily(
            p + "spool_segments", "Sealed segments waiting for the store", value=m.spool_segments()
        )
        yield GaugeMetricFamily(
            p + "lag_seconds", "Receive time minus device time, last message", value=m.lag_seconds
        )
        yield GaugeMetricFamily(p + "connected", "1 when connected", value=int(m.connected()))
        h = _histogram(p + "batch_write_seconds", "Store batch write latency", m)
        yield h


def _histogram(name: str, doc: str, m: GatewayMetrics) -> Metric:
    from prometheus_client.core import HistogramMetricFamily

    buckets = [
        (str(b), float(n)) for b, n in zip(BATCH_BUCKETS, m.batch_seconds_buckets, strict=True)
    ]
    buckets.append(("+Inf", float(m.write_batches)))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=m.batch_seconds_sum)
