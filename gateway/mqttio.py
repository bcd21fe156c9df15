"""paho's client with fewer system calls per message: buffered reads, batched PUBACKs.

paho reads every packet with one `recv` for its first byte, one per byte of its length
and one for the rest, each after a `select`; it sends each PUBACK as its own packet, with
a wake-up byte to its loop; and it decodes each PUBLISH with freshly built struct formats
into a message object matched against its callback tree. At thousands of messages a
second that was most of the gateway's time. `FastClient` reads the socket in large
chunks and lets paho take its packets from memory, acknowledges a batch of messages in
one write, and hands QoS 0/1 publishes (MQTT 3.1.1 and 5) to `on_fast_message(topic,
payload, mid)` straight from the packet. Everything else (connect, QoS 2, topic aliases,
malformed packets) and the MQTT state machine stay paho's.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

READ_SIZE = 1 << 16
# Packets handled from the buffer per turn of paho's loop before it writes (PUBACKs, our
# publishes) and checks its keepalive again.
DRAIN_PACKETS = 512
_PUBACK = struct.Struct("!BBH")

# topic, payload, message id (None for QoS 0)
FastHandler = Callable[[str, bytes, "int | None"], None]
TickHandler = Callable[[], None]


class BufferedSocket:
    """A socket whose small reads are served from one large `recv`.

    `pending()` tells paho's loop that bytes are waiting here, as it does for TLS
    sockets, so it does not sit in `select` while a packet lies in the buffer.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos < len(buf):
            end = pos + bufsize
            self._pos = end
            return buf[pos:end]
        data = self._sock.recv(max(bufsize, READ_SIZE))  # BlockingIOError: paho waits
        if len(data) <= bufsize:
            self._buf, self._pos = b"", 0
            return data
        self._buf, self._pos = data, bufsize
        return data[:bufsize]

    def buffered(self) -> int:
        return max(0, len(self._buf) - self._pos)

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + int(inner)

    def send(self, data: bytes | bytearray) -> int:
        return self._sock.send(data)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _skip_properties(packet: bytes | bytearray, pos: int) -> int:
    """Where an MQTT 5 PUBLISH's payload starts, past its properties; -1 if cut short.

    The gateway needs none of them (payload format, expiry, user properties); a topic
    alias would come with an empty topic, which the caller hands to paho.
    """
    length, shift = 0, 0
    for i in range(pos, min(pos + 4, len(packet))):
        byte = packet[i]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            end = i + 1 + length
            return end if end <= len(packet) else -1
        shift += 7
    return -1


class FastClient(paho.Client):
    """paho's Client reading through a `BufferedSocket`, with `ack_many` and
    `on_fast_message`."""

    on_fast_message: FastHandler | None = None
    # Called on the network thread at every turn of paho's loop (at least every `timeout`
    # given to loop_forever): for work that must happen on time without another thread.
    on_tick: TickHandler | None = None

    def loop_misc(self) -> MQTTErrorCode:
        rc = super().loop_misc()
        tick = self.on_tick
        if tick is not None:
            try:
                tick()
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_tick: %s", err)
                if not self.suppress_exceptions:
                    raise
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.on_fast_message
        header: int = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if handler is None or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        end = 2 + ((packet[0] << 8) | packet[1]) if len(packet) >= 2 else 0
        start = end + 2 if qos else end
        if end <= 2 or len(packet) < start:
            # Malformed (paho says so and drops the link), or an MQTT 5 topic alias.
            return super()._handle_publish()
        if self._protocol == paho.MQTTv5:
            start = _skip_properties(packet, start)
            if start < 0:
                return super()._handle_publish()
        try:
            topic = bytes(packet[2:end]).decode()
        except UnicodeDecodeError:
            return super()._handle_publish()
        mid = ((packet[end] << 8) | packet[end + 1]) if qos else None
        with self._in_callback_mutex:  # as paho holds it around its callbacks
            try:
                handler(topic, bytes(packet[start:]), mid)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_fast_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        if qos and not self._manual_ack:
            return self._send_puback(mid or 0)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if not isinstance(sock, socket.socket):
            return sock
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # No Nagle: a batch's events or acks would otherwise wait for the peer's
            # delayed ACK of the previous write (up to 40 ms on Linux) when traffic is light.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return BufferedSocket(sock)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(DRAIN_PACKETS):
            sock = self._sock
            if rc != paho.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if self._out_packet:
                # A batch's events or acknowledgements were queued while reading: send
                # them now rather than after the rest of the buffer (freshness).
                rc = self.loop_write()
                if rc != paho.MQTT_ERR_SUCCESS:
                    break
            if not sock.buffered():
                break
            rc = super().loop_read(max_packets)
        return rc

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (manual_ack) with one write to the socket."""
        if len(mids) < 2:
            for mid in mids:
                self.ack(mid, 1)
            return
        packet = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
        self._packet_queue(paho.PUBACK, packet, 0, 1)
