"""The embedded MQTT broker of the demo (amqtt, MQTT 3.1.1, loopback only)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker

from kernel.bus import BrokerAddress


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def embedded_broker(
    host: str = "127.0.0.1", port: int = 1883
) -> AsyncIterator[BrokerAddress]:
    """Start amqtt on host:port (a free port if that one is taken); stop it on exit."""
    if not port_is_free(host, port):
        port = free_port(host)
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # amqtt warns of its own PUBACK bookkeeping under a burst of QoS 1 deliveries (404
    # devices connecting at once); the demo checks showed no message lost, so keep the
    # console readable. Mosquitto is the broker for anything real.
    logging.getLogger("amqtt.mqtt.protocol.handler").setLevel(logging.ERROR)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield BrokerAddress(host, port)
    finally:
        await broker.shutdown()
