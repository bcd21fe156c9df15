"""The managers' live view and daily reports, served by the API."""

from stackpulse.services.reports.routes import manager_pages, reports_router

__all__ = ["manager_pages", "reports_router"]
