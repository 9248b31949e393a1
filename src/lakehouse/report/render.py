"""Render the charts to PNG files and one self-contained ``index.html`` (images as data URIs)."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template

from lakehouse.report.charts import CHARTS, MARTS, ChartSpec, MartReader
from lakehouse.settings import get_settings

TEMPLATE = Path(__file__).with_name("template.html")
DPI = 100


def report_dir() -> Path:
    """``LAKEHOUSE_REPORT``, else ``<LAKEHOUSE_HOME>/report``."""
    return get_settings().report_dir


def warehouse_reader(warehouse, relation: Callable[[str], str]) -> MartReader:
    """A ``read(mart, columns)`` over any warehouse (``.read(relation, columns)``), ``relation``
    naming a mart's relation there (e.g. ``lambda m: f"main_marts.{m}"`` on DuckDB)."""
    return lambda mart, columns: warehouse.read(relation(mart), columns=columns)


@dataclass(frozen=True)
class RenderedChart:
    name: str
    title: str
    description: str
    png: Path
    points: int
    png_bytes: bytes

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png_bytes).decode("ascii")


@dataclass(frozen=True)
class Report:
    index: Path
    charts: tuple[RenderedChart, ...]
    generated_at: datetime

    @property
    def points(self) -> dict[str, int]:
        return {c.name: c.points for c in self.charts}

    @property
    def pngs(self) -> dict[str, Path]:
        return {c.name: c.png for c in self.charts}

    def markdown(self) -> str:
        """The charts as a short markdown table, each PNG linked by its path relative to the index
        (e.g. for Dagster asset metadata: the images stay files, a few hundred bytes here)."""
        lines = [
            f"Marts report, generated {self.generated_at:%Y-%m-%d %H:%M} UTC: {self.index}",
            "",
            "| chart | data points | file |",
            "|---|---|---|",
        ]
        for c in self.charts:
            rel = c.png.relative_to(self.index.parent).as_posix()
            lines.append(f"| {c.title} | {c.points} | [{rel}]({rel}) |")
        return "\n".join(lines) + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _draw(spec: ChartSpec, read: MartReader) -> tuple[bytes, int]:
    fig, points = spec.draw(read)
    fig.suptitle(spec.title, fontsize=13, fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue(), points


def _figure_html(chart: RenderedChart, out_dir: Path) -> str:
    e = html.escape
    return (
        f'<figure class="chart" id="chart-{e(chart.name)}" data-chart="{e(chart.name)}" '
        f'data-points="{chart.points}">\n'
        f"  <figcaption><h2>{e(chart.title)}</h2><p>{e(chart.description)} "
        f'<span class="points">Data points: {chart.points}.</span> '
        f'<a href="{e(chart.png.relative_to(out_dir).as_posix())}">PNG</a></p></figcaption>\n'
        f'  <img src="{chart.data_uri()}" alt="{e(chart.title)}">\n'
        f"</figure>"
    )


def render_report(
    read: MartReader, out_dir: str | Path | None = None, charts: tuple[ChartSpec, ...] = CHARTS
) -> Report:
    """Draw every chart from the marts ``read(mart, columns)`` returns (Arrow), write
    ``<out_dir>/charts/<name>.png`` and ``<out_dir>/index.html``; each file is replaced atomically."""
    out = Path(out_dir) if out_dir is not None else report_dir()
    (out / "charts").mkdir(parents=True, exist_ok=True)
    generated_at = datetime.now(UTC)
    rendered = []
    for spec in charts:
        png, points = _draw(spec, read)
        path = out / "charts" / f"{spec.name}.png"
        _write_atomic(path, png)
        rendered.append(RenderedChart(spec.name, spec.title, spec.description, path, points, png))
    page = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        generated_at=f"{generated_at:%Y-%m-%d %H:%M} UTC",
        marts=html.escape(", ".join(m for m in MARTS if any(m in s.marts for s in charts))),
        nav="".join(f'<a href="#chart-{html.escape(c.name)}">{html.escape(c.title)}</a>' for c in rendered),
        figures="\n".join(_figure_html(c, out) for c in rendered),
    )
    index = out / "index.html"
    _write_atomic(index, page.encode("utf-8"))
    return Report(index, tuple(rendered), generated_at)
