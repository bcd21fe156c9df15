"""The embedded MQTT broker of the demo (amqtt, MQTT 3.1.1, loopback only)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from amqtt.broker import Broker

from stackpulse.kernel.bus import BrokerAddress


class _Broker(Broker):  # type: ignore[misc]
    """amqtt with one bug worked around.

    amqtt 0.12 sends, on every client connect, the retained messages of every topic
    filter that ANY client has subscribed to — to the connecting client, subscribed or
    not. With 400 simulated devices and the gateway's wildcard subscription that is
    400 x 400 unwanted deliveries, which the devices never acknowledge, stalling the
    broker. Only send retained messages to a session that holds the subscription.
    """

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        holders = self._subscriptions.get(subscription[0], ())
        if any(s.client_id == session.client_id for s, _ in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


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
    broker = _Broker(
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
