"""The gateway's paho client: buffered reads and batched PUBACKs, against real Mosquitto."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stackpulse.gateway.mqttio import READ_SIZE, BufferedSocket, FastClient
from tests.support.procs import MosquittoProc


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        buffered = BufferedSocket(b)
        a.sendall(b"\x30\x05hello" + b"x" * 100)
        assert buffered.recv(1) == b"\x30"
        assert buffered.pending() == 106
        assert buffered.recv(1) == b"\x05"
        assert buffered.recv(5) == b"hello"
        # A read larger than what is buffered returns what there is, without waiting.
        assert buffered.recv(1000) == b"x" * 100
        assert buffered.pending() == 0
        with pytest.raises(BlockingIOError):
            buffered.recv(1)
        big = bytes(range(256)) * ((3 * READ_SIZE) // 256)
        a.sendall(big)
        got = bytearray()
        deadline = time.monotonic() + 5
        while len(got) < len(big) and time.monotonic() < deadline:
            try:
                got += buffered.recv(7)
            except BlockingIOError:
                time.sleep(0.001)
        assert bytes(got) == big
        a.close()
        assert buffered.recv(1) == b""  # end of stream reaches paho as before
    finally:
        a.close()
        b.close()


def _subscriber(port: int, client_id: str, topic: str, ack: bool) -> tuple[FastClient, list[bytes]]:
    got: list[bytes] = []
    pending: list[int] = []
    lock = threading.Lock()
    c = FastClient(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True
    )

    def on_message(cl: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with lock:
            got.append(bytes(msg.payload))
            pending.append(msg.mid)
            if ack and len(pending) >= 10:
                c.ack_many(pending)
                pending.clear()

    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    return c, got


def _publish(port: int, topic: str, payloads: list[bytes]) -> None:
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(timeout=30)
    pub.loop_stop()
    pub.disconnect()


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)


@pytest.mark.integration
@pytest.mark.parametrize("ack", [True, False])
def test_fast_client_reads_every_packet_and_acks_in_batches(
    mosquitto: MosquittoProc, mqtt_root: str, ack: bool
) -> None:
    """Small and large messages arrive whole and in order; batched PUBACKs are honoured:
    acknowledged messages are not delivered again to the same session, unacknowledged
    ones are."""
    topic = f"{mqtt_root}/fast"
    # Unacknowledged, the broker stops at its in-flight window (100 here): stay below it.
    count = 2000 if ack else 50
    payloads = [f"m{i:05d}".encode() * (1 + (i % 7) * 40) for i in range(count)]
    payloads[count // 3] = b"L" * 200_000  # spans several reads
    cid = f"fast-{uuid.uuid4().hex[:8]}"
    sub, got = _subscriber(mosquitto.port, cid, topic, ack)
    _publish(mosquitto.port, topic, payloads)
    _wait(lambda: len(got) >= len(payloads), 30)
    assert got == payloads
    # With acks, whole batches of ten: 2000 is a multiple, nothing is left over.
    sub.loop_stop()
    sub.disconnect()

    again, got_again = _subscriber(mosquitto.port, cid, topic, ack=True)
    try:
        _wait(lambda: bool(got_again) if not ack else False, 3)
        if ack:
            assert got_again == []
        else:
            assert got_again, "unacknowledged messages must come again"
            assert got_again[0] == payloads[0]
    finally:
        again.loop_stop()
        again.disconnect()


@pytest.mark.integration
@pytest.mark.parametrize("protocol", [paho.MQTTv311, paho.MQTTv5])
def test_fast_handler_gets_topic_payload_and_mid(
    mosquitto: MosquittoProc, mqtt_root: str, protocol: MQTTProtocolVersion
) -> None:
    """QoS 0 and 1 publishes reach `on_fast_message` with paho's own topic and payload
    (MQTT 5: past the properties); a QoS 0 one has no message id; a QoS 2 one still goes
    through paho's on_message."""
    fast: list[tuple[str, bytes, int | None]] = []
    classic: list[tuple[str, bytes, int]] = []
    sub = FastClient(
        CallbackAPIVersion.VERSION2, client_id=f"h-{uuid.uuid4().hex[:8]}", protocol=protocol
    )
    sub.on_fast_message = lambda t, p, m: fast.append((t, p, m))
    sub.on_message = lambda _c, _u, msg: classic.append((msg.topic, bytes(msg.payload), msg.qos))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe(f"{mqtt_root}/#", qos=2)
    sub.loop_start()
    try:
        time.sleep(0.3)
        pub = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}", protocol=protocol
        )
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        props = None
        if protocol == paho.MQTTv5:  # properties the broker passes on, before the payload
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = [("k", "v" * 300)]  # a properties length over 127: 2 bytes
            props.MessageExpiryInterval = 3600
            props.ContentType = "application/json"
        sent = [
            (f"{mqtt_root}/a/b", b'{"x":1}', 1),
            (f"{mqtt_root}/lecture-hall/caf\u00e9", b"", 0),
            (f"{mqtt_root}/z", b"\x00\xff" * 1000, 1),
        ]
        for topic, payload, qos in sent:
            pub.publish(topic, payload, qos=qos, properties=props).wait_for_publish(timeout=10)
        pub.publish(f"{mqtt_root}/two", b"q2", qos=2).wait_for_publish(timeout=10)
        _wait(lambda: len(fast) >= 3 and len(classic) >= 1, 10)
        pub.loop_stop()
        pub.disconnect()
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert [(t, p) for t, p, _ in fast] == [(t, p) for t, p, _ in sent]
    assert [m is None for _, _, m in fast] == [q == 0 for _, _, q in sent]
    assert all(isinstance(m, int) and m > 0 for _, _, m in fast if m is not None)
    assert classic == [(f"{mqtt_root}/two", b"q2", 2)]
