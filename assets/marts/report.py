"""The built-in report: the marts as charts (PNG) and a static HTML page under the local data folder.
The materialization's metadata points at those files (paths, a small markdown table of the charts),
never the images themselves: each would add hundreds of KB to the event log per run."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg

from lakehouse.report import MARTS, render_report, report_dir, warehouse_reader
from lakehouse.warehouse import Warehouse


class ReportConfig(dg.Config):
    out_dir: str = ""  # default: $LAKEHOUSE_REPORT, else <LAKEHOUSE_HOME>/report


@dg.asset(
    key=["reports", "marts_report"],
    group_name="marts",
    kinds={"matplotlib", "html"},
    deps=[dg.AssetKey(["marts", mart]) for mart in MARTS],
    description="Charts of the marts (LLM latency percentiles by stage, daily cost by model, feedback and "
    "label mix, confusion matrix, RAG relevance vs thumbs-up) as PNG files and a static "
    "index.html under <LAKEHOUSE_HOME>/report/; the metadata links the files.",
)
def marts_report(
    context: dg.AssetExecutionContext, config: ReportConfig, warehouse: dg.ResourceParam[Warehouse]
) -> dg.MaterializeResult:
    read = warehouse_reader(warehouse, lambda mart: warehouse.dbt_relation("marts", mart))
    report = render_report(read, config.out_dir or report_dir())
    empty = [name for name, points in report.points.items() if points == 0]
    if empty:
        context.log.warning(f"charts without data: {', '.join(empty)}")
    context.log.info(f"report: {report.index} ({report.points})")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(report.index)),
            "url": dg.MetadataValue.url(report.index.as_uri()),
            "charts": dg.MetadataValue.md(report.markdown()),
            **{f"chart_{name}": dg.MetadataValue.path(str(png)) for name, png in report.pngs.items()},
            "data_points": dg.MetadataValue.json(report.points),
            **{f"points_{name}": points for name, points in report.points.items()},
            "empty_charts": len(empty),
        }
    )
