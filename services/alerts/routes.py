"""Staff alert HTTP routes (list, ack, clear, history, a live stream) and the console page."""

# No `from __future__ import annotations`: FastAPI reads the dependency aliases at run time.

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from stackpulse.kernel.auth import Principal
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import SITE_RE
from stackpulse.services.alerts.lifecycle import AlertBook, AlertNotFound, InvalidTransition
from stackpulse.services.alerts.model import Alert, AlertState, Severity
from stackpulse.services.alerts.notify import AlertBody, TransitionBody, event_id
from stackpulse.web.auth import AnyStaff, Editor, StaffOfSite

log = logging.getLogger("stackpulse.alerts.routes")

STATIC_DIR = FilePath(__file__).parent / "static"
RETRY_MS = 3000
MAX_LIST = 500

StateFilter = Literal["active", "cleared", "unacked", "acked", "all"]
STATE_GROUPS: dict[str, frozenset[AlertState] | None] = {
    "active": frozenset({AlertState.ACTIVE_UNACK, AlertState.ACTIVE_ACK}),
    "cleared": frozenset({AlertState.CLEARED_UNACK, AlertState.CLEARED_ACK}),
    "unacked": frozenset({AlertState.ACTIVE_UNACK, AlertState.CLEARED_UNACK}),
    "acked": frozenset({AlertState.ACTIVE_ACK, AlertState.CLEARED_ACK}),
    "all": None,
}

STREAM_DOC = """Server-Sent Events of this site's alerts, for the staff console.

The first event is `snapshot` (`{site, alerts}`: the active alerts, newest first, as the
list endpoint returns them). Then one `transition` event per change of any alert of the
site (`{event_id, kind, at, by, before, alert}`; `kind` is opened, acked, cleared,
escalated or renotified, `alert` the alert after it). Comment lines keep the connection
alive. Needs a staff bearer token (read it with `fetch`: `EventSource` sends no headers)."""


class ErrorDetail(BaseModel):
    detail: str


class AlertSnapshot(BaseModel):
    site: str
    alerts: list[AlertBody]


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "No or a bad bearer token"},
    403: {"model": ErrorDetail, "description": "Not staff of this site, or no right to change"},
    404: {"model": ErrorDetail, "description": "Unknown site or alert"},
}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **RESPONSES,
    409: {"model": ErrorDetail, "description": "Not possible in the alert's state"},
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def alerts_router(
    book: AlertBook,
    layouts: Sequence[Layout],
    *,
    clock: Callable[[], datetime] = _utcnow,
    poll_seconds: float = 1.0,
    ping_seconds: float = 15.0,
    send_timeout: float = 30.0,
    db_timeout: float = 30.0,
) -> APIRouter:
    """`/api/v1` alert routes over `book` (the state database) for the sites of `layouts`.

    `clock` stamps acks and clears (the service's clock, so a simulated day stays one
    day); the stream polls the database every `poll_seconds`.
    """
    known = {lay.site for lay in layouts}
    router = APIRouter(prefix="/api/v1", tags=["alerts"])

    async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(db_timeout):
            return await asyncio.to_thread(fn, *args, **kwargs)

    def site_id(
        site: Annotated[str, Path(description="Site id, e.g. `main`", max_length=32)],
    ) -> str:
        if not SITE_RE.fullmatch(site) or site not in known:
            names = ", ".join(sorted(known)) or "none"
            raise HTTPException(404, f"unknown site {site[:40]!r}; known sites: {names}")
        return site

    Site = Annotated[str, Depends(site_id)]

    async def visible(alert_id: str, who: Principal) -> Alert:
        """The alert, or 404 when there is none or it belongs to a site `who` cannot see."""
        alert: Alert | None = await db(book.get, alert_id) if len(alert_id) <= 64 else None
        if alert is None or not who.can_see(alert.site):
            raise HTTPException(404, "no such alert")
        return alert

    @router.get("/sites/{site}/alerts", responses=RESPONSES)
    async def list_alerts(
        site: Site,
        who: StaffOfSite,
        state: Annotated[
            StateFilter,
            Query(description="active (default), cleared, unacked, acked or all"),
        ] = "active",
        severity: Annotated[Severity | None, Query()] = None,
        rule: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = MAX_LIST,
    ) -> list[AlertBody]:
        """The site's alerts, newest first; by default the active ones."""
        found: list[Alert] = await db(
            book.list,
            site=site,
            states=STATE_GROUPS[state],
            rule=rule,
            severity=severity,
            limit=limit,
        )
        return [AlertBody.of(a) for a in found]

    @router.get("/alerts/{alert_id}", responses=RESPONSES)
    async def get_alert(alert_id: str, who: AnyStaff) -> AlertBody:
        return AlertBody.of(await visible(alert_id, who))

    @router.get("/alerts/{alert_id}/history", responses=RESPONSES)
    async def alert_history(alert_id: str, who: AnyStaff) -> list[TransitionBody]:
        """Every transition of the alert, oldest first."""
        await visible(alert_id, who)
        history = await db(book.history, alert_id)
        return [TransitionBody.of(t, event_id(t)) for t in history]

    async def change(alert_id: str, who: Principal, action: Literal["ack", "clear"]) -> AlertBody:
        await visible(alert_id, who)
        fn = book.ack if action == "ack" else book.clear
        try:
            alert: Alert = await db(fn, alert_id, who.username, clock())
        except AlertNotFound:
            raise HTTPException(404, "no such alert") from None
        except InvalidTransition as err:
            raise HTTPException(409, str(err)) from None
        log.info("%s: alert %s (%s) by %s", action, alert.id, alert.rule, who.username)
        return AlertBody.of(alert)

    @router.post("/alerts/{alert_id}/ack", responses=CHANGE_RESPONSES)
    async def ack_alert(alert_id: str, who: Editor) -> AlertBody:
        """Acknowledge: someone is on it. The alert stays active until its condition ends."""
        return await change(alert_id, who, "ack")

    @router.post("/alerts/{alert_id}/clear", responses=CHANGE_RESPONSES)
    async def clear_alert(alert_id: str, who: Editor) -> AlertBody:
        """Clear by hand: dealt with. It does not open again while its condition holds."""
        return await change(alert_id, who, "clear")

    @router.get(
        "/sites/{site}/alerts/stream",
        description=STREAM_DOC,
        response_class=EventSourceResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "An event stream"},
            **RESPONSES,
        },
    )
    async def stream(site: Site, who: StaffOfSite) -> EventSourceResponse:
        return EventSourceResponse(
            _events(book, site, poll_seconds, db),
            ping=ping_seconds,
            send_timeout=send_timeout,
            headers={"Cache-Control": "no-store"},
        )

    return router


