"""The report's charts: each reads its marts through a ``read(mart, columns)`` function, shapes them
with polars and draws one matplotlib figure (no pyplot: figures are plain objects, Agg-rendered).

Every chart returns its figure and its number of data points, the aggregated values it plots (a
chart with 0 points is drawn as an explicit "no data" figure, never as an empty axes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn, not when the code location loads
    from matplotlib.figure import Figure

MartReader = Callable[[str, list[str]], pa.Table]

STAGE_ORDER = ("vision", "embedding", "answer")
PERCENTILES = (
    ("p50_latency_ms", "p50"),
    ("p90_latency_ms", "p90"),
    ("p95_latency_ms", "p95"),
    ("p99_latency_ms", "p99"),
)
SOURCE_COLORS = {"confirmed": "tab:green", "correction": "tab:red"}
WIDE = (11, 4.2)


@dataclass(frozen=True)
class ChartSpec:
    name: str  # file stem and HTML id
    title: str
    description: str
    marts: tuple[str, ...]
    draw: Callable[[MartReader], tuple[Figure, int]]


def frame(read: MartReader, mart: str, columns: list[str]) -> pl.DataFrame:
    """The mart's columns as polars, integer-like decimals (DuckDB HUGEINT sums) as floats."""
    df = pl.from_arrow(read(mart, columns))
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(
        pl.col(c).cast(pl.Float64) for c, t in df.schema.items() if isinstance(t, pl.Decimal)
    )


def new_figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure  # a plain figure: Agg-rendered, no pyplot state

    return Figure(figsize=size, layout="constrained")


def no_data(fig: Figure, ax, what: str) -> None:
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        f"no data: {what}",
        ha="center",
        va="center",
        color="0.4",
        fontsize=13,
        transform=ax.transAxes,
    )


def _order_stages(stages: list[str]) -> list[str]:
    known = [s for s in STAGE_ORDER if s in stages]
    return known + sorted(s for s in stages if s not in STAGE_ORDER)


def latency(read: MartReader) -> tuple[Figure, int]:
    """p50/p90/p95/p99 per day, one panel per stage; models of a stage combined weighted by ok calls."""
    pct = [c for c, _ in PERCENTILES]
    df = (
        frame(read, "mart_llm_latency_daily", ["day", "stage", "model", "ok_calls", *pct])
        .filter((pl.col("ok_calls") > 0) & pl.col("p50_latency_ms").is_not_null())
        .group_by("day", "stage")
        .agg([((pl.col(c) * pl.col("ok_calls")).sum() / pl.col("ok_calls").sum()).alias(c) for c in pct])
        .sort("stage", "day")
    )
    stages = _order_stages(df["stage"].unique().to_list())
    fig = new_figure(WIDE)
    if df.is_empty():
        no_data(fig, fig.add_subplot(), "mart_llm_latency_daily has no successful calls")
        return fig, 0
    axes = fig.subplots(1, len(stages), sharex=True, squeeze=False)[0]
    for ax, stage in zip(axes, stages):
        part = df.filter(pl.col("stage") == stage)
        for column, label in PERCENTILES:
            ax.plot(part["day"].to_list(), part[column].to_list(), marker="o", markersize=3, label=label)
        ax.set_title(stage)
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    axes[0].legend(fontsize=8)
    return fig, df.height


