"""The production warehouse: BigQuery, one dataset per source schema, one table per source table.

A load stages the changed clusters' visible rows and the removed keys as Parquet
(``load_table_from_file``) and applies them with one ``MERGE`` guarded by the source position
(``_cdc_lsn``) and pruned to the partitions the changed rows live in; a full refresh loads a complete
snapshot with ``WRITE_TRUNCATE``. Loads are idempotent: the MERGE of the same staged rows changes
nothing the second time, and the load record (``lakehouse_meta.loads``) is written after it.

Type mapping (decoded Debezium/Arrow type -> BigQuery): integers -> INT64; float/double -> FLOAT64;
boolean -> BOOL; text, json, uuid, enum, xml, decimals that fit nowhere -> STRING; bytea -> BYTES;
numeric(p,s) with p-s <= 29 and s <= 9 -> NUMERIC, with p-s <= 38 and s <= 38 -> BIGNUMERIC, wider
-> STRING (exact text); timestamptz -> TIMESTAMP; timestamp -> DATETIME; date -> DATE; time -> TIME;
interval (duration) -> INT64 microseconds; arrays -> REPEATED; hstore (map) -> REPEATED
RECORD<key, value>; structs -> RECORD.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.config import TableConfig
from lakehouse.quality import SqlTarget
from lakehouse.sqlfiles import sql
from lakehouse.state.table import StateError, StateTable
from lakehouse.warehouse.base import KeyProblems, LoadResult
from lakehouse.warehouse.changes import StateChanges, changes_since, schema_fingerprint, warehouse_schema

SQL = "warehouse/bigquery/"
DELETED = "_cdc_deleted"


class WarehouseSchemaError(StateError):
    """A source change the warehouse table cannot follow in place; the message says what to do."""


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
_RESERVED_PREFIXES = ("_table_", "_file_", "_partition", "_row_timestamp", "__root__", "_colidentifier")


def column_name(source: str) -> str:
    """The BigQuery name of a source column: itself when BigQuery's plain rules hold it (letters,
    digits, underscores, not a leading digit, no reserved prefix); otherwise those characters kept,
    every other one ``_``, and 6 hex digits of the source name so that two names never meet
    (``a"b`` -> ``a_b_<hash>``). The table's column description holds the source name."""
    if _PLAIN_NAME.fullmatch(source) and not source.lower().startswith(_RESERVED_PREFIXES):
        return source
    plain = re.sub(r"[^A-Za-z0-9_]", "_", source)
    plain = plain if re.match(r"[A-Za-z_]", plain) else "_" + plain
    plain = "c" + plain if plain.lower().startswith(_RESERVED_PREFIXES) else plain
    return f"{plain[:280]}_{hashlib.sha1(source.encode()).hexdigest()[:6]}"


def bigquery_schema(meta) -> pa.Schema:
    """The warehouse schema under BigQuery names; a renamed field keeps its source name in its
    metadata (``source_name``), which becomes the column's description."""
    return pa.schema(
        [
            f.with_name(column_name(f.name)).with_metadata(
                {"source_name": f.name} if column_name(f.name) != f.name else None
            )
            for f in warehouse_schema(meta)
        ]
    )


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "\\`") + "`"


