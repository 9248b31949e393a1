"""Account closure (issue 16, part 3): a closed account's personal values leave every derived
copy the sources no longer justify, found by value, and nothing else changes.

A small lake in the sink's layout: accounts 7 and 8; feedback of 7 whose comment changed once, a
feedback of 7 withdrawn (its tombstone keeps the comment), feedback of 8; then account 7 closes.
Before the erasure the closed account's values are found (so the search can fail); after it, none
is, in any file of the state root (Delta logs included): the tombstones, the history versions
and the consistent copy are erased; the current rows are exactly as before (scan.feedback still
holds 7's live feedback, as the scan service's PostgreSQL does); a dataset version holding 7's
rows is listed as superseded, a later one without them is not.
"""

from __future__ import annotations

import json

import pyarrow as pa
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.config import ColumnPolicy, Erasure, TableConfig, TablesConfig
from lakehouse.datasets import export_dataset
from lakehouse.lake.store import LocalStore
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.erasure import closed_accounts, erase, leftovers, personal_values, supersede
from lakehouse.state.export import table_history, visible_rows

USERS, FEEDBACK = "p.auth.users", "p.scan.feedback"
KEY = "not-a-secret-test-key"


def config(tmp_path) -> tuple[TablesConfig, str]:
    cfg = TablesConfig(
        tables=(
            TableConfig(
                topic=USERS,
                primary_key=("id",),
                columns={"email": ColumnPolicy.pseudonymise},
                erasure=Erasure(account_column="id", columns=("username", "email")),
            ),
            TableConfig(
                topic=FEEDBACK,
                primary_key=("id",),
                history=True,
                erasure=Erasure(account_column="user_id", columns=("comment",)),
            ),
        )
    )
    path = tmp_path / "tables.yaml"
    path.write_text(
        json.dumps({"tables": [e.model_dump(mode="json", exclude_defaults=True) for e in cfg.tables]})
    )
    return cfg, str(path)


def write_lake(dbz, store) -> None:
    users = dbz.envelope(
        USERS, [("id", dbz.req("int64")), ("username", dbz.opt("string")), ("email", dbz.opt("string"))]
    )
    feedback = dbz.envelope(
        FEEDBACK, [("id", dbz.req("int64")), ("user_id", dbz.req("int64")), ("comment", dbz.opt("string"))]
    )
    t = 1_796_000_000_000_000

    def rec(op, table, n, **row):
        image = {"before": row} if op == "d" else {"after": row}
        return dbz.record(
            op,
            **image,
            ts_us=t + n * 1000,
            lsn=1000 + n * 10,
            tx_id=500 + n,
            table=table,
            schema=table == "users" and "auth" or "scan",
        )

    dbz.write(
        store,
        USERS,
        users,
        [
            rec("c", "users", 1, id=7, username="mina_closed", email="mina@private.test"),
            rec("c", "users", 2, id=8, username="bob_stays", email="bob@eco2.test"),
        ],
        [0, 1],
    )
    dbz.write(
        store,
        FEEDBACK,
        feedback,
        [
            rec("c", "feedback", 3, id=1, user_id=7, comment="photo of my kitchen sink"),
            rec("u", "feedback", 4, id=1, user_id=7, comment="it was glass after all"),
            rec("c", "feedback", 5, id=2, user_id=7, comment="please forget this one"),
            rec("d", "feedback", 6, id=2, user_id=7, comment="please forget this one"),
            rec("c", "feedback", 7, id=3, user_id=8, comment="bob's own words"),
        ],
        [0, 1, 2, 3, 5],
    )
    dbz.write(
        store,
        USERS,
        users,
        [rec("d", "users", 8, id=7, username="mina_closed", email="mina@private.test")],
        [2],
    )


def test_a_closed_account_leaves_no_derived_trace_and_nothing_else_changes(dbz, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", KEY)
    cfg, cfg_path = config(tmp_path)
    lake, state = str(tmp_path / "lake"), str(tmp_path / "state")
    write_lake(dbz, LocalStore(tmp_path / "lake"))
    assert not [
        r.error for r in compact(lake, state, cfg, options=CompactOptions(pseudonym_key=KEY)) if r.failed
    ]
    current = {e.table: visible_rows(state, e.table).to_pylist() for e in cfg.tables}

    assert closed_accounts(state, cfg) == [7]
    values = personal_values(lake, state, cfg, [7], KEY)
    # what the sources no longer hold: 7's account row, the comment 7 replaced and the withdrawn one;
    # "it was glass after all" stays (the scan service still holds that feedback)
    assert values["auth.users"] >= {"mina_closed"} and len(values["auth.users"]) == 2
    assert values["scan.feedback"] == {"photo of my kitchen sink", "please forget this one"}
    before = leftovers(state, cfg, values)
    assert any("auth.users/" in f for f in before) and any("_history/scan.feedback/" in f for f in before)

    report = erase(state, cfg)
    assert report.closed_accounts == 1 and report.history_versions["scan.feedback"] >= 2
    assert leftovers(state, cfg, values) == []
    assert {e.table: visible_rows(state, e.table).to_pylist() for e in cfg.tables} == current
    history = {(r["id"], r["comment"]) for r in table_history(state, "scan.feedback").to_pylist()}
    assert history == {(1, None), (1, "it was glass after all"), (2, None), (3, "bob's own words")}

    # datasets: a version exported before the closure is superseded, one without 7 is not
    store = LocalStore(tmp_path / "lake")
    old = export_dataset(
        store, "rlhf_golden", pa.table({"scan_id": ["s1", "s2"], "user_id": [7, 8]}), ["scan_id"], {}
    )
    new = export_dataset(store, "rlhf_golden", pa.table({"scan_id": ["s2"], "user_id": [8]}), ["scan_id"], {})
    assert supersede(store, "rlhf_golden", [7]) == [old.version]
    listed = json.loads(store.get_bytes("datasets/rlhf_golden/superseded.json"))
    assert (
        set(listed) == {old.version}
        and new.version not in listed
        and "closure" in listed[old.version]["reason"]
    )

    # the CLI: erasing again finds nothing to do and nothing left (exit 0); no value in its output
    ran = CliRunner().invoke(app, ["erase", "--lake", lake, "--state", state, "--tables-config", cfg_path])
    assert ran.exit_code == 0, ran.output
    assert "nothing of a closed account is left" in ran.output and "mina" not in ran.output