def cost(read: MartReader) -> tuple[Figure, int]:
    """USD per day, stacked by model (all stages)."""
    df = (
        frame(read, "mart_llm_cost_daily", ["day", "model", "cost_usd"])
        .group_by("day", "model")
        .agg(pl.col("cost_usd").fill_null(0).sum())
        .sort("day", "model")
    )
    fig = new_figure(WIDE)
    ax = fig.add_subplot()
    if df.is_empty():
        no_data(fig, ax, "mart_llm_cost_daily is empty")
        return fig, 0
    days = df["day"].unique().sort().to_list()
    bottom = [0.0] * len(days)
    for model in sorted(df["model"].unique().to_list()):
        per_day = dict(df.filter(pl.col("model") == model).select("day", "cost_usd").iter_rows())
        values = [float(per_day.get(d, 0.0)) for d in days]
        ax.bar(days, values, bottom=bottom, width=0.8, label=model)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("cost (USD)")
    ax.set_title(f"total {sum(bottom):.4f} USD over {len(days)} days")
    ax.legend(fontsize=8, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    return fig, df.height


def feedback_mix(read: MartReader) -> tuple[Figure, int]:
    """The golden labels by category, confirmed (thumbs up) vs corrected (thumbs down), and by day."""
    df = frame(read, "mart_rlhf_golden", ["feedback_at", "thumbs_up", "golden_category", "golden_source"])
    fig = new_figure(WIDE)
    if df.is_empty():
        no_data(fig, fig.add_subplot(), "mart_rlhf_golden is empty")
        return fig, 0
    by_category = df.group_by("golden_category", "golden_source").len().sort("golden_category")
    by_day = (
        df.with_columns(pl.col("feedback_at").dt.date().alias("day"))
        .group_by("day", "golden_source")
        .len()
        .sort("day")
    )
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    categories = sorted(by_category["golden_category"].unique().to_list())
    days = by_day["day"].unique().sort().to_list()
    left_base, right_base = [0] * len(categories), [0] * len(days)
    for source in sorted(by_category["golden_source"].unique().to_list()):
        counts = dict(
            by_category.filter(pl.col("golden_source") == source).select("golden_category", "len").iter_rows()
        )
        values = [counts.get(c, 0) for c in categories]
        verdict = "thumbs up" if source == "confirmed" else "thumbs down" if source == "correction" else "?"
        left.barh(
            categories, values, left=left_base, color=SOURCE_COLORS.get(source), label=f"{source} ({verdict})"
        )
        left_base = [b + v for b, v in zip(left_base, values)]
        daily = dict(by_day.filter(pl.col("golden_source") == source).select("day", "len").iter_rows())
        values = [daily.get(d, 0) for d in days]
        right.bar(days, values, bottom=right_base, width=0.8, color=SOURCE_COLORS.get(source), label=source)
        right_base = [b + v for b, v in zip(right_base, values)]
    up = int(df["thumbs_up"].sum())
    left.set_title(f"{df.height} labels: {up} thumbs up, {df.height - up} thumbs down")
    left.set_xlabel("labels (scans)")
    left.invert_yaxis()
    left.legend(fontsize=8)
    right.set_title("labels per feedback day")
    right.set_ylabel("labels")
    right.tick_params(axis="x", labelrotation=45, labelsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig, by_category.height


def confusion(read: MartReader) -> tuple[Figure, int]:
    """Predicted vs actual (golden) category, scans per cell."""
    df = frame(read, "mart_confusion_matrix", ["predicted_category", "actual_category", "scans"]).filter(
        pl.col("scans") > 0
    )
    fig = new_figure((7.5, 6.5))
    ax = fig.add_subplot()
    if df.is_empty():
        no_data(fig, ax, "mart_confusion_matrix is empty")
        return fig, 0
    categories = sorted(set(df["predicted_category"].to_list()) | set(df["actual_category"].to_list()))
    index = {c: i for i, c in enumerate(categories)}
    grid = [[0] * len(categories) for _ in categories]
    for predicted, actual, scans in df.iter_rows():
        grid[index[actual]][index[predicted]] += int(scans)
    image = ax.imshow(grid, cmap="Blues")
    peak = max(max(row) for row in grid)
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            if value:
                ax.text(
                    c,
                    r,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if value > peak / 2 else "black",
                )
    ax.set_xticks(range(len(categories)), categories, rotation=45, ha="right")
    ax.set_yticks(range(len(categories)), categories)
    ax.set_xlabel("predicted category")
    ax.set_ylabel("actual (golden) category")
    total = sum(map(sum, grid))
    correct = sum(grid[i][i] for i in range(len(categories)))
    ax.set_title(f"{total} labelled scans, accuracy {correct / total:.0%}")
    fig.colorbar(image, ax=ax, shrink=0.8, label="scans")
    return fig, df.height


def relevance(read: MartReader) -> tuple[Figure, int]:
    """Thumbs-up rate by top-1 relevance bucket (all days), with the scans behind each rate."""
    df = (
        frame(read, "mart_rag_quality_daily", ["relevance_bucket", "scans_with_feedback", "thumbs_up"])
        .group_by("relevance_bucket")
        .agg(pl.col("scans_with_feedback").sum(), pl.col("thumbs_up").sum())
        .filter((pl.col("scans_with_feedback") > 0) & pl.col("relevance_bucket").is_not_null())
        .sort("relevance_bucket")
    )
    fig = new_figure(WIDE)
    ax = fig.add_subplot()
    if df.is_empty():
        no_data(fig, ax, "mart_rag_quality_daily has no scans with feedback")
        return fig, 0
    buckets = [float(b) for b in df["relevance_bucket"].to_list()]
    answered = [float(v) for v in df["scans_with_feedback"].to_list()]
    rates = [float(u) / a for u, a in zip(df["thumbs_up"].to_list(), answered)]
    volume = ax.twinx()
    volume.bar(
        buckets, answered, width=0.08, align="edge", color="tab:blue", alpha=0.25, label="scans with feedback"
    )
    volume.set_ylabel("scans with feedback")
    ax.set_zorder(volume.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(
        [b + 0.04 for b in buckets],
        rates,
        color="tab:orange",
        marker="o",
        linewidth=2,
        label="thumbs-up rate",
    )
    ax.set_ylim(0, 1.05)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xticks([i / 10 for i in range(11)])
    ax.set_xlabel("top-1 chunk relevance (decile lower bound)")
    ax.set_ylabel("thumbs-up rate")
    ax.grid(alpha=0.3)
    lines, labels = ax.get_legend_handles_labels()
    bars, bar_labels = volume.get_legend_handles_labels()
    ax.legend(lines + bars, labels + bar_labels, fontsize=8, loc="lower right")
    return fig, df.height


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec(
        "latency",
        "LLM latency percentiles by stage",
        "p50/p90/p95/p99 of successful calls per UTC day and stage (models of a stage weighted by ok calls).",
        ("mart_llm_latency_daily",),
        latency,
    ),
    ChartSpec(
        "cost",
        "Daily LLM cost by model",
        "Token cost per UTC day at the prices in force that day, stacked by model (all stages).",
        ("mart_llm_cost_daily",),
        cost,
    ),
    ChartSpec(
        "feedback",
        "Feedback and label mix",
        "The RLHF golden labels by category and by feedback day: confirmed answers (thumbs up) vs corrections.",
        ("mart_rlhf_golden",),
        feedback_mix,
    ),
    ChartSpec(
        "confusion",
        "Confusion matrix",
        "Predicted vs actual (golden) category over all feedback with a label.",
        ("mart_confusion_matrix",),
        confusion,
    ),
    ChartSpec(
        "relevance",
        "RAG relevance vs thumbs-up",
        "Thumbs-up rate by top-1 chunk relevance decile, all days, with the number of scans with feedback.",
        ("mart_rag_quality_daily",),
        relevance,
    ),
)

MARTS: tuple[str, ...] = tuple(dict.fromkeys(m for chart in CHARTS for m in chart.marts))