def bq_type(t: pa.DataType) -> tuple[str, str, list]:
    """(BigQuery type, mode, sub-fields) of an Arrow type; see the module docstring."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner, mode, sub = bq_type(t.value_type)
        if mode == "REPEATED":
            raise WarehouseSchemaError("arrays of arrays have no BigQuery type")
        return inner, "REPEATED", sub
    if pa.types.is_map(t):
        return "RECORD", "REPEATED", [("key", t.key_type), ("value", t.item_type)]
    if pa.types.is_struct(t):
        return "RECORD", "NULLABLE", [(f.name, f.type) for f in t]
    if pa.types.is_integer(t) or pa.types.is_duration(t):
        return "INTEGER", "NULLABLE", []
    if pa.types.is_floating(t):
        return "FLOAT", "NULLABLE", []
    if pa.types.is_boolean(t):
        return "BOOLEAN", "NULLABLE", []
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BYTES", "NULLABLE", []
    if pa.types.is_decimal(t):
        whole = t.precision - t.scale
        if whole <= 29 and t.scale <= 9:
            return "NUMERIC", "NULLABLE", []
        if whole <= 38 and t.scale <= 38:
            return "BIGNUMERIC", "NULLABLE", []
        return "STRING", "NULLABLE", []
    if pa.types.is_timestamp(t):
        return ("TIMESTAMP" if t.tz else "DATETIME"), "NULLABLE", []
    if pa.types.is_date(t):
        return "DATE", "NULLABLE", []
    if pa.types.is_time(t):
        return "TIME", "NULLABLE", []
    return "STRING", "NULLABLE", []


def schema_field(name: str, t: pa.DataType, required: bool = False, description: str | None = None):
    from google.cloud import bigquery

    kind, mode, sub = bq_type(t)
    if required and mode == "NULLABLE":
        mode = "REQUIRED"
    return bigquery.SchemaField(
        name,
        kind,
        mode=mode,
        fields=[schema_field(n, st) for n, st in sub],
        # stubs say str; None is accepted at runtime (an explicit null description)
        description=description,  # type: ignore[arg-type]
    )


def _source_name(f: pa.Field) -> str | None:
    meta = f.metadata or {}
    return f"source column: {meta[b'source_name'].decode()}" if b"source_name" in meta else None


def arrow_for_bigquery(t: pa.DataType) -> pa.DataType:
    """The Arrow type to write to Parquet for a column of BigQuery type ``bq_type(t)``."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(arrow_for_bigquery(t.value_type))
    if pa.types.is_map(t):
        return pa.list_(
            pa.struct([("key", arrow_for_bigquery(t.key_type)), ("value", arrow_for_bigquery(t.item_type))])
        )
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, arrow_for_bigquery(f.type)) for f in t])
    if pa.types.is_duration(t):
        return pa.int64()
    if pa.types.is_decimal(t) and bq_type(t)[0] == "STRING":
        return pa.string()
    if pa.types.is_decimal(t) and bq_type(t)[0] == "BIGNUMERIC":
        return pa.decimal256(76, 38)
    if pa.types.is_decimal(t):
        return pa.decimal128(38, 9)
    if pa.types.is_time(t):
        return pa.time64("us")
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def to_bigquery_column(col: pa.ChunkedArray | pa.Array, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if col.type == target:
        return col
    if pa.types.is_map(col.type):  # map -> list<struct<key, value>>: same layout, other type
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        entries = pa.StructArray.from_arrays([col.keys, col.items], names=["key", "value"])
        col = pa.ListArray.from_arrays(col.offsets, entries, mask=col.is_null())
    if pa.types.is_duration(col.type):
        col = col.cast(pa.duration("us")).cast(pa.int64())
    return col.cast(target)


@dataclass
class BigQueryLoadResult(LoadResult):
    bytes_processed: int = 0
    bytes_billed: int = 0
    dml_rows: int = 0  # rows the MERGE inserted, updated or deleted
    estimated_bytes: int | None = None  # dry run before the MERGE
    added_columns: list[str] = field(default_factory=list)
    partition_range: str | None = None

    def details(self) -> dict[str, int | str | None]:
        """What the load cost."""
        return {
            "bytes_processed": self.bytes_processed,
            "bytes_billed": self.bytes_billed,
            "rows_affected": self.dml_rows,
            "merge_estimate_bytes": self.estimated_bytes,
            "partition_range": self.partition_range or "-",
            "added_columns": ", ".join(self.added_columns) or "-",
        }


class BigQueryWarehouse:
    """The :class:`~lakehouse.warehouse.base.Warehouse` in BigQuery. ``client_factory`` returns a
    ``google.cloud.bigquery.Client`` (credentials decided by the caller); ``endpoint``: the emulator
    that client talks to, if any (dbt gets its own target for it)."""

    kind = "bigquery"

    def __init__(
        self,
        client_factory: Callable,
        project: str,
        dataset_prefix: str = "",
        meta_dataset: str = "lakehouse_meta",
        location: str | None = None,
        endpoint: str | None = None,
    ):
        self.client_factory = client_factory
        self.project = project
        self.dataset_prefix = dataset_prefix
        self.meta_dataset = meta_dataset
        self.location = location
        self.endpoint = endpoint
        self._client = None
        self._meta_ready = False

    # -- names -----------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def dataset_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset_prefix}{table.split('.', 1)[0]}"

    def table_id(self, table: str) -> str:
        return f"{self.dataset_id(table)}.{table.split('.', 1)[1]}"

    def target(self, table: str) -> str:
        return quote(self.table_id(table))

    def table_name(self, table: str) -> str:
        return self.table_id(table)

    def dbt_env(self) -> dict[str, str]:
        env = {
            "LAKEHOUSE_DBT_TARGET": "bigquery_emulator" if self.endpoint else "bigquery",
            "LAKEHOUSE_BIGQUERY_PROJECT": self.project,
            "LAKEHOUSE_BIGQUERY_DATASET_PREFIX": self.dataset_prefix,
            "LAKEHOUSE_BIGQUERY_LOCATION": self.location or "US",
        }
        if self.endpoint:
            env["LAKEHOUSE_BIGQUERY_ENDPOINT"] = self.endpoint
        else:  # dbt's oauth method is Google's ADC, whose project is GOOGLE_CLOUD_PROJECT: this one
            env["GOOGLE_CLOUD_PROJECT"] = self.project
        return env

    def dbt_relation(self, schema: str, name: str) -> str:
        return f"marts_{schema}.{name}"  # the dataset prefix is added by dataset_id()

    def quality_target(self) -> SqlTarget:
        """sqlalchemy-bigquery on this warehouse's own client: the same credentials as the loads."""
        return SqlTarget(
            f"bigquery://{self.project}?user_supplied_client=true",
            "bigquery",
            lambda relation: [f.name for f in self.client.get_table(self.table_id(relation)).schema],
            self.row_count,
            schema_of=lambda schema: f"{self.dataset_prefix}{schema}",
            engine_kwargs={"connect_args": {"client": self.client}},
        )

    @property
    def loads(self) -> str:
        return quote(f"{self.project}.{self.meta_dataset}.loads")

    def staging(self, table: str, load_id: str) -> str:
        """One staging table per load: concurrent loads of a table never read each other's rows."""
        return f"{self.project}.{self.meta_dataset}.stage__{table.replace('.', '__')}__{load_id}"

    # -- plumbing --------------------------------------------------------------------------------

    def _query(self, text: str, params: dict | None = None, dry_run: bool = False):
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[_param(k, v) for k, v in (params or {}).items()],
            dry_run=dry_run,
            use_query_cache=False,
        )
        job = self.client.query(text, job_config=config, location=self.location)
        if not dry_run:
            job.result()
        return job

    def _ensure_dataset(self, dataset_id: str) -> None:
        from google.cloud import bigquery

        ds = bigquery.Dataset(dataset_id)
        if self.location:
            ds.location = self.location
        self.client.create_dataset(ds, exists_ok=True)

    def _ensure_meta(self) -> None:
        if self._meta_ready:
            return
        self._ensure_dataset(f"{self.project}.{self.meta_dataset}")
        self._query(sql(SQL + "create_loads.sql", loads=self.loads))
        self._meta_ready = True

    def last_load(self, table: str) -> dict | None:
        self._ensure_meta()
        rows = list(self._query(sql(SQL + "last_load.sql", loads=self.loads), {"table_name": table}).result())
        return dict(rows[0].items()) if rows else None

    # -- loading ---------------------------------------------------------------------------------

    def load(
        self, state_uri: str, entry: TableConfig, full_refresh: bool = False, version: int | None = None
    ) -> BigQueryLoadResult:
        """Bring the BigQuery table up to the newest version of the current-state table (or to
        ``version``: a consistent root's published one)."""
        started = time.perf_counter()
        table = entry.table
        meta = StateTable(state_uri, table).require(version)
        fingerprint = schema_fingerprint(meta, state_uri)
        last = self.last_load(table)
        loaded = json.loads(last["bq_schema"]) if last else None
        loaded_fingerprint = last["fingerprint"] if last else None
        added: list[str] = []
        retype = False
        if last and loaded_fingerprint != fingerprint:
            # the source schema moved: added columns (every loaded column keeping its BigQuery
            # type, same key) continue in place; anything else recreates the table, loaded in full
            wanted = _bq_columns(bigquery_schema(meta))
            assert loaded is not None  # parsed from ``last``
            if loaded["key"] == [column_name(k) for k in meta.key] and all(
                wanted.get(n) == t for n, t in loaded["columns"].items()
            ):
                added = [n for n in wanted if n not in loaded["columns"]]
                loaded_fingerprint = fingerprint
            else:
                retype = True
        changes = changes_since(
            state_uri,
            table,
            last["state_version"] if last else None,
            loaded_fingerprint,
            full_refresh,
            partition_column=entry.warehouse.partition_by,
            version=version,
        )
        schema = bigquery_schema(changes.meta)
        if loaded is not None and not retype and set(loaded["columns"]) <= set(schema.names):
            # the table's column order: as loaded, added columns last (ALTER appends; the emulator
            # loads Parquet by position, BigQuery by name: this order suits both)
            order = [*loaded["columns"], *(n for n in schema.names if n not in loaded["columns"])]
            schema = pa.schema([schema.field(n) for n in order])
        result = BigQueryLoadResult(
            table, "up-to-date", changes.reason, changes.version, 0, 0, 0, len(changes.clusters), 0.0
        )
        if changes.up_to_date:
            result.rows = self.row_count(table)
        else:
            if not retype:
                self._add_columns(entry, schema, added, result)
            if changes.full:
                self._full(entry, changes, schema, result, recreate=retype)
            else:
                self._incremental(entry, changes, schema, result)
            result.rows = self.row_count(table)
            record = {"key": [column_name(k) for k in changes.meta.key], "columns": _bq_columns(schema)}
            self._query(
                sql(SQL + "record_load.sql", loads=self.loads),
                {
                    "table_name": table,
                    "state_version": changes.version,
                    "fingerprint": changes.fingerprint,
                    "bq_schema": json.dumps(record),
                    "mode": result.mode,
                    "row_count": result.rows,
                },
            )
        result.seconds = time.perf_counter() - started
        return result

    def load_history(self, state_uri: str, entry: TableConfig) -> int:
        """``<dataset>.<table>_history``: every version of every row (history: true), replaced whole."""
        from google.cloud import bigquery

        from lakehouse.state.export import table_history

        rows = table_history(state_uri, entry.table)
        rows = rows.rename_columns([column_name(c) for c in rows.column_names])
        name = f"{entry.table}_history"
        self._ensure_dataset(self.dataset_id(name))
        self.client.delete_table(self.table_id(name), not_found_ok=True)  # its columns follow the source's
        self.client.create_table(
            bigquery.Table(self.table_id(name), schema=[schema_field(f.name, f.type) for f in rows.schema])
        )
        written, _ = self._upload(rows, rows.schema, self.table_id(name), truncate=True)
        return written

    def _create_target(self, entry: TableConfig, schema: pa.Schema) -> None:
        from google.cloud import bigquery

        self._ensure_dataset(self.dataset_id(entry.table))
        key = {column_name(k) for k in entry.primary_key or ()}
        table = bigquery.Table(
            self.table_id(entry.table),
            schema=[
                schema_field(f.name, f.type, required=f.name in key, description=_source_name(f))
                for f in schema
            ],
        )
        layout = entry.warehouse
        if layout.partition_by:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=layout.partition_granularity.value, field=layout.partition_by
            )
        if layout.cluster_by:
            table.clustering_fields = list(layout.cluster_by)
        table.description = f"Current state of {entry.table} (topic {entry.topic}), loaded by cdc-lakehouse"
        self.client.create_table(table, exists_ok=True)

    def _upload(
        self, rows: pa.RecordBatchReader, schema: pa.Schema, table_id: str, truncate: bool
    ) -> tuple[int, object]:
        return upload(self.client, rows, schema, table_id, truncate, self.location)

    def _full(
        self,
        entry: TableConfig,
        changes: StateChanges,
        schema: pa.Schema,
        result: BigQueryLoadResult,
        recreate: bool,
    ) -> None:
        result.mode = "full"
        if recreate:  # a column's BigQuery type or the key changed: the table is recreated
            self._query(sql(SQL + "drop_table.sql", target=self.target(entry.table)))
        self._create_target(entry, schema)
        written, job = self._upload(
            changes.rows(rename=column_name), schema, self.table_id(entry.table), truncate=True
        )
        result.inserted = written
        result.bytes_processed += int(getattr(job, "output_bytes", 0) or 0)

    def _add_columns(
        self, entry: TableConfig, schema: pa.Schema, added: list[str], result: BigQueryLoadResult
    ) -> None:
        # ALTER, not a load's ALLOW_FIELD_ADDITION: the same statement works for MERGE and reloads
        for name in added:
            self._query(
                sql(
                    SQL + "add_column.sql",
                    target=self.target(entry.table),
                    column=quote(name),
                    column_type=bq_type(schema.field(name).type)[0],
                )
            )
        result.added_columns = added

    def _incremental(
        self, entry: TableConfig, changes: StateChanges, schema: pa.Schema, result: BigQueryLoadResult
    ) -> None:
        result.mode = "incremental"
        staging_schema = schema.append(pa.field(DELETED, pa.bool_()))
        staging_id = self.staging(entry.table, uuid.uuid4().hex[:12])
        self._stage_table(staging_id, staging_schema, entry)
        try:
            self._merge_staged(entry, changes, schema, staging_schema, staging_id, result)
        finally:
            self.client.delete_table(staging_id, not_found_ok=True)

    def _merge_staged(
        self,
        entry: TableConfig,
        changes: StateChanges,
        schema: pa.Schema,
        staging_schema: pa.Schema,
        staging_id: str,
        result: BigQueryLoadResult,
    ) -> None:
        upserts = _with_flag(changes.rows(rename=column_name), staging_schema, False)
        deletes = _deletes(changes, staging_schema)
        written, _ = self._upload(_chain(upserts, deletes), staging_schema, staging_id, truncate=True)
        result.inserted = written - (deletes.num_rows if deletes is not None else 0)
        result.removed_keys = deletes.num_rows if deletes is not None else 0
        if written == 0:
            return
        key = tuple(column_name(k) for k in changes.meta.key)
        text, params = self.merge_statement(
            entry, staging_id, schema, key, changes.version, changes.partition_bounds
        )
        if "partition_lo" in params:
            result.partition_range = f"{params['partition_lo']} .. {params['partition_hi']}"
        try:
            result.estimated_bytes = int(self._query(text, params, dry_run=True).total_bytes_processed or 0)
        except Exception:  # noqa: BLE001  (an estimate only; emulators may not dry-run)
            result.estimated_bytes = None
        job = self._query(text, params)
        result.bytes_processed += int(job.total_bytes_processed or 0)
        result.bytes_billed += int(job.total_bytes_billed or 0)
        result.dml_rows = int(job.num_dml_affected_rows or 0)

    def merge_statement(
        self,
        entry: TableConfig,
        staging_id: str,
        schema: pa.Schema,
        key: tuple[str, ...],
        state_version: int,
        partition_bounds: tuple | None,
    ) -> tuple[str, dict]:
        """The MERGE of a staging table into the target, and its parameters."""
        params: dict = {"state_version": state_version, "table_name": entry.table}
        partition_filter = ""
        layout = entry.warehouse
        if layout.partition_by and partition_bounds is not None:
            params["partition_lo"], params["partition_hi"] = partition_bounds
            partition_filter = f" AND t.{quote(layout.partition_by)} BETWEEN @partition_lo AND @partition_hi"
        columns = [f.name for f in schema]
        text = sql(
            SQL + "merge_changes.sql",
            target=self.target(entry.table),
            staging=quote(staging_id),
            loads=self.loads,
            key_match=" AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in key),
            partition_filter=partition_filter,
            update_set=", ".join(f"{quote(c)} = s.{quote(c)}" for c in columns if c not in key),
            columns=", ".join(quote(c) for c in columns),
            source_columns=", ".join(f"s.{quote(c)}" for c in columns),
        )
        return text, params

    def _stage_table(self, staging_id: str, schema: pa.Schema, entry: TableConfig) -> None:
        from google.cloud import bigquery

        table = bigquery.Table(staging_id, schema=[schema_field(f.name, f.type) for f in schema])
        table.description = f"Staging of one incremental load of {entry.table} (dropped after it)"
        table.expires = datetime.now(UTC) + timedelta(days=1)  # a killed load leaves nothing for long
        self.client.create_table(table)

    # -- reads for checks and tests ------------------------------------------------------------

    def row_count(self, table: str) -> int:
        rows = list(self._query(sql(SQL + "row_count.sql", target=self.target(table))).result())
        return int(rows[0][0])

    def loaded_version(self, table: str) -> int | None:
        last = self.last_load(table)
        return last["state_version"] if last else None

    def column_types(self, table: str) -> list[tuple[str, str]]:
        """Columns as the loads recorded them (tables.get lags behind ALTER on the emulator)."""
        last = self.last_load(table)
        if last is None:
            return []
        return [(name, kind) for name, (kind, _mode) in json.loads(last["bq_schema"])["columns"].items()]

    def columns(self, table: str) -> list[str]:
        return [name for name, _ in self.column_types(table)]

    def key_problems(self, table: str, key: tuple[str, ...]) -> KeyProblems:
        key = tuple(column_name(k) for k in key)
        cols = ", ".join(quote(k) for k in key)
        any_null = " OR ".join(f"{quote(k)} IS NULL" for k in key)
        row = list(
            self._query(
                sql(
                    SQL + "key_problems.sql",
                    target=self.target(table),
                    key_columns=cols,
                    any_key_null=any_null,
                )
            ).result()
        )[0]
        return KeyProblems(int(row[0]), int(row[1]), [str(s) for s in (row[2] or [])])

    def not_pseudonymised(self, table: str, column: str) -> int:
        rows = list(
            self._query(
                sql(
                    SQL + "not_pseudonymised.sql",
                    target=self.target(table),
                    column=quote(column_name(column)),
                )
            ).result()
        )
        return int(rows[0][0])

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """A table or dbt relation (``dataset-without-prefix.name``) as Arrow, whole or some columns."""
        text = (
            sql(
                SQL + "select_columns.sql",
                target=self.target(table),
                columns=", ".join(quote(column_name(c)) for c in columns),
            )
            if columns
            else sql(SQL + "select_all.sql", target=self.target(table))
        )
        return self._query(text).result().to_arrow(create_bqstorage_client=False)


