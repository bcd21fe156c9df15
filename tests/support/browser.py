"""Test harness for the API and page: uvicorn on a free port, chromium at phone size, paho."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import uvicorn
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from playwright.async_api import Page, ViewportSize, async_playwright

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PHONE: ViewportSize = {"width": 375, "height": 812}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serve_app(app: FastAPI, *, start_timeout: float = 10.0) -> AsyncIterator[str]:
    """Run `app` under uvicorn in this event loop; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
    try:
        async with asyncio.timeout(start_timeout):
            while not server.started:
                if task.done():
                    task.result()  # surfaces why it did not start
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            task.cancel()


@pytest.fixture
async def phone_page() -> AsyncIterator[Page]:
    """A Playwright page in headless chromium, 375x812 like a phone; skips without chromium."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            context = await browser.new_context(
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
            )
            page = await context.new_page()
            page.set_default_timeout(10_000)
            yield page
            await context.close()
        finally:
            await browser.close()


def publish_retained(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish retained QoS 1 messages with paho and wait until the broker has each one."""
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_connect = lambda *_args: connected.set()
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        if not connected.wait(timeout=10):
            raise TimeoutError(f"no CONNACK from the broker at {host}:{port} within 10 s")
        infos = [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                raise TimeoutError("the broker did not acknowledge a publish within 10 s")
    finally:
        client.disconnect()
        client.loop_stop()
