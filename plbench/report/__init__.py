"""Reports of run results: tables (mean ± std over seeds, paired differences, published numbers), figures,
markdown and a self-contained HTML page.

Modules: :mod:`~plbench.report.records` (run folders as records, fallbacks for older summaries),
:mod:`~plbench.report.published` (the published-numbers file), :mod:`~plbench.report.tables` (pure table
building), :mod:`~plbench.report.render` (markdown/HTML/CSV), :mod:`~plbench.report.figures` (PNG),
:mod:`~plbench.report.document` (the report folder).
"""

from plbench.report.document import write_report
from plbench.report.published import PublishedNumber, load_published
from plbench.report.records import RunRecord, column_label, load_records
from plbench.report.tables import ResultTable, build_tables, paired_differences

__all__ = ["PublishedNumber", "ResultTable", "RunRecord", "build_tables", "column_label", "load_published",
           "load_records", "paired_differences", "write_report"]