def bigquery_client(project: str | None, location: str | None, endpoint: str | None = None):
    """A BigQuery client: on an emulator's ``endpoint`` with anonymous credentials, else with Google's
    Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, workload identity, gcloud):
    the one mechanism the loads, the engine, the checks and dbt (profile ``method: oauth``) share.
    ``project`` unset: ``GOOGLE_CLOUD_PROJECT``, else the credentials' project."""
    from google.cloud import bigquery

    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    return bigquery.Client(project=project, location=location)


def upload(
    client,
    rows: pa.RecordBatchReader | pa.Table,
    schema: pa.Schema,
    table_id: str,
    truncate: bool,
    location: str | None = None,
) -> tuple[int, object]:
    """Rows -> a Parquet file in BigQuery's types -> a load job into ``table_id`` (which exists)."""
    from google.cloud import bigquery

    target = pa.schema([pa.field(f.name, arrow_for_bigquery(f.type)) for f in schema])
    batches = rows.to_batches() if isinstance(rows, pa.Table) else rows
    written = 0
    with tempfile.TemporaryFile() as f:
        with pq.ParquetWriter(f, target, compression="zstd") as writer:
            for batch in batches:
                tb = pa.Table.from_batches([batch])
                cols = [
                    to_bigquery_column(tb.column(t.name), t.type)
                    if t.name in tb.column_names
                    else pa.nulls(tb.num_rows, t.type)
                    for t in target
                ]
                tb = pa.Table.from_arrays(cols, schema=target)
                writer.write_table(tb)
                written += tb.num_rows
        f.seek(0)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=(
                bigquery.WriteDisposition.WRITE_TRUNCATE
                if truncate
                else bigquery.WriteDisposition.WRITE_APPEND
            ),
            parquet_options=parquet_load_options(),
        )
        job = client.load_table_from_file(f, table_id, job_config=config, location=location)
        job.result()
    return written, job


