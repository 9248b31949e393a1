"""Benchmark: `lakehouse.state.compact` beside the obvious ways to do the same job, in one run.

One lake (``generate_lake``, envelope Parquet, the six Eco2 topics) is read by every contender,
each in its own fresh process, one after the other, so time and peak RSS never mix:

* floor: DuckDB reads every column of every raw value file into Arrow record batches (streamed;
  the cheapest way found to have the whole lake in memory once; nothing is computed). The value
  files come from ``LakeReader.scan()``: no companions, nothing under ``tombstone/``;
* scan: a lower bound below the floor: DuckDB decodes every column but only counts (dictionary
  encoded text is never expanded);
* product: ``compact()`` into a fresh state folder, end to end (Delta tables, manifests, TOAST,
  tombstones, pseudonymisation);
* duckdb: ``QUALIFY row_number() OVER (PARTITION BY key ORDER BY partition, file offset, row DESC)
  = 1`` over the flattened ``after`` images (key from ``before`` for deletes), deletes removed,
  written to Parquet, one query per topic;
* polars: the same as a lazy scan, sort, ``unique(keep="last")``, deletes removed, sink_parquet;
* pandas: pyarrow-read objects flattened into one DataFrame per topic, sort_values,
  drop_duplicates(keep="last"), to_parquet (a memory guard kills it past ``--mem-limit-gb``);
* delta: delta-rs MERGE (update all / insert all / delete on ``op = 'd'``) of change batches
  (``--merge-batch-events``, last event per key in each batch) into a Delta table per topic, on
  the first ``--merge-subset`` events of the lake, projected linearly to the full size;
* spark: pyspark ``local[2]`` window row_number dedup (run with the side venv's Python, see
  ``--spark-python``; JVM start excluded from the time, included in the RSS);
* incremental: the lake minus its newest ~1 % (objects whose newest commit is after a cut time)
  is compacted into a fresh state, then the held-back objects are added and ``compact()`` applies
  just them; timed against the product's full rebuild (target <= 5 %).

Checks, in a separate process after the runs: visible rows of every product table
(``visible_rows``) against a DuckDB QUALIFY over the raw files — row count and a checksum of the
keys; the other contenders' outputs also by a checksum of the winning events' positions; the
incremental state against the full one; the MERGE tables against QUALIFY over the same subset.

Peak RSS: sampled (psutil, every 0.1 s) over the contender's process tree (the JVM for Spark),
and the process's own ``ru_maxrss``; the larger is shown.

    .venv/bin/python bench/bench_compact.py --events 10000000 [--skip spark,pandas] [--workdir /tmp/benchc]
    .venv/bin/python bench/bench_compact.py --events 50000000 --only floor,scan,product   # memory at 50M

Lakes are kept in the work dir (``lake-<events>-s<seed>``) and reused by later runs with the same
size and seed; everything else there is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from common import (
    busy_seconds,
    code_identity,
    machine,
    peak_rss_mb,
    phase_command,
    phase_generate,
    phase_result,
    run_phase_here,
    stderr_tail,
    wait_quiet,
    write_job,
)

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ("floor", "scan", "product", "duckdb", "polars", "pandas", "delta", "spark", "incremental")
DEFAULT_SPARK_PY = ROOT / ".bench-venv" / "bin" / "python"
OFFSET_RE = r"\+(\d+)\+(\d+)\.[^/]*$"  # <topic>+<partition>+<start offset>.<ext>


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


# ---------------------------------------------------------------------------------------------
# phases (each runs in its own process; the last stdout line is its JSON result)
# ---------------------------------------------------------------------------------------------


def phase_plan(job: dict) -> dict:
    """Value files per topic (LakeReader's listing: no companions, no tombstone/ folder), in
    (partition, start offset) order, with rows and newest commit time from the footers."""
    import pyarrow.parquet as pq

    from lakehouse.config import load_config
    from lakehouse.lake.reader import LakeReader

    lake = Path(job["lake"])
    listing = LakeReader(str(lake)).scan()
    config = load_config()
    topics = {}
    for entry in config.tables:
        objs = sorted(
            listing.objects.get(entry.topic, []), key=lambda o: (o.ref.kafka_partition, o.ref.start_offset)
        )
        files = []
        for o in objs:
            md = pq.read_metadata(str(lake / o.key))
            ts = None
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                for c in range(rg.num_columns):
                    col = rg.column(c)
                    if (
                        col.path_in_schema == "source.ts_us"
                        and col.statistics is not None
                        and col.statistics.has_min_max
                    ):
                        ts = max(ts or col.statistics.max, col.statistics.max)
            files.append(
                {
                    "key": o.key,
                    "path": str(lake / o.key),
                    "partition": o.ref.kafka_partition,
                    "start": o.ref.start_offset,
                    "rows": md.num_rows,
                    "size": o.size,
                    "max_ts": ts,
                }
            )
        topics[entry.topic] = {"table": entry.table, "key": list(entry.primary_key or []), "files": files}
    other = [i.key for i in listing.ignored]
    return {
        "lake": str(lake),
        "topics": topics,
        "other_keys": other,
        "events": sum(f["rows"] for t in topics.values() for f in t["files"]),
        "objects": sum(len(t["files"]) for t in topics.values()),
        "bytes": sum(f["size"] for t in topics.values() for f in t["files"]),
    }


def phase_floor(job: dict) -> dict:
    """DuckDB decodes every column of every value file into Arrow (streamed, 122,880-row batches)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{job['tmp']}'")
    con.execute("SET arrow_large_buffer_size = true")  # one batch of 2 KB rationales can pass 2 GiB
    t = time.perf_counter()
    rows = 0
    for topic in job["plan"]["topics"].values():
        files = [f["path"] for f in topic["files"]]
        if not files:
            continue
        reader = con.execute(
            f"SELECT * FROM read_parquet({_sql_list(files)}, union_by_name = true)"
        ).to_arrow_reader(122_880)
        for batch in reader:
            rows += batch.num_rows
    return {"seconds": time.perf_counter() - t, "rows": rows}


def phase_scan(job: dict) -> dict:
    """A lower bound below the floor: DuckDB decodes every top-level column (a filter on all of
    them) but only counts, so dictionary-encoded text is never expanded into memory."""
    import duckdb

    con = duckdb.connect()
    t = time.perf_counter()
    rows = 0
    for topic in job["plan"]["topics"].values():
        files = [f["path"] for f in topic["files"]]
        if not files:
            continue
        cols = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_sql_list(files[:1])})").fetchall()
        cond = " AND ".join(f'"{c[0]}" IS NULL' for c in cols)
        rows += con.execute(
            f"SELECT count(*) FROM read_parquet({_sql_list(files)}, union_by_name = true) WHERE NOT ({cond})"
        ).fetchone()[0]
    return {"seconds": time.perf_counter() - t, "rows": rows}


