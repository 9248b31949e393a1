"""Independent polars computations of the dbt marts (dbt_project/models/marts), written from the
business rules (shared spec "Marts", issue 7), not translated from the SQL, plus a comparison helper.

Every function takes the warehouse's current-state source tables as polars DataFrames (timestamps
tz-aware; see :func:`utc`) and returns the expected rows of one mart.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

PRICES_CSV = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds" / "llm_prices.csv"
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


# --------------------------------------------------------------------------------------------
# normalisation and comparison
# --------------------------------------------------------------------------------------------


def utc(df: pl.DataFrame) -> pl.DataFrame:
    """Timestamps in UTC (microseconds); whole decimals as Int64, other decimals and float32 as
    Float64: the values, not the warehouse's physical types, are compared."""
    casts = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.Datetime):
            col = pl.col(name).dt.cast_time_unit("us")
            casts.append(
                (
                    col.dt.convert_time_zone("UTC") if dtype.time_zone else col.dt.replace_time_zone("UTC")
                ).alias(name)
            )
        elif isinstance(dtype, pl.Decimal):
            casts.append(pl.col(name).cast(pl.Int64 if dtype.scale == 0 else pl.Float64))
        elif dtype in (pl.Float32,):
            casts.append(pl.col(name).cast(pl.Float64))
        elif dtype.is_integer():
            casts.append(pl.col(name).cast(pl.Int64))
    return df.with_columns(casts) if casts else df


def assert_matches(
    actual: pl.DataFrame,
    expected: pl.DataFrame,
    keys: list[str],
    *,
    rtol: float = 1e-9,
    atol: float = 0.0,
    columns: list[str] | None = None,
    name: str = "mart",
) -> None:
    """The mart (`actual`) has exactly the expected rows: the same key set (keys unique on both
    sides), equal non-float values, floats within `rtol` (relative) / `atol`; nulls only where
    expected. `columns` (default: every column of `expected`) are the ones compared."""
    columns = columns or [c for c in expected.columns if c not in keys]
    missing = [c for c in [*keys, *columns] if c not in actual.columns]
    assert not missing, f"{name}: no column(s) {missing} (has {actual.columns})"
    actual = utc(actual.select(*keys, *columns))
    expected = utc(expected.select(*keys, *columns))
    for side, df in (("mart", actual), ("expected", expected)):
        dupes = df.group_by(keys).len().filter(pl.col("len") > 1)
        assert dupes.is_empty(), f"{name}: {side} keys not unique:\n{dupes.head(5)}"
    a_keys = set(actual.select(keys).rows())
    e_keys = set(expected.select(keys).rows())
    assert a_keys == e_keys, (
        f"{name}: key sets differ: {len(a_keys - e_keys)} only in the mart "
        f"(e.g. {sorted(a_keys - e_keys, key=repr)[:3]}), {len(e_keys - a_keys)} only "
        f"expected (e.g. {sorted(e_keys - a_keys, key=repr)[:3]})"
    )
    actual = actual.sort(keys, nulls_last=True)
    expected = expected.sort(keys, nulls_last=True)
    key_rows = actual.select(keys).rows()
    problems: list[str] = []
    for col in columns:
        is_float = actual.schema[col].is_float() or expected.schema[col].is_float()
        bad = []
        for key, got, want in zip(key_rows, actual[col].to_list(), expected[col].to_list(), strict=True):
            if got is None or want is None:
                ok = got is None and want is None
            elif is_float:
                ok = math.isclose(got, want, rel_tol=rtol, abs_tol=atol)
            else:
                ok = got == want
            if not ok:
                bad.append((key, got, want))
        if bad:
            problems.append(
                f"{col}: {len(bad)}/{len(key_rows)} rows differ, e.g. (key, mart, expected) {bad[:3]}"
            )
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------------------
# LLM and scan latency
# --------------------------------------------------------------------------------------------


def _percentiles(values: pl.Expr, suffix: str) -> list[pl.Expr]:
    return [values.quantile(q, interpolation="linear").alias(f"{p}_{suffix}") for p, q in QUANTILES.items()]


