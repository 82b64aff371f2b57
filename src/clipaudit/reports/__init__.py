"""Reports: self-contained HTML for curation runs and evaluations, and compliance documents."""

from __future__ import annotations

from clipaudit.reports.cards import write_cards
from clipaudit.reports.render import ReportFiles, write_report

__all__ = ["ReportFiles", "write_cards", "write_report"]
