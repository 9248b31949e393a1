"""Privacy layer: account closures erased from every derived copy (tombstones, history versions,
the consistent root), with a check that searches the state's files for what was erased. Thin
wiring over ``lakehouse.state.erasure``; docs/erasure.md."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg

from assets.keys import configured_tables, table_key
from assets.resources import LakeResource, StateResource
from assets.retries import STORAGE_RETRY
from assets.state.consistent import DATABASES, database_key
from lakehouse.state.erasure import closed_accounts, erase, leftovers, personal_values

ERASURE_KEY = dg.AssetKey(["privacy", "account_erasure"])
ERASED_TABLES = [t for t in configured_tables() if t.erasure]


@dg.asset(
    key=ERASURE_KEY,
    group_name="privacy",
    retry_policy=STORAGE_RETRY,
    deps=[
        *(table_key("current_state", t.table) for t in ERASED_TABLES),
        *(database_key(d) for d in DATABASES),
    ],
    description="Closed accounts (deletes in the accounts table): their personal columns (tables config "
    "`erasure`) set to null in tombstones, history versions and the consistent root, old "
    "files vacuumed. What the sources still hold stays. Runs daily (daily_marts).",
)
def account_erasure(context: dg.AssetExecutionContext, state: StateResource) -> dg.MaterializeResult:
    report = erase(state.uri, state.config())
    context.log.info(f"{report.closed_accounts} closed accounts; erased: {report}")
    return dg.MaterializeResult(
        metadata={
            "closed_accounts": report.closed_accounts,
            "tombstones_erased": sum(report.tombstones.values()),
            "history_versions_erased": sum(report.history_versions.values()),
        }
    )


@dg.asset_check(
    asset=ERASURE_KEY,
    name="nothing_of_closed_accounts_left",
    blocking=True,
    description="Every personal value of a closed account that the raw lake holds and the sources no "
    "longer do is searched for in every file under the state root (tables, history, "
    "consistent root, Delta logs): none may be found.",
)
def nothing_of_closed_accounts_left(lake: LakeResource, state: StateResource) -> dg.AssetCheckResult:
    config = state.config()
    closed = closed_accounts(state.uri, config)
    values = personal_values(lake.uri, state.uri, config, closed, state.pseudonym_key) if closed else {}
    found = leftovers(state.uri, config, values) if closed else []
    return dg.AssetCheckResult(
        passed=not found,
        metadata={
            "closed_accounts": len(closed),
            "values_searched": sum(len(v) for v in values.values()),
            "found": dg.MetadataValue.md("\n".join(f"- {f}" for f in found[:20]) or "none"),
        },
    )
