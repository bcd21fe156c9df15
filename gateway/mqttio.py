"""paho's client with fewer system calls per message: buffered reads, batched PUBACKs.

paho reads every packet with one `recv` for its first byte, one per byte of its length
and one for the rest, each after a `select`; and it sends each PUBACK as its own packet,
with a wake-up byte to its loop. At thousands of messages a second these system calls
were most of the gateway's time. `FastClient` reads the socket in large chunks and lets
paho take its packets from memory, and acknowledges a batch of messages in one write.
The MQTT state machine stays paho's.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

READ_SIZE = 1 << 16
# Packets handled from the buffer per turn of paho's loop before it writes (PUBACKs, our
# publishes) and checks its keepalive again.
DRAIN_PACKETS = 512
_PUBACK = struct.Struct("!BBH")


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


class FastClient(paho.Client):
    """paho's Client reading through a `BufferedSocket`, with `ack_many`."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return BufferedSocket(sock) if isinstance(sock, socket.socket) else sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(DRAIN_PACKETS):
            sock = self._sock
            if rc != paho.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
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
