"""The accountant's dashboard: one offline HTML file with charts of the processing reports.

``collect_dashboard_data`` reads the figures through the same report functions as
``smartpurse report … --format json``; ``render_dashboard`` turns them into a page
without touching the database. Keeping the two apart lets each be tested alone.
"""

from __future__ import annotations

from processing.dashboard.collect import collect_dashboard_data, dashboard_options, write_dashboard
from processing.dashboard.model import (
    Anomaly,
    DailySales,
    DashboardData,
    FloatPoint,
    PointsLiability,
    SettlementRow,
    TerminalRow,
)
from processing.dashboard.render import render_dashboard

__all__ = [
    "Anomaly",
    "DailySales",
    "DashboardData",
    "FloatPoint",
    "PointsLiability",
    "SettlementRow",
    "TerminalRow",
    "collect_dashboard_data",
    "dashboard_options",
    "render_dashboard",
    "write_dashboard",
]
