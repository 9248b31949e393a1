"""Dashboards as code (dashboards/*.yml, lakehouse.metabase, `lakehouse metabase`).

* Every card's SQL runs on the DuckDB marts of a generated lake (the real pipeline: generate,
  compact, load the DuckDB warehouse, `dbt build`) and returns the columns its file declares and
  rows; the same SQL rendered for BigQuery parses as GoogleSQL with only known functions and
  dataset-qualified tables.
* `lakehouse metabase apply` against tests/metabase_fake.py: a fake Metabase written from Metabase's
  API documentation (docs/api/*.md of the Metabase repository), since no Metabase can run here (a
  JVM application with its own application database; nothing can be downloaded). First run creates,
  second run changes nothing, an edited card is updated in place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlglot
from sqlglot import exp
from support.metabase_fake import FakeMetabase
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.metabase import (
    CardSQLError,
    DefinitionError,
    MetabaseClient,
    MetabaseError,
    Target,
    load_dashboards,
    render_sql,
)
from lakehouse.metabase.client import native_query
from lakehouse.metabase.model import DashboardDef, check_dashboards

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
PROJECT = ROOT / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
DEFS = load_dashboards(DASHBOARDS)
CARDS = [(d, c) for d in DEFS for c in d.cards]
CARD_IDS = [f"{d.name}:{c.name}" for d, c in CARDS]
runner = CliRunner()


# -- the definitions --------------------------------------------------------------------------


def test_every_mart_has_a_dashboard_and_files_are_consistent():
    marts = {p.stem for p in (PROJECT / "models" / "marts").glob("mart_*.sql")}
    assert {m for d in DEFS for m in d.depends_on} == marts
    assert {d.name for d in DEFS} == {
        "llm_latency",
        "llm_cost",
        "rlhf_dataset",
        "misclassification",
        "rag_quality",
        "pipeline_freshness",
    }
    assert check_dashboards(DEFS) == []  # depends_on/sources equal what the SQL reads, names unique


def test_definition_errors_are_caught(tmp_path):
    good = (DASHBOARDS / "llm_cost.yml").read_text()
    cases = {
        "overlap": good.replace("layout: {row: 0, col: 8, size_x: 8", "layout: {row: 0, col: 4, size_x: 8"),
        "settings name an unknown column": good.replace("pie.metric: cost_usd", "pie.metric: usd"),
        "depends_on drifts from the SQL": good.replace(
            "depends_on: [mart_cost_per_scan, mart_llm_cost_daily]", "depends_on: [mart_llm_cost_daily]"
        ),
        "unqualified table": good.replace(
            "from marts.mart_cost_per_scan\n      group by day", "from mart_cost_per_scan\n      group by day"
        ),
    }
    for case, text in cases.items():
        assert text != good, case
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        (folder / "llm_cost.yml").write_text(text)
        with pytest.raises(DefinitionError):
            load_dashboards(folder)


def test_render_sql_maps_logical_schemas_once_for_both_dialects():
    sql = (
        "with s as (select max(_cdc_committed_at) as newest from scan.scans) "
        "select date_diff('minute', newest, current_timestamp) as lag, "
        "date_diff('day', cast(newest as date), current_date) as days from s"
    )
    duck = render_sql(sql, Target.duckdb())
    bq = render_sql(sql, Target.bigquery(project="eco2-prod", dataset_prefix="p_"))
    assert "FROM scan.scans" in duck and "DATE_DIFF('MINUTE'" in duck
    assert "FROM `eco2-prod`.p_scan.scans" in bq
    assert "TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), newest, MINUTE)" in bq  # sub-day: timestamps
    assert "DATE_DIFF(CURRENT_DATE, CAST(newest AS DATE), DAY)" in bq
    assert "FROM main_marts.mart_x" in render_sql("select 1 as x from marts.mart_x", Target.duckdb())
    assert "FROM lakehouse_meta.loads" in render_sql("select 1 as x from meta.loads", Target.bigquery())
    for bad in (
        "select * from mart_x",
        "select * from main_marts.mart_x",
        "select 1; select 2",
        "select * from a.marts.mart_x",
    ):
        with pytest.raises(CardSQLError):
            render_sql(bad, Target.duckdb())


@pytest.mark.parametrize(("dashboard", "card"), CARDS, ids=CARD_IDS)
def test_card_sql_transpiles_for_bigquery(dashboard: DashboardDef, card):
    target = Target.bigquery(project="eco2-prod", dataset_prefix="pre_", meta_dataset="lakehouse_meta")
    text = card.render(target)
    tree = sqlglot.parse_one(text, read="bigquery")
    unknown = [f.sql("bigquery") for f in tree.find_all(exp.Anonymous)]
    assert unknown == [], f"functions BigQuery does not know: {unknown}"
    datasets = set(target.schemas.values())
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.name in ctes and not table.db:
            continue
        assert table.catalog == "eco2-prod" and table.db in datasets, table.sql("bigquery")
    assert "::" not in text and "{{" not in text
    # stable: rendering the BigQuery text again as BigQuery changes nothing
    assert sqlglot.transpile(text, read="bigquery", write="bigquery", pretty=True)[0] == text


# -- every card on the DuckDB marts of a generated lake ----------------------------------------


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """Lake (3000 events over several simulated days) -> state -> DuckDB warehouse -> dbt build."""
    from lakehouse.config import load_config
    from lakehouse.generate import GeneratorOptions, generate_lake
    from lakehouse.state.compact import compact
    from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

    root = tmp_path_factory.mktemp("metabase")
    generate_lake(
        root / "lake", GeneratorOptions(events=3_000, seed=31, flush_size=500, events_per_second=0.05)
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test-key")
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
    return wh.path


@pytest.fixture(scope="module")
def duck(warehouse):
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute("SET TimeZone = 'UTC'")  # as dbt's duckdb target (and BigQuery)
    yield con
    con.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("dashboard", "card"), CARDS, ids=CARD_IDS)
def test_card_sql_runs_on_the_duckdb_marts(duck, dashboard: DashboardDef, card):
    cursor = duck.execute(card.render(Target.duckdb()))
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert columns == card.columns
    assert rows, "no rows"
    assert any(v is not None for v in rows[0]), rows[0]


@pytest.mark.timeout(600)
def test_the_lake_spans_several_days(duck):
    days = duck.execute("select count(distinct day) from main_marts.mart_llm_latency_daily").fetchone()[0]
    assert days >= 3


# -- apply against the fake Metabase ----------------------------------------------------------


@pytest.fixture
def metabase():
    with FakeMetabase() as fake:
        yield fake


def apply_cli(fake: FakeMetabase, folder: Path, *extra: str, env: dict | None = None):
    env = env if env is not None else {"METABASE_API_KEY": fake.api_key}
    full_env = {
        "METABASE_API_KEY": None,
        "METABASE_SESSION": None,
        "METABASE_USERNAME": None,
        "METABASE_PASSWORD": None,
        "METABASE_URL": None,
        "METABASE_DATABASE": None,
        **env,
    }
    return runner.invoke(
        app,
        [
            "metabase",
            "apply",
            "--url",
            fake.url,
            "--database-name",
            "Eco2 warehouse",
            "--dashboards",
            str(folder),
            *extra,
        ],
        env=full_env,
    )


def test_apply_creates_then_changes_nothing_then_updates_an_edited_card_in_place(metabase, tmp_path):
    folder = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS, folder)
    n_cards = sum(len(d.cards) for d in DEFS)

    first = apply_cli(metabase, folder)
    assert first.exit_code == 0, first.output
    collections = [c for c in metabase.collections.values() if c["name"] == "Eco2 lakehouse"]
    assert len(collections) == 1 and collections[0]["location"] == "/"
    coll_id = collections[0]["id"]
    assert len(metabase.live_cards()) == n_cards and len(metabase.dashboards) == len(DEFS)
    by_name = {c["name"]: c for c in metabase.live_cards()}
    for d in DEFS:
        for card in d.cards:
            live = by_name[card.name]
            assert live["collection_id"] == coll_id and live["display"] == card.display
            assert live["visualization_settings"] == card.visualization_settings
            assert native_query(live["dataset_query"]) == (2, card.render(Target.duckdb()))
        dash = next(x for x in metabase.dashboards.values() if x["name"] == d.title)
        assert dash["collection_id"] == coll_id and dash["description"] == d.description
        layout = sorted(
            (dc["card_id"], dc["row"], dc["col"], dc["size_x"], dc["size_y"])
            for dc in metabase._dashboard(dash["id"])["dashcards"]
        )
        assert layout == sorted(
            (by_name[c.name]["id"], c.layout.row, c.layout.col, c.layout.size_x, c.layout.size_y)
            for c in d.cards
        )
    assert f"{1 + n_cards + len(DEFS)} create" in first.stdout

    # second run: nothing to change, nothing written
    metabase.requests.clear()
    second = apply_cli(metabase, folder)
    assert second.exit_code == 0, second.output
    assert metabase.writes() == []
    assert f"{1 + n_cards + len(DEFS)} unchanged" in second.stdout and "create" not in second.stdout

    # an edited card: updated in place (same id), nothing created, dashboards untouched
    target = "Misclassification: worst items"
    card_id = by_name[target]["id"]
    path = folder / "misclassification.yml"
    path.write_text(
        path.read_text().replace(
            "      limit 20\n    columns: [predicted_category, predicted_item",
            "      limit 10\n    columns: [predicted_category, predicted_item",
        )
    )
    metabase.requests.clear()
    third = apply_cli(metabase, folder)
    assert third.exit_code == 0, third.output
    assert metabase.writes() == [("PUT", f"/api/card/{card_id}")]
    assert len(metabase.live_cards()) == n_cards
    assert "LIMIT 10" in native_query(metabase.cards[card_id]["dataset_query"])[1]
    assert f"update    card       {target!r} #{card_id} (sql)" in third.stdout

    # a moved card: the dashboard's dashcard is updated in place (same dashcard id)
    dash_id = next(x["id"] for x in metabase.dashboards.values() if x["name"] == "Misclassification notes")
    before = {dc["card_id"]: dc["id"] for dc in metabase._dashboard(dash_id)["dashcards"]}
    path.write_text(
        path.read_text().replace(
            "layout: {row: 9, col: 12, size_x: 12, size_y: 7}",
            "layout: {row: 16, col: 0, size_x: 24, size_y: 7}",
        )
    )
    metabase.requests.clear()
    fourth = apply_cli(metabase, folder)
    assert fourth.exit_code == 0, fourth.output
    assert metabase.writes() == [("PUT", f"/api/dashboard/{dash_id}")]
    after = {dc["card_id"]: dc for dc in metabase._dashboard(dash_id)["dashcards"]}
    assert {k: v["id"] for k, v in after.items()} == before
    assert (after[card_id]["row"], after[card_id]["size_x"]) == (16, 24)


def test_dry_run_prints_the_plan_and_writes_nothing(metabase, tmp_path):
    result = apply_cli(metabase, DASHBOARDS, "--dry-run")
    assert result.exit_code == 0, result.output
    assert metabase.writes() == []
    assert "create    collection 'Eco2 lakehouse'" in result.stdout
    assert "create    card       'RLHF: golden rows'" in result.stdout
    assert "create    dashboard  'Pipeline freshness'" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("dry run: ")

    assert apply_cli(metabase, DASHBOARDS).exit_code == 0
    folder = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS, folder)
    path = folder / "rlhf_dataset.yml"
    path.write_text(path.read_text().replace("display: row", "display: bar"))
    metabase.requests.clear()
    result = apply_cli(metabase, folder, "--dry-run")
    assert result.exit_code == 0, result.output
    assert metabase.writes() == []
    assert "update    card       'RLHF: labels per golden category'" in result.stdout
    assert "(display)" in result.stdout


def test_session_login_bigquery_dialect_from_the_database_engine(metabase):
    env = {
        "METABASE_USERNAME": metabase.username,
        "METABASE_PASSWORD": metabase.password,
        "LAKEHOUSE_BIGQUERY_DATASET_PREFIX": "prod_",
    }
    result = runner.invoke(
        app,
        [
            "metabase",
            "apply",
            "--url",
            metabase.url,
            "--database-name",
            "Eco2 BigQuery",
            "--dashboards",
            str(DASHBOARDS),
        ],
        env={"METABASE_API_KEY": None, "METABASE_SESSION": None, **env},
    )
    assert result.exit_code == 0, result.output
    assert ("POST", "/api/session") in metabase.requests
    database, sql = native_query(metabase.live_cards()[0]["dataset_query"])
    assert database == 3 and "prod_" in sql
    freshness = next(c for c in metabase.live_cards() if c["name"] == "Freshness: warehouse loads")
    assert "FROM lakehouse_meta.loads" in native_query(freshness["dataset_query"])[1]
    assert "TIMESTAMP_DIFF(" in native_query(freshness["dataset_query"])[1]


def test_bad_credentials_and_unknown_database_fail_cleanly(metabase):
    result = apply_cli(metabase, DASHBOARDS, env={"METABASE_API_KEY": "wrong"})
    assert result.exit_code == 1 and "401" in result.output
    result = apply_cli(metabase, DASHBOARDS, env={})
    assert result.exit_code == 1 and "METABASE_API_KEY" in result.output
    result = runner.invoke(
        app,
        [
            "metabase",
            "apply",
            "--url",
            metabase.url,
            "--database-name",
            "nope",
            "--dashboards",
            str(DASHBOARDS),
        ],
        env={"METABASE_API_KEY": metabase.api_key},
    )
    assert result.exit_code == 1 and "no Metabase database named 'nope'" in result.output
    assert metabase.writes() == []


def test_same_named_objects_are_managed_once_never_multiplied(metabase):
    client = MetabaseClient(metabase.url, api_key=metabase.api_key)
    coll = client.create_collection("Eco2 lakehouse")
    body = {
        "name": "RLHF: golden rows",
        "display": "table",
        "collection_id": coll.id,
        "visualization_settings": {},
        "dataset_query": {"type": "native", "database": 2, "native": {"query": "select 1"}},
    }
    first, second = client.create_card(body), client.create_card(body)
    stray = client.create_card({**body, "name": "An old card no file defines"})
    result = apply_cli(metabase, DASHBOARDS)
    assert result.exit_code == 0, result.output
    named = [c for c in metabase.live_cards() if c["name"] == "RLHF: golden rows"]
    assert sorted(c["id"] for c in named) == [first.id, second.id]  # the lowest id was updated, none added
    assert native_query(metabase.cards[first.id]["dataset_query"])[1].startswith("SELECT")
    assert metabase.cards[first.id]["display"] == "scalar"
    assert f"duplicate card       'RLHF: golden rows' #{second.id}" in result.stdout
    assert f"unmanaged card       'An old card no file defines' #{stray.id}" in result.stdout
    assert not metabase.cards[stray.id]["archived"]  # reported, never deleted


def test_native_query_reads_legacy_and_mbql5_shapes():
    legacy = {"type": "native", "database": 2, "native": {"query": "select 1", "template-tags": {}}}
    stages = {
        "lib/type": "mbql/query",
        "database": 2,
        "stages": [{"lib/type": "mbql.stage/native", "native": "select 1", "template-tags": {}}],
    }
    assert native_query(legacy) == native_query(stages) == (2, "select 1")
    assert native_query({"type": "query", "database": 2, "query": {"source-table": 5}}) == (2, None)


def test_client_retries_transient_failures_but_never_repeats_a_processed_post(metabase):
    client = MetabaseClient(metabase.url, api_key=metabase.api_key, backoff=0.01)
    metabase.fail_next("GET", "/api/card", status=503, times=2)
    assert client.cards() == []
    assert metabase.requests.count(("GET", "/api/card")) == 3
    metabase.fail_next("POST", "/api/collection", status=502)  # a proxy timeout: it may have been created
    with pytest.raises(MetabaseError) as err:
        client.create_collection("x")
    assert err.value.status == 502 and metabase.requests.count(("POST", "/api/collection")) == 1
    metabase.fail_next("POST", "/api/collection", status=503)  # not processed: safe to repeat
    assert client.create_collection("x").name == "x"
    metabase.fail_next("GET", "/api/database", status=503, times=10)
    with pytest.raises(MetabaseError):
        client.databases()


def test_sql_and_list_commands():
    result = runner.invoke(
        app,
        [
            "metabase",
            "sql",
            "--dialect",
            "bigquery",
            "--dashboard",
            "rlhf_dataset",
            "--dashboards",
            str(DASHBOARDS),
        ],
        env={"LAKEHOUSE_BIGQUERY_DATASET_PREFIX": "p_"},
    )
    assert result.exit_code == 0, result.output
    assert "FROM p_marts_marts.mart_rlhf_golden" in result.stdout and "RLHF: golden rows" in result.stdout
    result = runner.invoke(app, ["metabase", "list", "--dashboards", str(DASHBOARDS)])
    assert result.exit_code == 0, result.output
    listed = {d["name"]: d for d in json.loads(result.stdout)}
    assert listed["pipeline_freshness"]["sources"][0] == "auth.users"
    assert listed["rag_quality"]["depends_on"] == ["mart_rag_quality_daily", "mart_rag_quality_per_scan"]


def test_dbt_exposures_and_dagster_dashboards_follow_the_dashboard_files():
    """dbt_project/models/exposures.yml is generated from dashboards/*.yml (no drift), and the
    dashboards sit at the end of the Dagster asset graph, downstream of the marts they read."""
    from lakehouse.metabase.exposures import exposures_yaml
    from lakehouse.metabase.model import load_dashboards
    from orchestration.definitions import defs

    root = Path(__file__).resolve().parents[2]
    dashboards = load_dashboards(root / "dashboards")
    assert (root / "dbt_project" / "models" / "exposures.yml").read_text() == exposures_yaml(dashboards), (
        "run: lakehouse metabase exposures --out dbt_project/models/exposures.yml"
    )
    graph = defs.resolve_asset_graph()
    for d in dashboards:
        node = graph.get(dg.AssetKey(["dashboards", d.name]))
        parents = {k.to_user_string() for k in node.parent_keys}
        assert parents == {f"marts/{m}" for m in d.depends_on} | {
            f"warehouse/{s.replace('.', '/')}" for s in d.sources
        }
