"""What one Great Expectations check run costs on BigQuery: the suites as SQL (GX's SQL datasource,
``lakehouse.quality``) against the baseline of the same run, the earlier way (the suite's columns
read into the client, then GX on pandas).

On the BigQuery emulator (``make bqemu``), with ``--rows`` rows in ``scan.llm_call_log`` and
``scan.classification_results``. The emulator bills nothing, so each statement in its job log is
priced as BigQuery prices on-demand queries: the logical bytes of every column the statement
references (INT64/FLOAT64/TIMESTAMP 8 bytes, BOOL 1, STRING 2 + its UTF-8 length, NULL 0), at
least 10 MB per table a query reads. Bytes returned: what crosses the network to the check.

    .venv/bin/python bench/bench_quality.py --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, code_identity, machine, text_table

sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

MIN_BILLED = 10 * 1024 * 1024  # BigQuery's minimum per table referenced by an on-demand query
TABLES = ("scan.llm_call_log", "scan.classification_results")
ROWS_SQL = {  # synthetic rows in the warehouse's column types (bench data, not product SQL)
    "scan.llm_call_log": (
        "select x as id, mod(x * 7, 5000) as latency_ms, mod(x, 900) as prompt_tokens, "
        "mod(x, 300) as completion_tokens, ['vision', 'embedding', 'answer'][offset(mod(x, 3))] as stage, "
        "if(mod(x, 50) = 0, 'error', 'ok') as status, format('scan-%d', div(x, 3)) as scan_id "
        "from unnest(generate_array(1, {rows})) as x"
    ),
    "scan.classification_results": (
        "select x as id, mod(x, 100) / 100.0 as confidence, "
        "['plastic', 'glass', 'paper', 'can'][offset(mod(x, 4))] as category, "
        "format('scan-%d', x) as scan_id, repeat('r', 200) as rationale "
        "from unnest(generate_array(1, {rows})) as x"
    ),
}


def column_bytes(client, table_id: str) -> dict[str, int]:
    """Logical bytes per column, as BigQuery bills them."""
    schema = client.get_table(table_id).schema
    parts = []
    for f in schema:
        size = f"2 + byte_length({f.name})" if f.field_type in ("STRING", "BYTES") else "8"
        size = "1" if f.field_type in ("BOOL", "BOOLEAN") else size
        parts.append(f"coalesce(sum(if({f.name} is null, 0, {size})), 0) as {f.name}")
    row = next(iter(client.query(f"select {', '.join(parts)} from `{table_id}`").result()))
    return {f.name: int(row[f.name]) for f in schema}


def priced(statements: list[str], sizes: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(billed with the 10 MB minimum, referenced column bytes) of the statements."""
    import sqlglot
    from sqlglot import exp

    billed = referenced = 0
    for text in statements:
        tree = sqlglot.parse_one(text, read="bigquery")
        names = {c.name for c in tree.find_all(exp.Column)}
        tables = {t.name for t in tree.find_all(exp.Table)}
        for table, columns in sizes.items():
            if table.split(".", 1)[1] not in tables:
                continue
            # BigQuery prunes a nested `select *` to what the outer query uses; an outermost one
            # (GX's bare query-asset probe, say) reads every column
            outer_star = isinstance(tree, exp.Select) and any(
                isinstance(e, exp.Star) for e in tree.expressions
            )
            read = sum(v for k, v in columns.items() if outer_star or k in names)
            referenced += read
            billed += max(read, MIN_BILLED)
    return billed, referenced


def run_sql(wh, relation: str) -> dict:
    from lakehouse.quality import validate

    before = {j.job_id for j in wh.client.list_jobs()}  # the emulator ignores min_creation_time
    t = time.perf_counter()
    result = validate(relation, wh.quality_target(), relation)
    seconds = time.perf_counter() - t
    jobs = [j for j in wh.client.list_jobs() if j.job_id not in before and j.job_type == "query"]
    return {"seconds": seconds, "statements": [j.query for j in jobs], "failed": len(result.failures)}


def run_pandas(wh, relation: str) -> dict:
    """The baseline: the suite's columns pulled into the client, GX on pandas (before issue 17)."""
    import great_expectations as gx

    from lakehouse.quality import suites

    expectations = [e for e in suites("bigquery")[relation] if getattr(e, "column", None)]
    columns = sorted({e.column for e in expectations})
    text = f"select {', '.join(columns)} from `{wh.table_id(relation)}`"
    t = time.perf_counter()
    rows = wh.client.query(text).result().to_arrow(create_bqstorage_client=False)
    context = gx.get_context(mode="ephemeral")
    name = relation.replace(".", "_")
    batch = (
        context.data_sources.add_pandas(f"{name}_src")
        .add_dataframe_asset(name=name)
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": rows.to_pandas()}, result_format="SUMMARY")
    failed = sum(not r.success for r in result.results)
    return {
        "seconds": time.perf_counter() - t,
        "statements": [text],
        "returned": rows.nbytes,
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "results" / "quality.md")
    args = parser.parse_args()

    from support.bq_emulator import _start, _stop

    from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse

    proc, emu = _start(Path(tempfile.mkdtemp(prefix="bench-quality-")))
    try:
        wh = BigQueryWarehouse(emu.client, emu.project, endpoint=emu.endpoint)
        sizes = {}
        for table in TABLES:
            wh.client.create_dataset(wh.dataset_id(table), exists_ok=True)
            wh.client.query(
                f"create table `{wh.table_id(table)}` as {ROWS_SQL[table].format(rows=args.rows)}"
            ).result()
            sizes[table] = column_bytes(wh.client, wh.table_id(table))
        rows = []
        for table in TABLES:
            base, new = run_pandas(wh, table), run_sql(wh, table)
            assert base["failed"] == new["failed"], (table, base["failed"], new["failed"])
            for label, run in (("client-side pandas (baseline)", base), ("GX SQL datasource", new)):
                billed, referenced = priced(run["statements"], sizes)
                returned = run.get("returned")
                rows.append(
                    [
                        table,
                        label,
                        str(len(run["statements"])),
                        f"{referenced / 1e6:,.1f} MB",
                        f"{billed / 1e6:,.1f} MB",
                        f"{returned / 1e6:,.1f} MB" if returned is not None else "aggregates only",
                        f"{run['seconds']:.2f} s",
                    ]
                )
    finally:
        _stop(proc)
    heads = [
        "table",
        "check run",
        "statements",
        "columns read",
        "billed (10 MB min/query)",
        "returned",
        "time",
    ]
    table_txt, table_md = text_table(heads, rows)
    print(table_txt)
    args.report.write_text(
        f"# GX check runs on BigQuery (emulator), {args.rows:,} rows per table\n\n"
        f"`.venv/bin/python bench/bench_quality.py --rows {args.rows}` on {machine()}, {code_identity()}.\n\n"
        + "\n".join(table_md)
        + f"\n\n{__doc__.split(chr(10) + chr(10))[1]}\n"
    )
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
