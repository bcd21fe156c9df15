"""Topic building and parsing for protocol.md section 1."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_ROOT = "lib/v1"

SITE_RE = re.compile(r"[a-z0-9-]{1,32}")
DEVICE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Kind(StrEnum):
    GATE = "gate"
    SEAT = "seat"
    SHELF = "shelf"
    CIRC = "circ"


class Channel(StrEnum):
    DATA = "data"
    STATUS = "status"


class TopicError(ValueError):
    """A topic that does not parse under the protocol; the message says why."""


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """`{root}/{site}/{kind}/{device}/{channel}`: what a device publishes on."""

    root: str
    site: str
    kind: Kind
    device: str
    channel: Channel

    def __str__(self) -> str:
        return f"{self.root}/{self.site}/{self.kind}/{self.device}/{self.channel}"


def device_topic(
    root: str, site: str, kind: Kind | str, device: str, channel: Channel | str
) -> str:
    """Build a device topic, validating every level."""
    kind = Kind(kind)
    channel = Channel(channel)
    if not SITE_RE.fullmatch(site):
        raise TopicError(f"site {site!r} must match [a-z0-9-]{{1,32}}")
    if not DEVICE_RE.fullmatch(device):
        raise TopicError(f"device {device!r} must match [A-Za-z0-9._-]{{1,64}}")
    return f"{root}/{site}/{kind}/{device}/{channel}"


def parse_device_topic(topic: str, root: str = DEFAULT_ROOT) -> DeviceTopic:
    """Parse a raw device topic; raise TopicError naming the level that is wrong."""
    prefix = root + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic does not start with root {root!r}")
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 4:
        raise TopicError(
            f"topic has {len(parts)} levels after the root, expected 4 (site/kind/device/channel)"
        )
    site, kind, device, channel = parts
    if site.startswith("_") or kind.startswith("_"):
        raise TopicError("system output topic (level begins with '_'), not device input")
    if not SITE_RE.fullmatch(site):
        raise TopicError(f"site {site[:40]!r} must match [a-z0-9-]{{1,32}}")
    try:
        k = Kind(kind)
    except ValueError:
        raise TopicError(f"kind {kind[:40]!r} is not one of gate, seat, shelf, circ") from None
    if not DEVICE_RE.fullmatch(device):
        raise TopicError(f"device {device[:70]!r} must match [A-Za-z0-9._-]{{1,64}}")
    try:
        ch = Channel(channel)
    except ValueError:
        raise TopicError(f"channel {channel[:40]!r} is not data or status") from None
    return DeviceTopic(root, site, k, device, ch)


def device_subscriptions(root: str) -> list[str]:
    """What the gateway subscribes to: every topic one to four levels below the root.

    Four levels is the device shape; shorter ones are wrong shapes to dead-letter. The
    system's own output (`_events`, `_state`) sits five levels down so that the gateway
    never receives it back; deeper device topics are therefore not read at all.
    """
    return [root + "/+" * n for n in range(1, 5)]


def dead_letter_topic(root: str, site: str | None, kind: str | None, device: str | None) -> str:
    """`{root}/{site}/_dead/{kind}/{device}`, or `{root}/_dead/...` when no site parses."""
    k = kind if kind and DEVICE_RE.fullmatch(kind) else "unknown"
    d = device if device and DEVICE_RE.fullmatch(device) else "unknown"
    if site and SITE_RE.fullmatch(site):
        return f"{root}/{site}/_dead/{k}/{d}"
    return f"{root}/_dead/{k}/{d}"


def event_topic(root: str, site: str, kind: Kind | str, device: str, channel: Channel | str) -> str:
    """Normalized events the gateway republishes for the services."""
    return f"{root}/{site}/_events/{kind}/{device}/{channel}"


# The device level of a batch topic. A device may be called `_batch` too: its own topic
# under `_events` is then `.../_batch/status`, never `.../_batch/data`.
EVENT_BATCH = "_batch"


def event_batch_topic(root: str, site: str, kind: Kind | str) -> str:
    """Data events of one site and kind, many per message (a JSON array), in arrival order.

    One MQTT message per event would cost the gateway, the broker and every service a
    round of work per device message; a batch of up to a few milliseconds costs one.
    Status events stay one per device and retained (`event_topic`).
    """
    return f"{root}/{site}/_events/{kind}/{EVENT_BATCH}/data"


def event_subscription(root: str, site: str = "+") -> str:
    return f"{root}/{site}/_events/#"


def state_topic(root: str, site: str, service: str, what: str, ident: str) -> str:
    """Derived state (retained) a service publishes, e.g. `_state/occupancy/seat/{id}`."""
    return f"{root}/{site}/_state/{service}/{what}/{ident}"


def state_subscription(root: str, site: str = "+") -> str:
    return f"{root}/{site}/_state/#"


def parse_system_topic(topic: str, root: str, level: str) -> list[str] | None:
    """Split `{root}/{site}/{level}/...` into [site, ...rest]; None if it is not one."""
    prefix = root + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) < 3 or parts[1] != level:
        return None
    return [parts[0], *parts[2:]]