def phase_product(job: dict) -> dict:
    os.environ.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "bench")
    # third-party imports stay outside the timer, as for every other contender (compact() would
    # otherwise pay ~1 s importing pandas through deltalake on its first write)
    import deltalake  # noqa: F401
    import pandas  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from lakehouse.config import load_config
    from lakehouse.state.compact import CompactOptions, compact

    config = load_config()
    options = (
        CompactOptions(batch_events=job["batch_events"]) if job.get("batch_events") else CompactOptions()
    )
    profiler = None
    thread_profilers: list = []
    if job.get("profile"):
        import cProfile
        import dataclasses
        import threading

        profiler = cProfile.Profile()
        if "workers" in {f.name for f in dataclasses.fields(options)}:
            options = dataclasses.replace(options, workers=1)

        def start_in_thread(frame, event, arg):  # compact() may run tables on pool threads
            sys.setprofile(None)
            p = cProfile.Profile()
            thread_profilers.append(p)
            p.enable()

        threading.setprofile(start_in_thread)
    t = time.perf_counter()
    if profiler:
        profiler.enable()
    marks: dict[str, dict] = {}

    def on_progress(r) -> None:  # peak so far and RSS now, after each table: which one sets the peak
        import psutil

        marks[r.table] = {
            "peak_so_far_mb": peak_rss_mb(),
            "rss_after_mb": psutil.Process().memory_info().rss / 2**20,
            "done_at": time.perf_counter() - t,
        }

    results = compact(job["lake"], job["state"], config, options=options, on_progress=on_progress)
    if profiler:
        profiler.disable()
        import threading

        threading.setprofile(None)
    seconds = time.perf_counter() - t
    out = {"seconds": seconds, "tables": {}, "options": repr(options)}
    for r in sorted(results, key=lambda r: marks.get(r.table, {}).get("done_at", 0.0)):  # completion order
        out["tables"][r.table] = {
            k: getattr(r, k, None)
            for k in (
                "status",
                "objects",
                "events",
                "duplicates",
                "inserts",
                "updates",
                "deletes",
                "rows",
                "tombstones",
                "commits",
                "seconds",
                "error",
                "notes",
            )
        } | marks.get(r.table, {})
    errors = [r.error for r in results if getattr(r, "failed", False) or r.error]
    if errors:
        out["error"] = "; ".join(str(e) for e in errors)
    out["rows"] = sum(r.events for r in results)
    if profiler:
        import io
        import pstats

        stats = pstats.Stats(profiler)
        for p in thread_profilers:
            stats.add(p)
        stats.dump_stats(job["profile"])
        for sort in ("cumulative", "tottime"):
            buf = io.StringIO()
            stats.stream = buf
            stats.strip_dirs().sort_stats(sort).print_stats(25)
            out[f"profile_{sort}"] = buf.getvalue()
    return out


def _key_exprs(key: list[str]) -> list[str]:
    return [f'coalesce(after."{k}", before."{k}")' for k in key]


