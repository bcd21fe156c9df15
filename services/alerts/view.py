"""The staff's read model of alerts: the state database the alerts service writes, read
(and acked or cleared) by the API without blocking its event loop, every call bounded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from stackpulse.kernel.auth import Principal
from stackpulse.kernel.contracts.alerts import AlertBody, TransitionBody
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import Alert, AlertState, Severity
from stackpulse.services.alerts.notify import alert_body, event_id, transition_body

log = logging.getLogger("stackpulse.alerts")

T = TypeVar("T")
MAX_LIST = 500
StateFilter = Literal["active", "cleared", "unacked", "acked", "all"]
STATE_GROUPS: dict[str, frozenset[AlertState] | None] = {
    "active": frozenset({AlertState.ACTIVE_UNACK, AlertState.ACTIVE_ACK}),
    "cleared": frozenset({AlertState.CLEARED_UNACK, AlertState.CLEARED_ACK}),
    "unacked": frozenset({AlertState.ACTIVE_UNACK, AlertState.CLEARED_UNACK}),
    "acked": frozenset({AlertState.ACTIVE_ACK, AlertState.CLEARED_ACK}),
    "all": None,
}


class AlertsView:
    """What the console and the API ask of the alerts, as their published bodies."""

    def __init__(self, book: AlertBook, *, timeout: timedelta = timedelta(seconds=30)) -> None:
        self.book = book
        self.timeout = timeout
        self.streams = 0  # consoles following the alerts now (for /metrics)

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with asyncio.timeout(self.timeout.total_seconds()):
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def alerts(
        self,
        site: str,
        state: StateFilter = "active",
        *,
        severity: Severity | None = None,
        rule: str | None = None,
        limit: int = MAX_LIST,
    ) -> list[AlertBody]:
        found = await self._db(
            self.book.list,
            site=site,
            states=STATE_GROUPS[state],
            rule=rule,
            severity=severity,
            limit=limit,
        )
        return [alert_body(a) for a in found]

    async def visible(self, alert_id: str, who: Principal) -> Alert | None:
        """The alert, or None when there is none or it belongs to a site `who` cannot see
        (ids of other sites reveal nothing)."""
        alert = await self._db(self.book.get, alert_id) if len(alert_id) <= 64 else None
        return alert if alert is not None and who.can_see(alert.site) else None

    async def history(self, alert_id: str) -> list[TransitionBody]:
        return [
            transition_body(t, event_id(t)) for t in await self._db(self.book.history, alert_id)
        ]

    async def change(
        self, alert_id: str, who: Principal, action: Literal["ack", "clear"], at: datetime
    ) -> AlertBody:
        """Ack or clear; lifecycle.AlertNotFound or InvalidTransition say why not."""
        fn = self.book.ack if action == "ack" else self.book.clear
        alert = await self._db(fn, alert_id, who.username, at)
        log.info("%s: alert %s (%s) by %s", action, alert.id, alert.rule, who.username)
        return alert_body(alert)

    async def cursor(self) -> int:
        return await self._db(self.book.last_cursor)

    async def since(self, cursor: int, site: str) -> tuple[int, list[TransitionBody]]:
        """Transitions of `site` after `cursor`, and the cursor to ask from next."""
        cursor, found = await self._db(
            self.book.transitions_since, cursor, site=site, limit=MAX_LIST
        )
        return cursor, [transition_body(t, event_id(t)) for t in found]


__all__ = ["MAX_LIST", "STATE_GROUPS", "AlertsView", "StateFilter"]
