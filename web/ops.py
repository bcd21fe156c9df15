"""Operations endpoints of every process: alive, ready, and Prometheus metrics."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from stackpulse.kernel.health import Health
from stackpulse.web.deps import State, WebState


class Health200(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    components: dict[str, str]  # component -> "ready", or what it still waits for


ops_router = APIRouter(tags=["operations"])


@ops_router.get("/healthz")
async def healthz() -> Health200:
    """200 while the process lives."""
    return Health200(status="ok")


@ops_router.get("/readyz", responses={503: {"model": Ready, "description": "Not ready"}})
async def readyz(state: State) -> Response:
    """200 only when every component of this process is connected, subscribed and
    restored; 503 with the reason per component otherwise."""
    health = state.health
    body = Ready(ready=health.ready, components=health.report())
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@ops_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(state: State) -> Response:
    """Every component's counters and gauges, in the Prometheus text format."""
    return Response(generate_latest(state.health.registry), media_type=CONTENT_TYPE_LATEST)


def ops_app(health: Health) -> FastAPI:
    """The `--ops HOST:PORT` listener of a process that serves no API."""
    app = FastAPI(title="StackPulse operations", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = WebState(layouts={}, health=health)
    app.include_router(ops_router)
    return app


__all__ = ["Ready", "ops_app", "ops_router"]
