"""Staff alert HTTP routes (list, ack, clear, history, a live stream) and the console page."""

# No `from __future__ import annotations`: FastAPI reads the dependency aliases at run time.

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from stackpulse.kernel.auth import Principal
from stackpulse.kernel.contracts.alerts import AlertBody, TransitionBody
from stackpulse.services.alerts.lifecycle import AlertNotFound, InvalidTransition
from stackpulse.services.alerts.model import Alert, Severity
from stackpulse.services.alerts.notify import alert_body
from stackpulse.services.alerts.view import MAX_LIST, AlertsView, StateFilter
from stackpulse.web.deps import (
    RETRY_MS,
    STAFF_RESPONSES,
    STREAM_RESPONSE,
    AnyStaff,
    Editor,
    ErrorDetail,
    SiteLayout,
    StaffOfSite,
    State,
    WebState,
    event_stream,
    provided,
)
from stackpulse.web.pages import page_routes

log = logging.getLogger("stackpulse.alerts.routes")

STATIC_DIR = FilePath(__file__).parent / "static"

STREAM_DOC = """Server-Sent Events of this site's alerts, for the staff console.

The first event is `snapshot` (`{site, alerts}`: the active alerts, newest first, as the
list endpoint returns them). Then one `transition` event per change of any alert of the
site (`{event_id, kind, at, by, before, alert}`; `kind` is opened, acked, cleared,
escalated or renotified, `alert` the alert after it). Comment lines keep the connection
alive. Needs a staff bearer token (read it with `fetch`: `EventSource` sends no headers)."""


class AlertSnapshot(BaseModel):
    site: str
    alerts: list[AlertBody]


RESPONSES: dict[int | str, dict[str, Any]] = {
    **STAFF_RESPONSES,
    403: {"model": ErrorDetail, "description": "Not staff of this site, or no right to change"},
    404: {"model": ErrorDetail, "description": "Unknown site or alert"},
}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **RESPONSES,
    409: {"model": ErrorDetail, "description": "Not possible in the alert's state"},
}

View = Annotated[AlertsView, Depends(provided(AlertsView))]
router = APIRouter(prefix="/api/v1", tags=["alerts"])


async def _visible(view: AlertsView, alert_id: str, who: Principal) -> Alert:
    alert = await view.visible(alert_id, who)
    if alert is None:
        raise HTTPException(404, "no such alert")
    return alert


@router.get("/sites/{site}/alerts", responses=RESPONSES)
async def list_alerts(
    layout: SiteLayout,
    who: StaffOfSite,
    view: View,
    status: Annotated[
        StateFilter,
        Query(alias="state", description="active (default), cleared, unacked, acked or all"),
    ] = "active",
    severity: Annotated[Severity | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = MAX_LIST,
) -> list[AlertBody]:
    """The site's alerts, newest first; by default the active ones."""
    return await view.alerts(layout.site, status, severity=severity, rule=rule, limit=limit)


@router.get("/alerts/{alert_id}", responses=RESPONSES)
async def get_alert(alert_id: str, who: AnyStaff, view: View) -> AlertBody:
    return alert_body(await _visible(view, alert_id, who))


@router.get("/alerts/{alert_id}/history", responses=RESPONSES)
async def alert_history(alert_id: str, who: AnyStaff, view: View) -> list[TransitionBody]:
    """Every transition of the alert, oldest first."""
    await _visible(view, alert_id, who)
    return await view.history(alert_id)


async def _change(
    view: AlertsView,
    state: WebState,
    alert_id: str,
    who: Principal,
    action: Literal["ack", "clear"],
) -> AlertBody:
    await _visible(view, alert_id, who)
    try:
        return await view.change(alert_id, who, action, state.clock())
    except AlertNotFound:
        raise HTTPException(404, "no such alert") from None
    except InvalidTransition as err:
        raise HTTPException(409, str(err)) from None


@router.post("/alerts/{alert_id}/ack", responses=CHANGE_RESPONSES)
async def ack_alert(alert_id: str, who: Editor, view: View, state: State) -> AlertBody:
    """Acknowledge: someone is on it. The alert stays active until its condition ends."""
    return await _change(view, state, alert_id, who, "ack")


@router.post("/alerts/{alert_id}/clear", responses=CHANGE_RESPONSES)
async def clear_alert(alert_id: str, who: Editor, view: View, state: State) -> AlertBody:
    """Clear by hand: dealt with. It does not open again while its condition holds."""
    return await _change(view, state, alert_id, who, "clear")


@router.get(
    "/sites/{site}/alerts/stream",
    description=STREAM_DOC,
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSE, **RESPONSES},
)
async def stream(
    layout: SiteLayout, who: StaffOfSite, view: View, state: State
) -> EventSourceResponse:
    poll = state.settings.alerts_poll.total_seconds()
    return event_stream(state, _events(view, layout.site, poll))


async def _events(view: AlertsView, site: str, poll: float) -> AsyncIterator[ServerSentEvent]:
    # The cursor is taken before the snapshot: a transition in between is sent twice
    # (harmless, the page keys alerts by id), never missed.
    view.streams += 1
    try:
        cursor = await view.cursor()
        snapshot = AlertSnapshot(site=site, alerts=await view.alerts(site, "active"))
        yield ServerSentEvent(snapshot.model_dump_json(), event="snapshot", retry=RETRY_MS)
        while True:
            await asyncio.sleep(poll)
            cursor, transitions = await view.since(cursor, site)
            for body in transitions:
                yield ServerSentEvent(body.model_dump_json(), event="transition")
    finally:
        view.streams -= 1


pages = page_routes(STATIC_DIR / "index.html", "/console", "/console/{site}")

__all__ = ["STATIC_DIR", "pages", "router"]