def phase_duckdb(job: dict) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{job['tmp']}'")
    con.execute("SET preserve_insertion_order = false")
    out_dir = Path(job["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    rows = 0
    for topic in job["plan"]["topics"].values():
        files = [f["path"] for f in topic["files"]]
        if not files:
            continue
        keys = _key_exprs(topic["key"])
        part = ", ".join(f"__k{i}" for i in range(len(keys)))
        sql = f"""
            COPY (
              SELECT * EXCLUDE (__op, {part}, __r) FROM (
                SELECT unnest(after), op AS __op,
                       {", ".join(f"{e} AS __k{i}" for i, e in enumerate(keys))},
                       CAST(regexp_extract(filename, '{OFFSET_RE}', 1) AS INTEGER) AS __p,
                       CAST(regexp_extract(filename, '{OFFSET_RE}', 2) AS BIGINT) + file_row_number AS __o,
                       file_row_number AS __r
                FROM read_parquet({_sql_list(files)}, filename = true, file_row_number = true,
                                  union_by_name = true)
                WHERE op <> 't'
                QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY __p DESC, __o DESC, __r DESC) = 1
              ) WHERE __op <> 'd'
            ) TO '{out_dir / (topic["table"] + ".parquet")}' (FORMAT parquet, COMPRESSION zstd)"""
        rows += con.execute(sql).fetchone()[0]
    return {"seconds": time.perf_counter() - t, "rows_out": rows}


def phase_polars(job: dict) -> dict:
    import polars as pl

    out_dir = Path(job["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for topic in job["plan"]["topics"].values():
        if not topic["files"]:
            continue
        parts = [
            pl.scan_parquet(f["path"], row_index_name="__r").with_columns(
                pl.lit(f["partition"], pl.Int32).alias("__p"),
                (pl.col("__r").cast(pl.Int64) + f["start"]).alias("__o"),
            )
            for f in topic["files"]
        ]
        lf = pl.concat(parts, how="diagonal_relaxed")
        keys = [
            pl.coalesce(pl.col("after").struct.field(k), pl.col("before").struct.field(k)).alias(f"__k{i}")
            for i, k in enumerate(topic["key"])
        ]
        (
            lf.filter(pl.col("op") != "t")
            .with_columns(keys)
            .sort(["__p", "__o"])
            .unique(subset=[f"__k{i}" for i in range(len(keys))], keep="last")
            .filter(pl.col("op") != "d")
            .select(pl.col("after").struct.unnest(), "__p", "__o")
            .sink_parquet(out_dir / (topic["table"] + ".parquet"))
        )
    return {"seconds": time.perf_counter() - t}


def phase_pandas(job: dict) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out_dir = Path(job["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for topic in job["plan"]["topics"].values():
        if not topic["files"]:
            continue
        frames = []
        for f in topic["files"]:
            raw = pq.read_table(f["path"], columns=["before", "after", "op"])
            after = raw.column("after").combine_chunks()
            before = raw.column("before").combine_chunks()
            df = pa.Table.from_arrays(after.flatten(), names=[x.name for x in after.type]).to_pandas()
            op = raw.column("op").combine_chunks()
            df["__op"] = op.to_pandas()
            for i, k in enumerate(topic["key"]):  # key from before for deletes (after is null)
                df[f"__k{i}"] = pc.if_else(pc.equal(op, "d"), before.field(k), after.field(k)).to_pandas()
            df["__p"] = np.int32(f["partition"])
            df["__o"] = f["start"] + np.arange(len(df), dtype=np.int64)
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        del frames
        keys = [f"__k{i}" for i in range(len(topic["key"]))]
        df = df[df["__op"] != "t"].sort_values(["__p", "__o"], kind="stable")
        df = df.drop_duplicates(subset=keys, keep="last")
        df = df[df["__op"] != "d"]
        for i, k in enumerate(topic["key"]):  # after's key column is float where deletes made it null
            df[k] = df[f"__k{i}"]
        df = df.drop(columns=["__op", *keys])
        df.to_parquet(out_dir / (topic["table"] + ".parquet"), index=False)
        del df
    return {"seconds": time.perf_counter() - t}


def _subset(plan: dict, events: int) -> dict[str, list[dict]]:
    """The first files of every topic, each topic cut at the same share of its rows."""
    share = min(1.0, events / max(1, plan["events"]))
    out = {}
    for name, topic in plan["topics"].items():
        files, rows = [], 0
        want = share * sum(f["rows"] for f in topic["files"])
        for f in topic["files"]:
            if files and rows + f["rows"] > want:
                break
            files.append(f)
            rows += f["rows"]
        out[name] = files
    return out


def phase_delta(job: dict) -> dict:
    import duckdb
    import pyarrow.compute as pc
    from deltalake import DeltaTable, write_deltalake

    plan = job["plan"]
    con = duckdb.connect()
    out_dir = Path(job["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    subset = _subset(plan, job["subset_events"])
    t = time.perf_counter()
    merges = events = 0
    for name, files in subset.items():
        topic = plan["topics"][name]
        path = str(out_dir / topic["table"])
        keys = _key_exprs(topic["key"])
        part = ", ".join(f"__k{i}" for i in range(len(keys)))
        replace = ", ".join(f'__k{i} AS "{k}"' for i, k in enumerate(topic["key"]))
        batches, cur, n = [], [], 0
        for f in files:
            if cur and n + f["rows"] > job["batch_events"]:
                batches.append(cur)
                cur, n = [], 0
            cur.append(f)
            n += f["rows"]
        if cur:
            batches.append(cur)
        exists = False
        for batch in batches:
            events += sum(f["rows"] for f in batch)
            src = con.execute(f"""
                SELECT * EXCLUDE ({part}, __r) REPLACE ({replace}) FROM (
                  SELECT unnest(after), op AS __op,
                         {", ".join(f"{e} AS __k{i}" for i, e in enumerate(keys))},
                         CAST(regexp_extract(filename, '{OFFSET_RE}', 1) AS INTEGER) AS __p,
                         CAST(regexp_extract(filename, '{OFFSET_RE}', 2) AS BIGINT) + file_row_number AS __o,
                         file_row_number AS __r
                  FROM read_parquet({_sql_list([f["path"] for f in batch])}, filename = true,
                                    file_row_number = true, union_by_name = true)
                  WHERE op <> 't'
                  QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY __p DESC, __o DESC, __r DESC) = 1
                )""").to_arrow_table()
            if not exists:
                live = src.filter(pc.not_equal(src.column("__op"), "d")).drop_columns(["__op"])
                write_deltalake(path, live, mode="overwrite")
                exists = True
                continue
            on = " AND ".join(f't."{k}" = s."{k}"' for k in topic["key"])
            (
                DeltaTable(path)
                .merge(src, predicate=on, source_alias="s", target_alias="t")
                .when_matched_delete(predicate="s.__op = 'd'")
                .when_matched_update_all(predicate="s.__op <> 'd'", except_cols=["__op"])
                .when_not_matched_insert_all(predicate="s.__op <> 'd'", except_cols=["__op"])
                .execute()
            )
            merges += 1
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "subset_events": events,
        "merges": merges,
        "projected_seconds": seconds * plan["events"] / max(1, events),
        "subset_files": {n: [f["path"] for f in fs] for n, fs in subset.items()},
    }


def phase_spark(job: dict) -> dict:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench_compact")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", job["spark_memory"])
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.local.dir", job["tmp"])
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    import pyspark

    startup = time.perf_counter() - t0
    out_dir = Path(job["out"])
    t = time.perf_counter()
    for topic in job["plan"]["topics"].values():
        files = [f["path"] for f in topic["files"]]
        if not files:
            continue
        df = spark.read.option("mergeSchema", "true").parquet(*files)
        keys = [
            F.coalesce(F.col(f"after.{k}"), F.col(f"before.{k}")).alias(f"__k{i}")
            for i, k in enumerate(topic["key"])
        ]
        fp = F.col("_metadata.file_path")
        df = df.where(F.col("op") != "t").select(
            "after",
            F.col("op").alias("__op"),
            *keys,
            F.regexp_extract(fp, OFFSET_RE, 1).cast("int").alias("__p"),
            (F.regexp_extract(fp, OFFSET_RE, 2).cast("long") + F.col("_metadata.row_index")).alias("__o"),
        )
        w = Window.partitionBy(*[f"__k{i}" for i in range(len(keys))]).orderBy(
            F.col("__p").desc(), F.col("__o").desc()
        )
        (
            df.withColumn("__rn", F.row_number().over(w))
            .where("__rn = 1 AND __op <> 'd'")
            .select("after.*", "__p", "__o")
            .write.mode("overwrite")
            .parquet(str(out_dir / topic["table"]))
        )
    seconds = time.perf_counter() - t
    spark.stop()
    return {"seconds": seconds, "startup_seconds": startup, "version": pyspark.__version__}


def phase_verify(job: dict) -> dict:
    """Row counts and checksums: the QUALIFY reference over raw files, then every output."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{job['tmp']}'")
    plan = job["plan"]
    out: dict[str, dict] = {}

    def winners(files: list[str], key: list[str]) -> str:
        keys = _key_exprs(key)
        part = ", ".join(f"__k{i}" for i in range(len(keys)))
        return f"""
            SELECT {", ".join(f"__k{i} AS {k}" for i, k in enumerate(key))}, __p, __o FROM (
              SELECT op AS __op, {", ".join(f"{e} AS __k{i}" for i, e in enumerate(keys))},
                     CAST(regexp_extract(filename, '{OFFSET_RE}', 1) AS INTEGER) AS __p,
                     CAST(regexp_extract(filename, '{OFFSET_RE}', 2) AS BIGINT) + file_row_number AS __o
              FROM read_parquet({_sql_list(files)}, filename = true, file_row_number = true, union_by_name = true)
              WHERE op <> 't'
              QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY __p DESC, __o DESC) = 1
            ) WHERE __op <> 'd'"""

    def sums(relation: str, key: list[str], positions: bool) -> dict:
        kh = "hash(" + ", ".join(f'CAST("{k}" AS VARCHAR)' for k in key) + ")"
        pos = ", CAST(sum(hash(__p, __o)) AS VARCHAR)" if positions else ", NULL"
        n, ks, ps = con.execute(
            f"SELECT count(*), CAST(sum({kh}) AS VARCHAR){pos} FROM ({relation})"
        ).fetchone()
        return {"rows": n, "keys": ks, "positions": ps}

    ref = out.setdefault("reference", {})
    for topic in plan["topics"].values():
        if topic["files"]:
            ref[topic["table"]] = sums(
                winners([f["path"] for f in topic["files"]], topic["key"]), topic["key"], True
            )
    if job.get("subset_files"):
        sub = out.setdefault("reference-subset", {})
        for name, files in job["subset_files"].items():
            if files:
                topic = plan["topics"][name]
                sub[topic["table"]] = sums(winners(files, topic["key"]), topic["key"], True)
    for name, spec in job["outputs"].items():
        res = out.setdefault(name, {})
        for topic in plan["topics"].values():
            table, key = topic["table"], topic["key"]
            try:
                if spec["kind"] == "product":
                    from lakehouse.state.export import visible_rows

                    con.register("v", visible_rows(spec["path"], table).select(key))
                    res[table] = sums("SELECT * FROM v", key, False)
                    con.unregister("v")
                elif spec["kind"] == "delta":
                    from deltalake import DeltaTable

                    if not (Path(spec["path"]) / table).exists():
                        continue
                    con.register(
                        "v",
                        DeltaTable(str(Path(spec["path"]) / table)).to_pyarrow_table(
                            columns=[*key, "__p", "__o"]
                        ),
                    )
                    res[table] = sums("SELECT * FROM v", key, True)
                    con.unregister("v")
                else:
                    p = Path(spec["path"]) / (table + (".parquet" if spec["kind"] == "parquet" else ""))
                    glob = str(p / "*.parquet") if p.is_dir() else str(p)
                    res[table] = sums(f"SELECT * FROM read_parquet('{glob}')", key, True)
            except Exception as exc:  # noqa: BLE001 (reported, the others go on)
                res[table] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


PHASES = {
    "generate": phase_generate,
    "plan": phase_plan,
    "floor": phase_floor,
    "scan": phase_scan,
    "product": phase_product,
    "duckdb": phase_duckdb,
    "polars": phase_polars,
    "pandas": phase_pandas,
    "delta": phase_delta,
    "spark": phase_spark,
    "verify": phase_verify,
}


# ---------------------------------------------------------------------------------------------
# the parent: runs each phase in a fresh process, measures it, prints and writes the report
# ---------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, work: Path, mem_limit_gb: float, timeout: float, quiet_wait: float = 0.0):
        self.quiet_wait = quiet_wait
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.mem_limit_mb = mem_limit_gb * 1024
        self.timeout = timeout

    def run(self, label: str, phase: str, job: dict, python: str | None = None) -> dict:
        import psutil

        quiet_waited = (
            wait_quiet(self.quiet_wait) if self.quiet_wait and phase not in ("plan", "verify") else 0.0
        )

        cmd = phase_command(__file__, phase, write_job(self.work, label, job), python)
        env = dict(os.environ)
        env.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "bench")
        env["PYTHONPATH"] = ""  # the side venv must not see the project's packages
        code = code_identity() if phase == "product" else None  # what the child is about to import
        out_path, err_path = self.logs / f"{label}.out", self.logs / f"{label}.err"
        print(f"--- {label}: running ({phase}) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        cpu0, ru0 = busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seen: dict[int, float] = {}  # pid -> user+system seconds, last sample
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT, start_new_session=True)
            ps = psutil.Process(proc.pid)
            peak, killed = 0.0, None
            while proc.poll() is None:
                try:
                    rss = 0
                    for c in [ps, *ps.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            rss += c.memory_info().rss
                            t = c.cpu_times()
                            cpu_seen[c.pid] = t.user + t.system
                    peak = max(peak, rss / 2**20)
                except psutil.Error:
                    pass
                if killed is None and peak > self.mem_limit_mb:
                    killed = (
                        f"killed by the memory guard: process tree RSS > {self.mem_limit_mb / 1024:.0f} GB"
                    )
                elif killed is None and time.perf_counter() - started > self.timeout:
                    killed = f"killed after the {self.timeout:.0f} s timeout"
                if killed:
                    os.killpg(proc.pid, 9)
                    proc.wait()
                    break
                time.sleep(0.1)
        wall = time.perf_counter() - started
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        waited = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        own = max(waited, sum(cpu_seen.values()))
        printed = phase_result(out_path.read_text())
        result = printed or {}
        if killed:
            result["error"] = killed
        elif printed is None:
            result["error"] = (
                f"exit code {proc.returncode}, no result; stderr: {stderr_tail(err_path.read_text())}"
            )
        result["tree_peak_rss_mb"] = peak
        result["peak_mb"] = max(peak, result.get("peak_rss_mb", 0.0))
        result["wall_seconds"] = wall
        result["waited_for_quiet_s"] = quiet_waited
        if code:
            result["code"] = code
        result["cpu_cores"] = own / wall  # cores the contender kept busy on average
        result["other_cores"] = max(0.0, (busy_seconds() - cpu0 - own) / wall)  # everything else
        msg = (
            result.get("error")
            or f"{result.get('seconds', wall):.1f} s, peak RSS {result['peak_mb']:,.0f} MB"
        )
        print(f"--- {label}: {msg}", file=sys.stderr, flush=True)
        return result


def _link_objects(plan: dict, files: list[dict], dest: Path) -> None:
    lake = Path(plan["lake"])
    for f in files:
        target = dest / f["key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(f["path"], target)
    for key in plan["other_keys"]:  # companions, tombstone/ (not applied, but present in a real lake)
        target = dest / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(lake / key, target)


def _tail(plan: dict, share: float) -> tuple[list[dict], list[dict], int]:
    """Split the value files at a commit-time cut: the newest ``share`` of the rows, taken as whole
    objects whose newest commit is after the cut (per Kafka partition a suffix, as the sink writes
    them). Returns (base files, tail files, cut time in µs)."""
    everything = [f for t in plan["topics"].values() for f in t["files"]]
    want = share * sum(f["rows"] for f in everything)
    by_ts = sorted(everything, key=lambda f: f["max_ts"] or 0, reverse=True)
    held = cut = 0
    for f in by_ts:
        if held >= want:
            break
        held += f["rows"]
        cut = f["max_ts"] or 0
    base, tail = [], []
    for name, t in plan["topics"].items():
        new_from: dict[int, bool] = {}
        for f in t["files"]:  # (partition, offset) order
            new = new_from.get(f["partition"], False) or (f["max_ts"] or 0) >= cut
            new_from[f["partition"]] = new
            (tail if new else base).append({**f, "topic": name})
    return base, tail, cut


def _versions(spark_python: str | None) -> dict[str, str]:
    import importlib.metadata as md

    v = {"python": platform.python_version()}
    for p in ("duckdb", "polars", "pandas", "pyarrow", "deltalake", "numpy"):
        try:
            v[p] = md.version(p)
        except md.PackageNotFoundError:
            v[p] = "-"
    if spark_python and Path(spark_python).exists():
        r = subprocess.run(
            [spark_python, "-c", "import pyspark; print(pyspark.__version__)"], capture_output=True, text=True
        )
        v["pyspark"] = r.stdout.strip() or "-"
    java = subprocess.run(["java", "-version"], capture_output=True, text=True)
    v["java"] = (java.stderr.splitlines() or ["-"])[0]
    return v


def _check(a: dict | None, ref: dict | None, positions: bool) -> str:
    if not a or not ref:
        return "-"
    bad = []
    for table, r in ref.items():
        x = a.get(table)
        if x is None or "error" in x:
            bad.append(f"{table}: {x.get('error') if x else 'missing'}")
        elif x["rows"] != r["rows"] or x["keys"] != r["keys"]:
            bad.append(
                f"{table}: {x['rows']:,} rows vs {r['rows']:,}"
                + ("" if x["rows"] != r["rows"] else " (same count, other keys)")
            )
        elif positions and x.get("positions") != r["positions"]:
            bad.append(f"{table}: other winning events")
    return "OK" if not bad else "MISMATCH: " + "; ".join(bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/bench-compact", help="lakes (kept, reused) and outputs")
    ap.add_argument("--skip", default="", help=f"comma-separated, from: {','.join(CONTENDERS)}")
    ap.add_argument("--only", default="", help="comma-separated: run just these (floor is cheap: keep it)")
    ap.add_argument(
        "--batch-events",
        type=int,
        default=None,
        help="CompactOptions.batch_events (default: the product's own default)",
    )
    ap.add_argument("--merge-subset", type=int, default=1_000_000, help="events given to the delta-rs MERGE")
    ap.add_argument("--merge-batch-events", type=int, default=100_000, help="events per MERGE batch")
    ap.add_argument("--incremental-share", type=float, default=0.01)
    ap.add_argument("--spark-python", default=str(DEFAULT_SPARK_PY), help="a Python with pyspark")
    ap.add_argument("--spark-memory", default="8g", help="spark.driver.memory (local mode: the whole job)")
    ap.add_argument("--mem-limit-gb", type=float, default=16.0, help="kill a contender past this RSS")
    ap.add_argument("--timeout", type=float, default=3600.0, help="kill a contender after this many s")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each contender, wait up to this many s for an idle machine (shared machines)",
    )
    ap.add_argument("--profile", action="store_true", help="also run compact() under cProfile (extra run)")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--report", default=None, help="markdown report (default bench/results/compact-<N>.md)")
    ap.add_argument("--keep", action="store_true", help="keep outputs and state folders")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        run_phase_here(PHASES[args.phase], args.job, trace_lines=40, add_rss=True)
        return

    chosen = [c.strip() for c in args.only.split(",") if c.strip()] or list(CONTENDERS)
    chosen = [c for c in chosen if c not in {s.strip() for s in args.skip.split(",")}]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contender(s) {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
    work = Path(args.workdir)
    run_dir = work / f"run-{args.events}"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "tmp").mkdir(parents=True)
    runner = Runner(run_dir, args.mem_limit_gb, args.timeout, args.quiet_wait)
    tmp = str(run_dir / "tmp")

    # the lake: generated once per (events, seed), then reused
    lake = work / f"lake-{args.events}-s{args.seed}"
    marker = lake / ".bench-generated.json"
    if marker.exists():
        gen = json.loads(marker.read_text())
        print(f"--- reusing {lake} ({gen['events']:,} events)", file=sys.stderr)
    else:
        shutil.rmtree(lake, ignore_errors=True)
        gen = runner.run(
            "generate", "generate", {"lake": str(lake), "events": args.events, "seed": args.seed}
        )
        if "error" in gen:
            sys.exit(f"generation failed: {gen['error']}")
        marker.write_text(json.dumps(gen))
    plan = runner.run("plan", "plan", {"lake": str(lake)})
    if "error" in plan:
        sys.exit(f"planning failed: {plan['error']}\n{plan.get('traceback', '')}")
    (run_dir / "plan.json").write_text(json.dumps(plan))
    N = plan["events"]

    res: dict[str, dict] = {}
    outputs: dict[str, dict] = {}
    base = {"plan": plan, "tmp": tmp}
    for name in ("floor", "scan"):
        if name in chosen:
            res[name] = runner.run(name, name, base)
    if "product" in chosen:
        res["product"] = runner.run(
            "product",
            "product",
            {"lake": str(lake), "state": str(run_dir / "state"), "batch_events": args.batch_events},
        )
        outputs["product"] = {"kind": "product", "path": str(run_dir / "state")}
    for name in ("duckdb", "polars", "pandas"):
        if name in chosen:
            res[name] = runner.run(name, name, {**base, "out": str(run_dir / "out" / name)})
            outputs[name] = {"kind": "parquet", "path": str(run_dir / "out" / name)}
    subset_files = None
    if "delta" in chosen:
        res["delta"] = runner.run(
            "delta",
            "delta",
            {
                **base,
                "out": str(run_dir / "out" / "delta"),
                "subset_events": args.merge_subset,
                "batch_events": args.merge_batch_events,
            },
        )
        outputs["delta"] = {"kind": "delta", "path": str(run_dir / "out" / "delta")}
        subset_files = res["delta"].get("subset_files")
    if "spark" in chosen:
        if not Path(args.spark_python).exists():
            res["spark"] = {"error": f"no Python with pyspark at {args.spark_python} (see bench/README.md)"}
        else:
            res["spark"] = runner.run(
                "spark",
                "spark",
                {**base, "out": str(run_dir / "out" / "spark"), "spark_memory": args.spark_memory},
                python=args.spark_python,
            )
            outputs["spark"] = {"kind": "dir", "path": str(run_dir / "out" / "spark")}
    inc_info = inc_profile = None
    if "incremental" in chosen:
        base_files, tail_files, cut = _tail(plan, args.incremental_share)
        inc_lake = run_dir / "inc-lake"
        _link_objects(plan, base_files, inc_lake)
        job = {"lake": str(inc_lake), "state": str(run_dir / "inc-state"), "batch_events": args.batch_events}
        res["inc-base"] = runner.run("incremental-base", "product", job)
        if args.profile and (run_dir / "inc-state").exists():
            shutil.copytree(run_dir / "inc-state", run_dir / "inc-state-profile")
        _link_objects(plan, tail_files, inc_lake)
        res["incremental"] = runner.run("incremental", "product", job)
        if args.profile and (run_dir / "inc-state-profile").exists():
            inc_profile = runner.run(
                "profile-incremental",
                "product",
                {
                    **job,
                    "state": str(run_dir / "inc-state-profile"),
                    "profile": str(run_dir / "incremental.prof"),
                },
            )
            shutil.rmtree(run_dir / "inc-state-profile", ignore_errors=True)
        outputs["incremental"] = {"kind": "product", "path": str(run_dir / "inc-state")}
        inc_info = {
            "cut": datetime.fromtimestamp(cut / 1e6, UTC).isoformat(),
            "objects": len(tail_files),
            "events": sum(f["rows"] for f in tail_files),
            "per_topic": {
                t["table"]: sum(1 for f in tail_files if f["topic"] == n) for n, t in plan["topics"].items()
            },
        }
    profile = None
    if args.profile:
        profile = runner.run(
            "profile",
            "product",
            {
                "lake": str(lake),
                "state": str(run_dir / "state-profile"),
                "batch_events": args.batch_events,
                "profile": str(run_dir / "compact.prof"),
            },
        )
        shutil.rmtree(run_dir / "state-profile", ignore_errors=True)

    checks: dict[str, str] = {}
    if not args.no_verify and outputs:
        ver = runner.run("verify", "verify", {**base, "outputs": outputs, "subset_files": subset_files})
        if "error" in ver:
            checks = {name: f"verify failed: {ver['error']}" for name in outputs}
        else:
            ref = ver.get("reference")
            for name in outputs:
                if "error" in res.get(name, {}):
                    checks[name] = "-"
                elif name == "delta":
                    checks[name] = (
                        _check(ver.get(name), ver.get("reference-subset"), True)
                        + " (vs QUALIFY of the subset)"
                    )
                else:
                    checks[name] = _check(ver.get(name), ref, outputs[name]["kind"] != "product")
            if "product" in ver and "incremental" in ver:
                same = _check(ver["incremental"], ver["product"], False)
                checks["incremental"] += f"; same as the full rebuild: {same}"
            res["verify"] = ver

    versions = _versions(args.spark_python if "spark" in chosen else None)
    codes = sorted({r["code"] for r in res.values() if isinstance(r, dict) and r.get("code")})
    report = render(
        args,
        plan,
        gen,
        res,
        checks,
        inc_info,
        {"full": profile, "incremental": inc_profile},
        versions,
        chosen,
        " / then ".join(codes) or code_identity(),
    )
    print(report["table"])
    path = Path(args.report) if args.report else ROOT / "bench" / "results" / f"compact-{N // 1_000_000}M.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report["markdown"])
    (run_dir / "results.json").write_text(
        json.dumps({"results": res, "checks": checks, "inc": inc_info, "versions": versions}, default=str)
    )
    print(f"\nreport: {path}\nraw results: {run_dir / 'results.json'} (logs: {run_dir / 'logs'})")
    if not args.keep:
        for p in ("state", "out", "inc-lake", "inc-state", "tmp"):
            shutil.rmtree(run_dir / p, ignore_errors=True)


LABELS = {
    "floor": "floor: DuckDB reads all columns -> Arrow",
    "scan": "DuckDB decode-only count, all columns",
    "product": "product: compact() (fresh state)",
    "duckdb": "DuckDB QUALIFY -> Parquet",
    "polars": "Polars sort + unique(last)",
    "pandas": "pandas sort + drop_duplicates",
    "delta": "delta-rs MERGE (subset, projected)",
    "spark": "Spark local[2] row_number",
    "inc-base": "incremental: base compaction",
    "incremental": "incremental: apply the new objects",
}


def render(
    args,
    plan: dict,
    gen: dict,
    res: dict,
    checks: dict,
    inc: dict | None,
    profiles: dict,
    versions: dict,
    chosen: list[str],
    code: str,
) -> dict:
    N = plan["events"]
    floor = res.get("floor", {}).get("seconds") if "error" not in res.get("floor", {}) else None
    full = res.get("product", {}).get("seconds") if "error" not in res.get("product", {}) else None
    rows = []
    for name in (
        "floor",
        "scan",
        "product",
        "duckdb",
        "polars",
        "pandas",
        "delta",
        "spark",
        "inc-base",
        "incremental",
    ):
        r = res.get(name)
        if r is None:
            continue
        events = N
        if name == "delta":
            events = r.get("subset_events", args.merge_subset)
        elif name == "incremental" and inc:
            events = inc["events"]
        elif name == "inc-base" and inc:
            events = N - inc["events"]
        err = r.get("error")
        s = r.get("seconds")
        shown = r.get("projected_seconds", s)
        cells = {
            "contender": LABELS[name],
            "events": f"{events:,}",
            "seconds": "-" if err else (f"{s:.1f}" if name != "delta" else f"{s:.1f} (→ {shown:.0f} at N)"),
            "events/s": "-" if err or not s else f"{events / s:,.0f}",
            "× floor": "-" if err or not floor or not shown else f"{shown / floor:.1f}×",
            "peak RSS MB": f"{r.get('peak_mb', 0):,.0f}",
            "cores own/other": f"{r.get('cpu_cores', 0):.1f} / {r.get('other_cores', 0):.1f}",
            "check": err or checks.get(name, "-"),
        }
        if name == "incremental" and not err and full:
            cells["× floor"] += f" ({s / full:.1%} of full)"
        if name == "spark" and not err:
            cells["seconds"] += f" (+{r.get('startup_seconds', 0):.0f} JVM)"
        rows.append(cells)
    heads = list(rows[0]) if rows else []
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in heads}
    text = [" | ".join(h.ljust(widths[h]) for h in heads), "-+-".join("-" * widths[h] for h in heads)]
    text += [" | ".join(r[h].ljust(widths[h]) for h in heads) for r in rows]
    lake_line = (
        f"lake: {N:,} events in {plan['objects']:,} value files, {plan['bytes'] / 1e6:,.0f} MB "
        f"(generated in {gen.get('seconds', 0):.0f} s, seed {args.seed})"
    )
    table_txt = (
        lake_line + f"\nproduct code: {code}\nproduct options: "
        f"{res.get('product', res.get('incremental', {})).get('options', '?')}\n\n" + "\n".join(text)
    )
    if inc:
        table_txt += (
            f"\n\nincremental: {inc['objects']} new objects, {inc['events']:,} events "
            f"(commit-time cut {inc['cut']}); per table {inc['per_topic']}"
        )
    for which in ("product", "incremental"):
        tables = res.get(which, {}).get("tables")
        if tables:
            table_txt += f"\n\n{which} per table, in completion order:\n" + "\n".join(
                f"  {t}: {v['events']:,} events -> {v['rows']:,} rows ({v['tombstones']:,} tombstones), "
                f"{v['commits']} commits, {v['seconds']:.1f} s, {v['status']}, "
                f"peak so far {v.get('peak_so_far_mb', 0):,.0f} MB"
                for t, v in tables.items()
            )

    md = [
        f"# Compaction benchmark, {N:,} events ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"Machine: {machine(python=False)}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        f"Product code: {code}.",
        "",
        "Command: `.venv/bin/python bench/bench_compact.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Product options: `{res.get('product', res.get('incremental', {})).get('options', '?')}` "
        "(tables run concurrently when `workers` > 1, so per-table seconds overlap).",
        "",
        lake_line + ".",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "|".join("---" for _ in heads) + "|",
    ]
    md += ["| " + " | ".join(r[h].replace("|", "\\|") for h in heads) + " |" for r in rows]
    md += [
        "",
        "Each row is one fresh process; seconds exclude interpreter start and third-party imports. "
        "× floor = seconds ÷ the floor's seconds. Peak RSS = max(psutil samples of the process tree every "
        "0.1 s, the process's own ru_maxrss). cores own/other = average cores the contender kept busy / "
        "average cores busy with anything else on the machine meanwhile (2 cores in all: other > 0.2 "
        "means the row was measured on a shared machine). delta: MERGE time of the subset, projected "
        "linearly to the lake (optimistic: later merges hit a larger table). Checks: row count and key "
        "checksum against a DuckDB QUALIFY over the raw files (and, for the Parquet/Delta outputs, a "
        "checksum of the winning events' (partition, offset)).",
    ]
    if inc:
        md += [
            "",
            f"Incremental: the lake minus its objects whose newest commit is at or after {inc['cut']} "
            f"({inc['objects']} objects, {inc['events']:,} events: {inc['per_topic']}) was compacted "
            "into a fresh state (base row), then those objects were added and `compact()` applied them.",
        ]
    for which in ("product", "incremental"):
        tables = res.get(which, {}).get("tables")
        if tables:
            md += [
                "",
                f"{which} per table (in completion order; the process's peak RSS when the table was done):",
                "",
                "| table | events | rows | tombstones | commits | s | status | peak RSS so far MB |",
                "|---|---|---|---|---|---|---|---|",
            ]
            md += [
                f"| {t} | {v['events']:,} | {v['rows']:,} | {v['tombstones']:,} | {v['commits']} | "
                f"{v['seconds']:.1f} | {v['status']} | {v.get('peak_so_far_mb', 0):,.0f} |"
                for t, v in tables.items()
            ]
    errors = {k: v for k, v in res.items() if isinstance(v, dict) and v.get("error")}
    if errors:
        md += ["", "Errors:", ""] + [
            f"- {k}: `{v['error']}`" + (f"\n\n```\n{v['traceback']}```" if v.get("traceback") else "")
            for k, v in errors.items()
        ]
    for what, profile in profiles.items():
        if profile and profile.get("profile_cumulative"):
            md += [
                "",
                f"cProfile of `compact()`, {what}, `{profile.get('options', '')}` "
                f"({profile['seconds']:.1f} s under the profiler), "
                "top by cumulative time:",
                "",
                "```",
                profile["profile_cumulative"].strip(),
                "```",
                "",
                "top by own time:",
                "",
                "```",
                profile["profile_tottime"].strip(),
                "```",
            ]
            table_txt += f"\n\nprofile ({what}):\n" + profile["profile_cumulative"]
    return {"table": table_txt, "markdown": "\n".join(md) + "\n"}


if __name__ == "__main__":
    main()
