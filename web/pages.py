"""Pages: HTML shells that hold no data (the API checks logins), and their assets."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from stackpulse.web.deps import SiteLayout

NO_CACHE = {"Cache-Control": "no-cache"}


def page_routes(page: Path, *paths: str) -> APIRouter:
    """GET each of `paths` serves `page`; a path with `{site}` answers 404 for an unknown one."""
    router = APIRouter(include_in_schema=False)
    for path in paths:
        if "{site}" in path:

            async def site_page(layout: SiteLayout) -> FileResponse:
                return FileResponse(page, headers=NO_CACHE)

            router.add_api_route(path, site_page, methods=["GET"], name=f"page {path}")
        else:

            async def plain_page() -> FileResponse:
                return FileResponse(page, headers=NO_CACHE)

            router.add_api_route(path, plain_page, methods=["GET"], name=f"page {path}")
    return router


__all__ = ["NO_CACHE", "page_routes"]
