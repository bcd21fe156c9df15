"""MQTT adapter: broker URLs and clients with the house defaults (bounded, timed)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerUrlError(ValueError):
    """A broker URL we cannot use; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:  # never print the password
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://[user:password@]host[:port]` or `mqtts://...` for TLS."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(
            f"broker URL {url!r}: scheme must be mqtt:// or mqtts://, e.g. mqtt://127.0.0.1:1883"
        )
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r}: no host")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise BrokerUrlError(f"broker URL {url!r}: the port is not a number 1-65535") from None
    if parts.path not in ("", "/"):
        raise BrokerUrlError(f"broker URL {url!r}: takes no path")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def client(
    addr: BrokerAddress,
    *,
    identifier: str | None = None,
    will: aiomqtt.Will | None = None,
    clean_session: bool | None = None,
    max_queued_incoming: int = 10_000,
    max_inflight: int = 100,
    keepalive: int = 30,
    timeout: float = 10.0,
) -> aiomqtt.Client:
    """An MQTT 3.1.1 client (every broker we support speaks it) with bounded queues."""
    mqtt = aiomqtt.Client(
        addr.host,
        addr.port,
        username=addr.username,
        password=addr.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V311,
        will=will,
        clean_session=clean_session,
        keepalive=keepalive,
        timeout=timeout,
        max_queued_incoming_messages=max_queued_incoming,
        max_inflight_messages=max_inflight,
        tls_context=ssl.create_default_context() if addr.tls else None,
        # No Nagle: a small publish (a seat's new state) would otherwise wait for the
        # broker's delayed ACK of the previous one, up to 40 ms when traffic is light.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    # Many publishes in flight is how a busy component is meant to run, not a warning sign.
    mqtt.pending_calls_threshold = max(10, max_inflight)
    return mqtt


async def follow(
    mqtt: aiomqtt.Client, filters: Iterable[str], apply: Callable[[str, bytes | str], object]
) -> None:
    """Subscribe to `filters` and hand each message's topic and payload to `apply`, until
    the connection ends (then MqttError). The broker replays retained state on subscribe,
    so after a reconnect calling this again makes a read model whole."""
    for topic_filter in filters:
        await mqtt.subscribe(topic_filter, qos=1, timeout=10)
    async for message in mqtt.messages:
        payload = message.payload
        if isinstance(payload, bytes | bytearray | str):
            apply(
                message.topic.value, bytes(payload) if isinstance(payload, bytearray) else payload
            )
