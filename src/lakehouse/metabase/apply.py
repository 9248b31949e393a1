"""``lakehouse metabase apply``: make Metabase match the dashboard files, idempotently.

Everything lives in one collection (looked up by name at the top level, created if missing).
Cards are looked up by name in that collection, dashboards by title: missing ones are created,
differing ones updated in place (same id, so links and bookmarks keep working), equal ones left
alone, so a second run changes nothing. Several live objects with one name are never multiplied:
the lowest id is managed and the others are reported. Cards of the collection that no file defines
any more are reported, not deleted.

With ``dry_run`` only GET requests are made and the plan is returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lakehouse.metabase.client import (
    Card,
    Collection,
    Dashboard,
    DashCard,
    Database,
    MetabaseClient,
    native_query,
)
from lakehouse.metabase.model import CardDef, DashboardDef
from lakehouse.metabase.sql import Target

DEFAULT_COLLECTION = "Eco2 lakehouse"
ENGINE_DIALECTS = {"duckdb": "duckdb", "bigquery-cloud-sdk": "bigquery", "bigquery": "bigquery"}


@dataclass
class Action:
    kind: str  # collection | card | dashboard
    name: str
    op: str  # create | update | unchanged | duplicate | unmanaged
    id: int | None = None
    changes: list[str] = field(default_factory=list)

    def line(self) -> str:
        ident = f" #{self.id}" if self.id is not None else ""
        detail = f" ({', '.join(self.changes)})" if self.changes else ""
        return f"{self.op:<9} {self.kind:<10} {self.name!r}{ident}{detail}"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    dry_run: bool = False

    def add(self, action: Action) -> Action:
        self.actions.append(action)
        return action

    def count(self, op: str) -> int:
        return sum(a.op == op for a in self.actions)

    @property
    def changed(self) -> bool:
        return any(a.op in ("create", "update") for a in self.actions)

    def summary(self) -> str:
        ops = ("create", "update", "unchanged", "duplicate", "unmanaged")
        counts = ", ".join(f"{self.count(op)} {op}" for op in ops if self.count(op))
        return ("dry run: " if self.dry_run else "") + (counts or "nothing to do")


def find_database(client: MetabaseClient, name: str) -> Database:
    matches = [d for d in client.databases() if d.name == name]
    if not matches:
        known = ", ".join(sorted(d.name for d in client.databases())) or "none"
        raise LookupError(f"no Metabase database named {name!r} (known: {known})")
    return min(matches, key=lambda d: d.id)


def dialect_of(database: Database) -> str:
    dialect = ENGINE_DIALECTS.get(database.engine or "")
    if dialect is None:
        raise LookupError(
            f"database {database.name!r} has engine {database.engine!r}: pass the SQL dialect "
            f"explicitly (duckdb or bigquery)"
        )
    return dialect


def card_body(card: CardDef, collection_id: int | None, database_id: int, target: Target) -> dict[str, Any]:
    """The ``POST /api/card`` / ``PUT /api/card/:id`` body of a card definition."""
    return {
        "name": card.name,
        "type": "question",
        "description": card.description,
        "collection_id": collection_id,
        "display": card.display,
        "visualization_settings": card.visualization_settings,
        "dataset_query": {
            "type": "native",
            "database": database_id,
            "native": {"query": card.render(target), "template-tags": {}},
        },
    }


def card_changes(live: Card, body: dict[str, Any]) -> list[str]:
    changes = [
        k
        for k in ("description", "collection_id", "display", "visualization_settings")
        if getattr(live, k) != body[k]
    ]
    database, sql = native_query(live.dataset_query)
    if database != body["dataset_query"]["database"]:
        changes.append("database")
    if (sql or "").strip() != body["dataset_query"]["native"]["query"].strip():
        changes.append("sql")
    return changes


def _layout_key(dc: DashCard | dict) -> tuple:
    get = dc.get if isinstance(dc, dict) else lambda k: getattr(dc, k)
    return (get("card_id"), get("row"), get("col"), get("size_x"), get("size_y"))


def dashcards_body(dashboard: DashboardDef, card_ids: dict[str, int], live: Dashboard | None) -> list[dict]:
    """The ``dashcards`` of ``PUT /api/dashboard/:id``: a live dashcard showing the same card keeps
    its id (updated in place), new ones get negative ids, live ones left out are removed."""
    reusable: dict[int, list[DashCard]] = {}
    for dc in sorted(live.dashcards if live else [], key=lambda d: d.id):
        if dc.card_id is not None:
            reusable.setdefault(dc.card_id, []).append(dc)
    body, new_id = [], -1
    for card in dashboard.cards:
        card_id = card_ids[card.name]
        previous = reusable.get(card_id)
        if previous:
            dc_id, mappings = previous[0].id, previous.pop(0).parameter_mappings
        else:
            dc_id, mappings, new_id = new_id, [], new_id - 1
        body.append(
            {
                "id": dc_id,
                "card_id": card_id,
                **card.layout.model_dump(),
                "parameter_mappings": mappings,
                "visualization_settings": {},
                "series": [],
            }
        )
    return body


def dashboard_changes(
    live: Dashboard, dashboard: DashboardDef, collection_id: int | None, dashcards: list[dict] | None
) -> list[str]:
    changes = []
    if (live.description or "") != dashboard.description:
        changes.append("description")
    if live.collection_id != collection_id:
        changes.append("collection_id")
    if dashcards is None or sorted(map(_layout_key, live.dashcards)) != sorted(map(_layout_key, dashcards)):
        changes.append("dashcards")
    return changes


def _pick(objects: list, kind: str, name: str, plan: Plan):
    """The managed object among live ones of a name (lowest id); the rest are reported."""
    if not objects:
        return None
    objects = sorted(objects, key=lambda o: o.id)
    for extra in objects[1:]:
        plan.add(Action(kind, name, "duplicate", extra.id, ["left alone; not managed"]))
    return objects[0]


def find_collection(client: MetabaseClient, name: str) -> list[Collection]:
    return [
        c
        for c in client.collections()
        if c.name == name
        and not c.archived
        and c.personal_owner_id is None
        and isinstance(c.id, int)
        and c.location in (None, "/")
    ]


def apply(
    client: MetabaseClient,
    dashboards: list[DashboardDef],
    *,
    database_id: int,
    target: Target,
    collection: str = DEFAULT_COLLECTION,
    dry_run: bool = False,
) -> Plan:
    plan = Plan(dry_run=dry_run)

    # collection
    coll = _pick(find_collection(client, collection), "collection", collection, plan)
    if coll is None:
        if dry_run:
            plan.add(Action("collection", collection, "create"))
            collection_id = None
        else:
            coll = client.create_collection(
                collection,
                "Eco2 lakehouse dashboards, managed as code "
                "(dashboards/ in cdc-lakehouse): edits here are overwritten.",
            )
            plan.add(Action("collection", collection, "create", coll.id))  # type: ignore[arg-type]
            collection_id = coll.id
    else:
        plan.add(Action("collection", collection, "unchanged", coll.id))
        collection_id = coll.id

    # cards
    live_cards = [
        c
        for c in client.cards()
        if not c.archived and collection_id is not None and c.collection_id == collection_id
    ]
    card_ids: dict[str, int] = {}
    wanted = set()
    for dashboard in dashboards:
        for card in dashboard.cards:
            wanted.add(card.name)
            body = card_body(card, collection_id, database_id, target)  # type: ignore[arg-type]
            live = _pick([c for c in live_cards if c.name == card.name], "card", card.name, plan)
            if live is None:
                if dry_run:
                    plan.add(Action("card", card.name, "create"))
                    continue
                created = client.create_card(body)
                card_ids[card.name] = created.id
                plan.add(Action("card", card.name, "create", created.id))
                continue
            card_ids[card.name] = live.id
            changes = card_changes(live, body)
            if changes and not dry_run:
                client.update_card(live.id, {k: v for k, v in body.items() if k != "type"})
            plan.add(Action("card", card.name, "update" if changes else "unchanged", live.id, changes))
    for extra in sorted({c.name for c in live_cards} - wanted):
        ids = sorted(c.id for c in live_cards if c.name == extra)
        plan.add(Action("card", extra, "unmanaged", ids[0], ["in the collection but in no dashboard file"]))

    # dashboards
    live_dashboards = [
        d
        for d in client.dashboards()
        if not d.archived and collection_id is not None and d.collection_id == collection_id
    ]
    for dashboard in dashboards:
        found = _pick(
            [d for d in live_dashboards if d.name == dashboard.title], "dashboard", dashboard.title, plan
        )
        complete = all(c.name in card_ids for c in dashboard.cards)  # not so in a dry run with new cards
        if found is None:
            if dry_run:
                plan.add(Action("dashboard", dashboard.title, "create", changes=["dashcards"]))
                continue
            created = client.create_dashboard(dashboard.title, dashboard.description, collection_id)  # type: ignore[arg-type, assignment]
            client.update_dashboard(created.id, {"dashcards": dashcards_body(dashboard, card_ids, None)})
            plan.add(Action("dashboard", dashboard.title, "create", created.id, ["dashcards"]))
            continue
        live = client.dashboard(found.id)
        dashcards = dashcards_body(dashboard, card_ids, live) if complete else None
        changes = dashboard_changes(live, dashboard, collection_id, dashcards)  # type: ignore[arg-type]
        if changes and not dry_run:
            body: dict[str, Any] = {"description": dashboard.description, "collection_id": collection_id}  # type: ignore[no-redef]
            if "dashcards" in changes:
                body["dashcards"] = dashcards
            client.update_dashboard(live.id, body)
        plan.add(Action("dashboard", dashboard.title, "update" if changes else "unchanged", live.id, changes))
    return plan