def llm_latency(llm_call_log: pl.DataFrame, grain: str) -> pl.DataFrame:
    """Per UTC `day` or `hour`, stage and model: calls, ok calls, error and timeout shares of every
    call; latency percentiles (linear interpolation) over successful calls only."""
    period = pl.col("created_at").dt.date() if grain == "day" else pl.col("created_at").dt.truncate("1h")
    ok = pl.col("status") == "ok"
    return (
        utc(llm_call_log)
        .with_columns(period.alias(grain))
        .group_by(grain, "stage", "model")
        .agg(
            pl.len().alias("calls"),
            ok.sum().alias("ok_calls"),
            (pl.col("status") == "error").mean().alias("error_rate"),
            (pl.col("status") == "timeout").mean().alias("timeout_rate"),
            *_percentiles(pl.col("latency_ms").filter(ok).cast(pl.Float64), "latency_ms"),
        )
    )


def scan_latency_daily(scans: pl.DataFrame) -> pl.DataFrame:
    """Per UTC day of creation: scans by status; percentiles of completed_at - created_at (seconds,
    microsecond precision) over completed scans."""
    completed = pl.col("status") == "completed"
    seconds = (pl.col("completed_at") - pl.col("created_at")).dt.total_microseconds() / 1e6
    return (
        utc(scans)
        .with_columns(day=pl.col("created_at").dt.date(), latency_s=seconds)
        .group_by("day")
        .agg(
            pl.len().alias("scans"),
            completed.sum().alias("completed_scans"),
            (pl.col("status") == "failed").sum().alias("failed_scans"),
            (pl.col("status") == "pending").sum().alias("pending_scans"),
            *_percentiles(
                pl.col("latency_s").filter(completed & pl.col("completed_at").is_not_null()), "latency_s"
            ),
        )
    )


# --------------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------------


def prices() -> pl.DataFrame:
    return pl.read_csv(
        PRICES_CSV,
        try_parse_dates=True,
        schema_overrides={"usd_per_1m_input": pl.Float64, "usd_per_1m_output": pl.Float64},
    )


