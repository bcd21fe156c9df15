"""The real-process fixtures: Mosquitto and InfluxDB start, serve, stop and start again."""

from __future__ import annotations

import json
import queue
import urllib.request
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.procs import InfluxProc, MosquittoProc

pytestmark = pytest.mark.integration


def _roundtrip(broker: MosquittoProc, topic: str, payload: bytes) -> mqtt.MQTTMessage:
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed: queue.Queue[int] = queue.Queue()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        received.put(message)

    def on_subscribe(_c: mqtt.Client, _u: Any, mid: int, *_rest: Any) -> None:
        subscribed.put(mid)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        result, mid = client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert subscribed.get(timeout=5) == mid
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5)
        return received.get(timeout=5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_mosquitto_publish_subscribe_roundtrip(mosquitto: MosquittoProc, mqtt_root: str) -> None:
    topic = f"{mqtt_root}/main/gate/gate-1/data"
    payload = json.dumps({"ts": "2026-11-24T10:42:00Z", "boot": 1, "seq": 1, "in": 3, "out": 1})
    message = _roundtrip(mosquitto, topic, payload.encode())
    assert message.topic == topic
    assert json.loads(message.payload) == json.loads(payload)
    assert message.qos == 1


def test_mosquitto_restarts_on_the_same_port(
    fresh_mosquitto: MosquittoProc, mqtt_root: str
) -> None:
    port = fresh_mosquitto.port
    fresh_mosquitto.stop()
    assert not fresh_mosquitto.running
    fresh_mosquitto.start()
    assert fresh_mosquitto.port == port
    assert _roundtrip(fresh_mosquitto, f"{mqtt_root}/x", b"again").payload == b"again"


def test_mqtt_roots_are_unique(mqtt_root: str) -> None:
    assert mqtt_root.startswith("t/")
    assert mqtt_root.endswith("/lib/v1")


def test_influxdb_serves_ping_and_a_test_database(influxdb: InfluxProc, influx_db: str) -> None:
    with urllib.request.urlopen(f"{influxdb.http_url}/ping", timeout=5) as response:
        assert response.status == 204
    assert influx_db.startswith(f"{influxdb.url}/test_")
    database = influx_db.rsplit("/", 1)[1]
    assert database in influxdb.influxql("SHOW DATABASES")