def _bq_columns(schema: pa.Schema) -> dict[str, list[str]]:
    return {f.name: list(bq_type(f.type)[:2]) for f in schema}


def _param(name: str, value):
    from google.cloud import bigquery

    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, datetime):
        kind = "TIMESTAMP" if value.tzinfo else "DATETIME"
    elif isinstance(value, date):
        kind = "DATE"
    else:
        kind = "STRING"
    return bigquery.ScalarQueryParameter(name, kind, value)


def parquet_load_options():
    from google.cloud.bigquery.format_options import ParquetOptions

    options = ParquetOptions()
    options.enable_list_inference = True  # Parquet LIST -> REPEATED, not a record of "list"/"element"
    return options


def _with_flag(rows: pa.RecordBatchReader, schema: pa.Schema, deleted: bool) -> pa.RecordBatchReader:
    def batches():
        for b in rows:
            yield pa.RecordBatch.from_arrays(
                [*b.columns, pa.array([deleted] * b.num_rows, pa.bool_())], names=[*b.schema.names, DELETED]
            )

    base = pa.schema([*rows.schema, pa.field(DELETED, pa.bool_())])
    return pa.RecordBatchReader.from_batches(base, batches())


def _deletes(changes: StateChanges, schema: pa.Schema) -> pa.Table | None:
    gone = changes.deletes
    if gone is None or gone.num_rows == 0:
        return None
    gone = gone.rename_columns([column_name(c) for c in gone.column_names])
    n = gone.num_rows
    arrays = []
    for f in schema:
        if f.name == DELETED:
            arrays.append(pa.array([True] * n, pa.bool_()))
        elif f.name in gone.column_names:
            arrays.append(gone.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _chain(reader: pa.RecordBatchReader, extra: pa.Table | None) -> pa.RecordBatchReader:
    def batches():
        yield from reader
        if extra is not None:
            yield from extra.to_batches()

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
