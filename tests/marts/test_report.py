"""The built-in report on a warehouse built by the real pipeline (generated lake, compaction, DuckDB
load, `dbt build`): every chart has data, the Dagster asset links the chart files in its metadata, and
the HTML page, opened in headless Chromium (Debian's `chromium`, `make chromium`), shows every
chart rendered with data, checked from the page itself (its self-check script's verdict in the DOM).

The browser test saves its screenshot as a test artifact: `test-artifacts/report.png` at the repo
root (and under the test's tmp_path)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lakehouse.config import load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.report import CHARTS, MARTS, render_report, warehouse_reader
from lakehouse.state.compact import compact
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")  # the project's environment, not PATH
ARTIFACT = ROOT / "test-artifacts" / "report.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",
]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> DuckDBWarehouse:
    root = tmp_path_factory.mktemp("report")
    generate_lake(
        root / "lake", GeneratorOptions(events=3_000, seed=7, flush_size=500, events_per_second=0.05)
    )
    os.environ.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "test-key")
    results = compact(str(root / "lake"), str(root / "state"), load_config())
    assert not [r.error for r in results if r.failed]
    wh = DuckDBWarehouse(root / "warehouse.duckdb")
    for entry in load_config().tables:
        wh.load(str(root / "state"), entry)
        if entry.history:
            wh.load_history(str(root / "state"), entry)
    run = subprocess.run(
        [
            str(DBT),
            "build",
            "--target",
            "duckdb",
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
            "--target-path",
            str(root / "target"),
            "--log-path",
            str(root / "logs"),
        ],
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "LAKEHOUSE_DUCKDB": str(wh.path)},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return wh


def read_marts(wh: DuckDBWarehouse):
    return warehouse_reader(wh, lambda mart: f"main_marts.{mart}")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


class PageState(HTMLParser):
    """The <body> and each <figure class="chart"> attributes of a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.figures: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        elif tag == "figure" and "chart" in (attributes.get("class") or "").split():
            self.figures[attributes["data-chart"] or ""] = attributes


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: `make chromium` installs Debian's package (`make test` does)")
    run = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def page_state(index: Path, tmp_path: Path) -> PageState:
    """Chromium loads the page, runs its scripts (virtual time lets the load handler finish), then
    prints the DOM with the self-check's verdict."""
    run = chromium(
        "--virtual-time-budget=15000", "--dump-dom", index.as_uri(), profile=tmp_path / "profile-dom"
    )
    state = PageState()
    state.feed(run.stdout)
    return state


def test_report_renders_every_chart_with_data(warehouse, tmp_path):
    report = render_report(read_marts(warehouse), tmp_path / "report")
    assert [c.name for c in report.charts] == [c.name for c in CHARTS]
    assert all(points > 0 for points in report.points.values()), report.points
    for chart in report.charts:
        width, height = png_size(chart.png)
        assert width >= 600 and height >= 300, chart.name
    page = report.index.read_text(encoding="utf-8")
    assert report.index == tmp_path / "report" / "index.html"
    assert page.count('<figure class="chart"') == len(CHARTS)
    assert page.count('src="data:image/png;base64,') == len(CHARTS)  # self-contained
    for name, points in report.points.items():
        assert f'data-chart="{name}" data-points="{points}"' in page
    # the confusion matrix plots every non-empty cell of its mart
    cells = warehouse.read("main_marts.mart_confusion_matrix", columns=["scans"]).column("scans").to_pylist()
    assert report.points["confusion"] == sum(1 for s in cells if s > 0)


def test_report_in_headless_chromium_shows_every_chart_with_data(warehouse, tmp_path):
    """The page's own check, read back from the DOM Chromium dumps: every chart's image decoded,
    has data points and drew coloured marks; plus a full-page screenshot (test-artifacts/report.png)."""
    report = render_report(read_marts(warehouse), tmp_path / "report")
    state = page_state(report.index, tmp_path)
    assert state.body.get("data-report-check") == "ok", (state.body, state.figures)
    assert state.body.get("data-charts-ok") == state.body.get("data-charts-total") == str(len(CHARTS))
    assert set(state.figures) == set(report.points)
    for name, figure in state.figures.items():
        assert figure.get("data-rendered") == "true", (name, figure)
        assert figure.get("data-points") == str(report.points[name])
        assert int(figure.get("data-image-width") or 0) > 0, name
        assert int(figure.get("data-coloured-pixels") or 0) > 500, (name, figure)

    shot = tmp_path / "report.png"
    chromium(
        "--virtual-time-budget=15000",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        report.index.as_uri(),
        profile=tmp_path / "profile-shot",
    )
    assert png_size(shot) == (1200, 3000)
    assert shot.stat().st_size > 100_000  # the charts are in it, not a blank page (a blank one is ~10 kB)
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)


def test_the_page_check_flags_charts_without_data(warehouse, tmp_path):
    """Empty marts: the charts say "no data", carry 0 points, and the page's check fails them."""
    read = read_marts(warehouse)
    report = render_report(lambda mart, columns: read(mart, columns).slice(0, 0), tmp_path / "empty")
    assert set(report.points.values()) == {0}
    state = page_state(report.index, tmp_path)
    assert state.body.get("data-report-check") == "failed"
    assert state.body.get("data-charts-ok") == "0"
    assert {f.get("data-rendered") for f in state.figures.values()} == {"false"}
    assert {f.get("data-coloured-pixels") for f in state.figures.values()} == {
        "0"
    }  # drawn, but nothing in colour


def test_the_dagster_asset_attaches_the_charts(warehouse, tmp_path):
    import dagster as dg

    from assets.marts.report import marts_report
    from assets.resources import DuckDBWarehouseResource

    assert marts_report.key == dg.AssetKey(["reports", "marts_report"])
    assert {k.to_user_string() for k in marts_report.asset_deps[marts_report.key]} == {
        f"marts/{m}" for m in MARTS
    }
    assert marts_report.group_names_by_key[marts_report.key] == "marts"
    out = tmp_path / "report"
    result = dg.materialize(
        [marts_report],
        resources={"warehouse": DuckDBWarehouseResource(path=str(warehouse.path))},
        run_config={"ops": {"reports__marts_report": {"config": {"out_dir": str(out)}}}},
    )
    assert result.success
    (event,) = result.asset_materializations_for_node("reports__marts_report")
    metadata = event.metadata
    assert metadata["path"] == dg.MetadataValue.path(str(out / "index.html"))
    assert (out / "index.html").is_file() and all(
        (out / "charts" / f"{c.name}.png").is_file() for c in CHARTS
    )
    markdown = metadata["charts"].value
    assert isinstance(metadata["charts"], dg.MarkdownMetadataValue)
    # the images stay files: the metadata names them (paths, a link each), it does not carry them
    assert "data:" not in markdown and all(f"(charts/{c.name}.png)" in markdown for c in CHARTS)
    assert all(
        metadata[f"chart_{c.name}"] == dg.MetadataValue.path(str(out / "charts" / f"{c.name}.png"))
        for c in CHARTS
    )
    assert metadata["url"] == dg.MetadataValue.url((out / "index.html").as_uri())
    assert sum(len(repr(v.value)) for v in metadata.values()) < 10_000
    points = metadata["data_points"].value
    assert set(points) == {c.name for c in CHARTS} and all(v > 0 for v in points.values())
    assert all(metadata[f"points_{name}"].value == v for name, v in points.items())
    assert metadata["empty_charts"].value == 0
