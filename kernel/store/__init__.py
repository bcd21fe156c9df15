"""Time-series stores: InfluxDB over its v1 HTTP API, or embedded SQLite, behind one interface."""

from stackpulse.kernel.store.base import (
    FieldValue,
    Point,
    Row,
    SeriesStore,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from stackpulse.kernel.store.factory import open_store
from stackpulse.kernel.store.influx import InfluxStore, parse_influx_url
from stackpulse.kernel.store.influxql import Agg, Query, TagEq, render
from stackpulse.kernel.store.lineprotocol import encode_point, encode_points
from stackpulse.kernel.store.sqlite import SqliteStore

__all__ = [
    "Agg",
    "FieldValue",
    "InfluxStore",
    "Point",
    "Query",
    "Row",
    "SeriesStore",
    "SqliteStore",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "TagEq",
    "encode_point",
    "encode_points",
    "open_store",
    "parse_influx_url",
    "render",
]
