"""The fold on BigQuery: the ``bigquery`` engine of compaction (docs/fold-sql.md, docs/engines.md).

Per batch of change events of a table:

1. the batch's fold skeleton (narrow columns: key, Kafka position, LSN, txId, what holds the TOAST
   placeholder; no values) is appended by a load job (free) to the table's raw change table
   ``<dataset>.changes__<schema>__<table>``, partitioned by ingestion day and clustered by batch
   id, then key;
2. one script (sql/fold/ carried over by sqlglot) reads that batch from today's partition only,
   adds the state rows the batch touches (a working table), folds, and keeps its outputs in
   working tables the engine reads back (a suffix per call: folds run side by side);
3. values are gathered by row id on this side, as on DuckDB, and compaction commits the result
   with the record of applied objects in one Delta commit (the same commit on every engine).

The bytes the script processed come from its job statistics (BigQuery bills the parent job of a
script for its children); the emulator reports none.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import expressions as exp

from lakehouse.sqlfiles import sql
from lakehouse.state.engine import EngineStats
from lakehouse.state.fold import FoldResult, Truncate
from lakehouse.state.sqlfold import FoldInputs, fold_inputs, fold_output, fold_script, raise_if_late
from lakehouse.warehouse.bigquery_warehouse import bq_type, quote, schema_field, upload

if TYPE_CHECKING:
    from google.cloud import bigquery

OUTPUTS = ("out_late", "out_result", "out_effects", "out_new_truncates")
CLUSTERABLE = {"INTEGER", "STRING", "DATE", "DATETIME", "TIMESTAMP", "BOOLEAN", "NUMERIC", "BIGNUMERIC"}
WORK_TABLE_LIFETIME = timedelta(days=1)
CHANGE_PARTITION_DAYS = 30  # a batch is folded the day it is loaded; older skeletons are only history


@dataclass
class BigQueryEngine:
    """The fold in BigQuery. ``dataset``: ``project.dataset`` of the raw change tables and the
    working tables (created if missing); ``client``: a ``google.cloud.bigquery.Client``."""

    client: bigquery.Client
    dataset: str
    location: str | None = None
    kind: str = field(default="bigquery", init=False)
    _ready: set = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def changes_table(self, table: str) -> str:
        return f"{self.dataset}.changes__{table.replace('.', '__')}"

    def fold(
        self,
        table: str,
        events: pa.Table,
        prior: pa.Table | None,
        key: tuple[str, ...],
        row_fields: list[pa.Field],
        truncates: list[Truncate],
        pairing: pa.Table | None,
        keep_images: bool,
        stats: EngineStats,
    ) -> FoldResult:
        inputs = fold_inputs(events, prior, pairing, truncates, key, row_fields)
        batch, day = uuid.uuid4().hex, datetime.now(UTC).date()
        changes = self._append_changes(table, inputs, key, batch, day)
        stats.input_bytes += logical_bytes(inputs.skeleton)
        work = {
            name: f"{self.dataset}.{name}_{batch[:12]}" for name in ("fold_rest", "fold_truncates", *OUTPUTS)
        }
        try:
            rest = inputs.skeleton.slice(inputs.n_events)
            self._create_and_load(work["fold_rest"], rest)
            self._create_and_load(work["fold_truncates"], inputs.truncates)
            job = self._run(
                fold_script(
                    key,
                    row_fields,
                    keep_images,
                    "bigquery",
                    work,
                    skeleton_statement(inputs.skeleton.schema, changes, work["fold_rest"], batch, day),
                )
            )
            stats.folds += 1
            if job.total_bytes_processed is not None:
                stats.bytes_processed = (stats.bytes_processed or 0) + int(job.total_bytes_processed)
            return self._output(inputs, work, truncates, key, row_fields)
        finally:
            for table_id in work.values():
                self.client.delete_table(table_id, not_found_ok=True)

    def _output(
        self,
        inputs: FoldInputs,
        work: dict[str, str],
        truncates: list[Truncate],
        key: tuple[str, ...],
        row_fields: list[pa.Field],
    ) -> FoldResult:
        def read(name: str) -> pa.Table:
            text = sql("fold/read_output.sql", table=quote(work[name]))
            return (
                self.client.query(text, location=self.location)
                .result()
                .to_arrow(create_bqstorage_client=False)
            )

        late = read("out_late").to_pylist()[0]
        raise_if_late((late["late"], late["first_in"]), inputs.wide)
        effects = read("out_effects").to_pylist()[0]
        effects = (effects["inserts"], effects["updates"], effects["deletes"], effects["duplicates"])
        return fold_output(
            inputs, read("out_result"), effects, truncates, read("out_new_truncates"), key, row_fields
        )

    def _run(self, script: str):
        from google.cloud import bigquery

        job = self.client.query(
            script, job_config=bigquery.QueryJobConfig(use_query_cache=False), location=self.location
        )
        job.result()
        return job

    def _append_changes(self, table: str, inputs: FoldInputs, key: tuple[str, ...], batch: str, day) -> str:
        events = inputs.skeleton.slice(0, inputs.n_events)
        rows = events.append_column("_batch", pa.array([batch] * events.num_rows, pa.string())).append_column(
            "_ingested_day", pa.array([day] * events.num_rows, pa.date32())
        )
        table_id = self.changes_table(table)
        self._ensure_changes(table_id, rows.schema, key)
        upload(self.client, rows, rows.schema, table_id, truncate=False, location=self.location)
        return table_id

    def _ensure_changes(self, table_id: str, schema: pa.Schema, key: tuple[str, ...]) -> None:
        """The raw change table, created on first use; created anew when the skeleton's columns
        changed (a new primary key: compaction rebuilds the state then, from every object)."""
        from google.cloud import bigquery

        wanted = [schema_field(f.name, f.type) for f in schema]
        with self._lock:
            if table_id in self._ready:
                return
            self.client.create_dataset(self._dataset(), exists_ok=True)
            try:
                existing = self.client.get_table(table_id)
                if [(f.name, f.field_type, f.mode) for f in existing.schema] == [
                    (f.name, f.field_type, f.mode) for f in wanted
                ]:
                    self._ready.add(table_id)
                    return
                self.client.delete_table(table_id)
            except Exception as exc:  # noqa: BLE001 - NotFound: create it below
                if type(exc).__name__ != "NotFound":
                    raise
            spec = bigquery.Table(table_id, schema=wanted)
            spec.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY,
                field="_ingested_day",
                expiration_ms=CHANGE_PARTITION_DAYS * 86_400_000,
            )
            spec.clustering_fields = clustering(schema, key)
            self.client.create_table(spec)
            self._ready.add(table_id)

    def _dataset(self):
        from google.cloud import bigquery

        ds = bigquery.Dataset(self.dataset)
        if self.location:
            ds.location = self.location
        return ds

    def _create_and_load(self, table_id: str, rows: pa.Table) -> None:
        from google.cloud import bigquery

        spec = bigquery.Table(table_id, schema=[schema_field(f.name, f.type) for f in rows.schema])
        spec.expires = datetime.now(UTC) + WORK_TABLE_LIFETIME  # a killed run leaves nothing for long
        self.client.create_table(spec)
        upload(self.client, rows, rows.schema, table_id, truncate=True, location=self.location)


def skeleton_statement(schema: pa.Schema, changes: str, rest: str, batch: str, day: date) -> str:
    """sql/fold/bigquery_skeleton.sql for these tables (the skeleton's columns, in order), this
    batch and ingestion day."""
    if not re.fullmatch(r"[0-9a-f]{32}", batch):
        raise ValueError(f"batch id {batch!r} is not a uuid4 hex")
    columns = ", ".join(quote(f.name) for f in schema)
    literals = {
        "batch": exp.Literal.string(batch).sql("bigquery"),
        "ingested_day": exp.cast(exp.Literal.string(day.isoformat()), "DATE").sql("bigquery"),
    }
    text = sql(
        "fold/bigquery_skeleton.sql", columns=columns, changes=quote(changes), rest=quote(rest), **literals
    )
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()


def clustering(schema: pa.Schema, key: tuple[str, ...]) -> list[str]:
    """The batch id first (each fold reads one batch: its blocks are all BigQuery scans of the
    day's partition), then the key columns BigQuery can cluster by (scalar, clusterable type)."""
    usable = [
        k
        for k in key
        if bq_type(schema.field(k).type)[1] == "NULLABLE" and bq_type(schema.field(k).type)[0] in CLUSTERABLE
    ]
    return ["_batch", *usable][:4]


def logical_bytes(rows: pa.Table) -> int:
    """What BigQuery counts reading every column of ``rows`` once (its data-size rules: 8 bytes a
    number, date or time, 1 a boolean, 2 plus the bytes a string; nulls count nothing)."""
    total = 0
    for col in rows.columns:
        t, present = col.type, len(col) - col.null_count
        if pa.types.is_list(t):
            values = (
                pa.concat_arrays([c.flatten() for c in col.chunks])
                if col.num_chunks
                else pa.array([], pa.int64())
            )
            total += 8 * (len(values) - values.null_count)
        elif pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t):
            total += 2 * present + (pc.sum(pc.binary_length(col)).as_py() or 0)
        else:
            total += (1 if pa.types.is_boolean(t) else 8) * present
    return total