async def _events(
    book: AlertBook,
    site: str,
    poll_seconds: float,
    db: Callable[..., Any],
) -> AsyncIterator[ServerSentEvent]:
    # The cursor is taken before the snapshot: a transition in between is sent twice
    # (harmless, the page keys alerts by id), never missed.
    cursor: int = await db(book.last_cursor)
    active = await db(book.list, site=site, states=STATE_GROUPS["active"], limit=MAX_LIST)
    snapshot = AlertSnapshot(site=site, alerts=[AlertBody.of(a) for a in active])
    yield ServerSentEvent(snapshot.model_dump_json(), event="snapshot", retry=RETRY_MS)
    while True:
        await asyncio.sleep(poll_seconds)
        cursor, transitions = await db(book.transitions_since, cursor, site=site, limit=MAX_LIST)
        for t in transitions:
            body = TransitionBody.of(t, event_id(t))
            yield ServerSentEvent(body.model_dump_json(), event="transition")


def console_router(layouts: Sequence[Layout]) -> APIRouter:
    """The staff console at `/console` and `/console/{site}`; the page itself holds no data."""
    known = {lay.site for lay in layouts}
    router = APIRouter(include_in_schema=False)
    headers = {"Cache-Control": "no-cache"}
    assets = {"app.js", "style.css"}

    @router.get("/console")
    async def console_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=headers)

    @router.get("/console/{site}")
    async def console_site_page(site: Annotated[str, Path(max_length=32)]) -> FileResponse:
        if site not in known:
            raise HTTPException(
                404, f"unknown site {site!r}; known sites: {', '.join(sorted(known))}"
            )
        return FileResponse(STATIC_DIR / "index.html", headers=headers)

    @router.get("/static/alerts/{name}")
    async def console_asset(name: Annotated[str, Path(max_length=32)]) -> FileResponse:
        if name not in assets:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC_DIR / name, headers=headers)

    return router


__all__ = ["STATIC_DIR", "alerts_router", "console_router"]
