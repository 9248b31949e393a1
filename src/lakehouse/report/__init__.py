"""Built-in report: the marts as charts (PNG files) and one static, self-contained HTML page.

No Dagster here; ``assets/marts/report.py`` wraps :func:`render_report` as an asset."""

from lakehouse.report.charts import CHARTS, MARTS, ChartSpec, MartReader
from lakehouse.report.render import RenderedChart, Report, render_report, report_dir, warehouse_reader

__all__ = [
    "CHARTS",
    "MARTS",
    "ChartSpec",
    "MartReader",
    "RenderedChart",
    "Report",
    "render_report",
    "report_dir",
    "warehouse_reader",
]
