"""The demo's in-process broker: retained messages reach subscribers, and only them."""

from __future__ import annotations

import asyncio
import contextlib

from stackpulse.broker import embedded_broker, free_port
from stackpulse.kernel.bus import client


async def test_retained_messages_go_only_to_sessions_that_subscribed() -> None:
    async with embedded_broker(port=free_port()) as broker:
        async with client(broker, identifier="watcher") as watcher:
            await watcher.subscribe("lib/v1/+/seat/+/status", qos=1)
            async with client(broker, identifier="device") as device:
                await device.publish(
                    "lib/v1/main/seat/seat-0001/status", b'{"online":true}', qos=1, retain=True
                )
            async with asyncio.timeout(5):
                got = await anext(aiter(watcher.messages))
            assert got.payload == b'{"online":true}'
            # A second device connects without subscribing to anything: amqtt 0.12 would
            # push it the retained status above (our subclass stops that).
            async with client(broker, identifier="device-2") as quiet:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.5):
                        stray = await anext(aiter(quiet.messages))
                        raise AssertionError(f"unsubscribed client got {stray.topic}")
        # A new subscriber still gets the retained message, as MQTT says.
        async with client(broker, identifier="late") as late:
            await late.subscribe("lib/v1/main/seat/+/status", qos=1)
            async with asyncio.timeout(5):
                got = await anext(aiter(late.messages))
            assert got.retain and got.payload == b'{"online":true}'