def priced_calls(llm_call_log: pl.DataFrame, price_list: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every call with the price in force on its UTC day (the model's latest price row effective on
    or before that day: an as-of join) and its cost; null cost when the model has no price then."""
    price_list = (prices() if price_list is None else price_list).sort("effective_from")
    calls = (
        utc(llm_call_log)
        .with_columns(
            day=pl.col("created_at").dt.date(),
            prompt_tokens=pl.col("prompt_tokens").fill_null(0),
            completion_tokens=pl.col("completion_tokens").fill_null(0),
        )
        .sort("day")
    )
    # both sides are sorted on the as-of key (polars cannot verify that within `by` groups)
    priced = calls.join_asof(
        price_list,
        left_on="day",
        right_on="effective_from",
        by="model",
        strategy="backward",
        check_sortedness=False,
    )
    return priced.with_columns(
        cost_usd=(
            pl.col("prompt_tokens") * pl.col("usd_per_1m_input")
            + pl.col("completion_tokens") * pl.col("usd_per_1m_output")
        )
        / 1e6
    )


def _null_if_all_null_sum(name: str) -> pl.Expr:
    return pl.when(pl.col(name).is_not_null().any()).then(pl.col(name).sum()).alias(name)


def llm_cost_daily(llm_call_log: pl.DataFrame) -> pl.DataFrame:
    return (
        priced_calls(llm_call_log)
        .group_by("day", "model", "stage")
        .agg(
            pl.len().alias("calls"),
            pl.col("prompt_tokens").sum(),
            pl.col("completion_tokens").sum(),
            _null_if_all_null_sum("cost_usd"),
            pl.col("cost_usd").is_null().sum().alias("unpriced_calls"),
        )
    )


def cost_per_scan(llm_call_log: pl.DataFrame) -> pl.DataFrame:
    return (
        priced_calls(llm_call_log)
        .filter(pl.col("scan_id").is_not_null())
        .group_by("scan_id")
        .agg(
            pl.col("day").min(),
            pl.len().alias("calls"),
            pl.col("prompt_tokens").sum(),
            pl.col("completion_tokens").sum(),
            _null_if_all_null_sum("cost_usd"),
        )
    )


# --------------------------------------------------------------------------------------------
# feedback, the answer the user saw, golden labels
# --------------------------------------------------------------------------------------------


def feedback_with_answer(feedback: pl.DataFrame, classification_results: pl.DataFrame) -> pl.DataFrame:
    """One row per scan with feedback: its latest feedback (by coalesce(updated_at, created_at), then
    id, newest first), the answer the user saw (the scan's latest classification created at or
    before that feedback; ties: higher id) and the golden label (the correction, else the model's
    label when the user gave a thumbs up)."""
    latest = (
        utc(feedback)
        .with_columns(_changed=pl.coalesce("updated_at", "created_at"))
        .sort("_changed", "id", descending=True)
        .unique("scan_id", keep="first", maintain_order=True)
        .drop("_changed")
    )
    classifications = utc(classification_results).select(
        "scan_id",
        pl.col("id").alias("classification_id"),
        pl.col("category").alias("predicted_category"),
        pl.col("item").alias("predicted_item"),
        pl.col("confidence").cast(pl.Float64).alias("predicted_confidence"),
        pl.col("model").alias("predicted_by_model"),
        "prompt_version",
        pl.col("created_at").alias("predicted_at"),
    )
    seen = (
        latest.select("scan_id", pl.col("created_at").alias("feedback_at"))
        .join(classifications, on="scan_id")
        .filter(pl.col("predicted_at") <= pl.col("feedback_at"))
        .sort("predicted_at", "classification_id", descending=True)
        .unique("scan_id", keep="first", maintain_order=True)
        .drop("feedback_at")
    )
    corrected = pl.col("corrected_category").is_not_null()
    confirmed = pl.col("thumbs_up").fill_null(False)
    return (
        latest.rename({"id": "feedback_id", "created_at": "feedback_at"})
        .join(seen, on="scan_id", how="left")
        .with_columns(
            golden_category=pl.when(corrected)
            .then(pl.col("corrected_category"))
            .when(confirmed)
            .then(pl.col("predicted_category")),
            golden_item=pl.when(corrected)
            .then(pl.col("corrected_item"))
            .when(confirmed)
            .then(pl.col("predicted_item")),
            golden_source=pl.when(corrected)
            .then(pl.lit("correction"))
            .when(confirmed)
            .then(pl.lit("confirmed")),
        )
    )


def retrievals_per_scan(rag_retrievals: pl.DataFrame) -> pl.DataFrame:
    return rag_retrievals.group_by("scan_id").agg(
        pl.len().alias("chunk_count"),
        pl.col("relevance_score").filter(pl.col("rank") == 1).first().alias("top1_relevance"),
        pl.col("relevance_score").mean().alias("mean_relevance"),
        pl.col("chunk_id").sort_by("rank").alias("chunk_ids"),
        pl.col("chunk_text").sort_by("rank").alias("chunk_texts"),
    )


def rlhf_golden(
    answers: pl.DataFrame, users: pl.DataFrame, scans: pl.DataFrame, rag_retrievals: pl.DataFrame
) -> pl.DataFrame:
    """Scans with a golden label and a known answer, from accounts that still exist."""
    live = set(users["id"].to_list())
    images = scans.select(
        pl.col("id").alias("scan_id"),
        pl.coalesce("image_path_processed", "image_path_raw").alias("image_path"),
    )
    return (
        answers.filter(
            pl.col("golden_category").is_not_null()
            & pl.col("classification_id").is_not_null()
            & pl.col("user_id").is_in(list(live))
        )
        .join(images, on="scan_id")
        .join(
            retrievals_per_scan(rag_retrievals).select("scan_id", "chunk_ids", "chunk_texts"),
            on="scan_id",
            how="left",
        )
    )


# --------------------------------------------------------------------------------------------
# misclassification notes
# --------------------------------------------------------------------------------------------


def _corrected_away() -> pl.Expr:
    """The user's correction names a category other than the one the model answered."""
    return (
        pl.col("corrected_category").is_not_null()
        & pl.col("predicted_category").is_not_null()
        & (pl.col("corrected_category") != pl.col("predicted_category"))
    )


def misclassification_daily(answers: pl.DataFrame) -> pl.DataFrame:
    return (
        answers.filter(_corrected_away())
        .group_by(pl.col("feedback_at").dt.date().alias("day"), "predicted_category", "corrected_category")
        .agg(pl.len().alias("corrections"))
    )


def confusion_matrix(answers: pl.DataFrame) -> pl.DataFrame:
    return (
        answers.filter(pl.col("golden_category").is_not_null() & pl.col("predicted_category").is_not_null())
        .group_by("predicted_category", pl.col("golden_category").alias("actual_category"))
        .agg(pl.len().alias("scans"))
    )


def misclassified_items(answers: pl.DataFrame) -> pl.DataFrame:
    return (
        answers.filter(pl.col("predicted_item").is_not_null())
        .group_by("predicted_category", "predicted_item")
        .agg(pl.len().alias("feedback_count"), _corrected_away().sum().alias("corrections"))
        .with_columns(correction_rate=pl.col("corrections") / pl.col("feedback_count"))
    )


# --------------------------------------------------------------------------------------------
# RAG quality
# --------------------------------------------------------------------------------------------


def rag_quality_per_scan(
    rag_retrievals: pl.DataFrame, scans: pl.DataFrame, answers: pl.DataFrame
) -> pl.DataFrame:
    per_scan = retrievals_per_scan(rag_retrievals).drop("chunk_ids", "chunk_texts")
    days = utc(scans).select(pl.col("id").alias("scan_id"), pl.col("created_at").dt.date().alias("day"))
    # the bucket is a key: k / 10 correctly rounded (polars turns `/ 10` into `* 0.1`: 0.7000000000000001)
    bucket = pl.col("top1_relevance").map_elements(
        lambda top1: min(math.floor(top1 * 10), 9) / 10, return_dtype=pl.Float64, skip_nulls=True
    )
    return (
        per_scan.join(days, on="scan_id")
        .join(answers.select("scan_id", "thumbs_up"), on="scan_id", how="left")
        .with_columns(relevance_bucket=bucket)
    )


def rag_quality_daily(per_scan: pl.DataFrame) -> pl.DataFrame:
    return (
        per_scan.filter(pl.col("relevance_bucket").is_not_null())
        .group_by("day", "relevance_bucket")
        .agg(
            pl.len().alias("scans"),
            pl.col("thumbs_up").is_not_null().sum().alias("scans_with_feedback"),
            pl.col("thumbs_up").fill_null(False).sum().alias("thumbs_up"),
            pl.col("thumbs_up").cast(pl.Float64).mean().alias("thumbs_up_rate"),
        )
    )


# --------------------------------------------------------------------------------------------
# label changes (the feedback's row history)
# --------------------------------------------------------------------------------------------


def _verdict(row: dict) -> str:
    if row["corrected_category"] is not None:
        return row["corrected_category"]
    return "confirmed" if row["thumbs_up"] else "rejected"


def _versions_by_feedback(history: pl.DataFrame) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for row in history.sort("valid_from", "valid_from_lsn").iter_rows(named=True):
        out.setdefault(row["id"], []).append(row)
    return out


def label_changes(history: pl.DataFrame) -> pl.DataFrame:
    """Per feedback, one at a time: the verdict given, each change of it, its withdrawal."""
    rows = []
    for feedback_id, versions in _versions_by_feedback(history).items():
        previous = None
        for v in versions:
            verdict = _verdict(v)
            if previous is None:
                rows.append((feedback_id, v["valid_from"], "given", None, verdict))
            elif verdict != previous:
                rows.append((feedback_id, v["valid_from"], "changed", previous, verdict))
            previous = verdict
        if versions[-1]["valid_to"] is not None:
            rows.append((feedback_id, versions[-1]["valid_to"], "withdrawn", previous, None))
    return pl.DataFrame(
        rows,
        schema={
            "feedback_id": pl.Int64,
            "changed_at": history.schema["valid_from"],
            "change_kind": pl.Utf8,
            "verdict_before": pl.Utf8,
            "verdict_after": pl.Utf8,
        },
        orient="row",
    )


def verdicts(history: pl.DataFrame) -> pl.DataFrame:
    """Per feedback: the verdict as first given, when, and when it last changed (null: never; an
    edit that keeps the verdict is no change)."""
    rows = []
    for fid, vs in _versions_by_feedback(history).items():
        changed = [b["valid_from"] for a, b in zip(vs, vs[1:]) if _verdict(a) != _verdict(b)]
        rows.append((fid, _verdict(vs[0]), vs[0]["valid_from"], changed[-1] if changed else None))
    t = history.schema["valid_from"]
    return pl.DataFrame(
        rows,
        schema={
            "feedback_id": pl.Int64,
            "verdict_given": pl.Utf8,
            "verdict_given_at": t,
            "verdict_changed_at": t,
        },
        orient="row",
    )
