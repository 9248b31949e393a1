"""A fake Metabase for the tests: the few API endpoints ``lakehouse metabase apply`` uses, in memory,
on a free loopback port (``http.server`` in a thread).

No Metabase can run here (it is a JVM application with an application database, and nothing can be
downloaded), so this server is written from Metabase's API documentation (docs/api/session.md,
database.md, collection.md, card.md and dashboard.md in the Metabase repository) and keeps to the
shapes documented there:

* auth: ``x-api-key: <key>`` or ``X-Metabase-Session: <token>`` on every request but
  ``POST /api/session`` (``{"username", "password"}`` -> ``{"id": token}``); else 401 ``Unauthenticated``;
* ``GET /api/database`` -> ``{"data": [...], "total": n}``;
* ``GET /api/collection`` -> a list that includes the virtual root collection (``"id": "root"``) and
  personal collections (``personal_owner_id``); ``POST /api/collection`` (``name`` non-blank,
  ``description``, ``parent_id``) -> the collection with its ``location`` (``/`` or ``/<parent>/``);
* ``GET /api/card?f=all`` (archived ones only with ``f=archived``), ``POST /api/card`` (``name``,
  ``display`` non-blank, ``dataset_query`` and ``visualization_settings`` maps, ``description`` null
  or non-blank), ``PUT /api/card/:id`` (any subset of those); native queries come back with
  ``template-tags`` as Metabase stores them;
* ``GET /api/dashboard?f=all``, ``POST /api/dashboard`` (``name``, ``description``, ``collection_id``),
  ``GET /api/dashboard/:id`` (with ``dashcards``), ``PUT /api/dashboard/:id`` (fields, and
  ``dashcards``: ids unique, a negative id creates a dashcard, a live id updates it in place, live
  dashcards left out are removed).

Every request is logged in ``requests`` as ``(method, path)``; ``fail_next(method, path, status, n)``
makes the next ``n`` matching requests fail (retry tests).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status, self.body = status, body


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _non_blank(body: dict, key: str, required: bool = True) -> None:
    value = body.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, {"errors": {key: "value must be a non-blank string."}})


def _map(body: dict, key: str, required: bool = True) -> None:
    if key not in body and not required:
        return
    if not isinstance(body.get(key), dict):
        raise ApiError(400, {"errors": {key: "Value must be a map."}})


class FakeMetabase:
    def __init__(
        self,
        api_key: str = "mb_test_key",
        username: str = "admin@example.com",
        password: str = "secret",
        databases: list[dict] | None = None,
    ):
        self.api_key, self.username, self.password = api_key, username, password
        self.sessions: set[str] = set()
        self.lock = threading.Lock()
        self.ids = itertools.count(100)
        self.databases = databases or [
            {"id": 1, "name": "Sample Database", "engine": "h2"},
            {"id": 2, "name": "Eco2 warehouse", "engine": "duckdb"},
            {"id": 3, "name": "Eco2 BigQuery", "engine": "bigquery-cloud-sdk"},
        ]
        self.collections: dict[int, dict] = {
            1: {
                "id": 1,
                "name": "Admin's Personal Collection",
                "personal_owner_id": 1,
                "location": "/",
                "archived": False,
                "description": None,
                "namespace": None,
                "authority_level": None,
            },
        }
        self.cards: dict[int, dict] = {}
        self.dashboards: dict[int, dict] = {}
        self.dashcards: dict[int, dict] = {}  # id -> dashcard (with dashboard_id)
        self.requests: list[tuple[str, str]] = []
        self._failures: list[list] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-metabase", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeMetabase:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> FakeMetabase:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test helpers --------------------------------------------------------------------------

    def fail_next(self, method: str, path: str, status: int = 503, times: int = 1) -> None:
        self._failures.append([method, path, status, times])

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET" and r[1] != "/api/session"]

    def live_cards(self) -> list[dict]:
        return [c for c in self.cards.values() if not c["archived"]]

    # -- HTTP ----------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = url.path.rstrip("/") or "/"
                fake.requests.append((method, path))
                try:
                    for failure in fake._failures:
                        if failure[0] == method and failure[1] == path and failure[3] > 0:
                            failure[3] -= 1
                            raise ApiError(failure[2], "Service Unavailable")
                    body = json.loads(raw) if raw else None
                    with fake.lock:
                        status, payload = fake.route(method, path, parse_qs(url.query), body, self.headers)
                except ApiError as exc:
                    status, payload = exc.status, exc.body
                except json.JSONDecodeError:
                    status, payload = 400, "Malformed JSON"
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "text/plain" if isinstance(payload, str) else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler

    def _authenticated(self, headers) -> bool:
        key = headers.get("x-api-key")
        if key is not None:
            return key == self.api_key
        return headers.get("X-Metabase-Session") in self.sessions

    def route(self, method: str, path: str, query: dict, body: Any, headers) -> tuple[int, Any]:
        parts = path.strip("/").split("/")  # ["api", "card", "12"]
        if parts[:1] != ["api"] or len(parts) < 2:
            raise ApiError(404, "API endpoint does not exist.")
        if (method, path) == ("POST", "/api/session"):
            return self.post_session(body or {})
        if not self._authenticated(headers):
            raise ApiError(401, "Unauthenticated")
        resource, ident = parts[1], (parts[2] if len(parts) > 2 else None)
        if len(parts) > 3:
            raise ApiError(404, "API endpoint does not exist.")
        if ident is not None and not ident.isdigit():
            raise ApiError(400, {"errors": {"id": "value must be an integer greater than zero."}})
        ident = int(ident) if ident is not None else None
        handler = getattr(self, f"{method.lower()}_{resource}{'_id' if ident is not None else ''}", None)
        if handler is None:
            raise ApiError(404, "API endpoint does not exist.")
        args = [ident] if ident is not None else []
        if method == "GET":
            return handler(*args, query)
        if not isinstance(body, dict):
            raise ApiError(400, "Malformed JSON")
        return handler(*args, body)

    # -- session and databases -----------------------------------------------------------------

    def post_session(self, body: dict) -> tuple[int, Any]:
        if body.get("username") != self.username or body.get("password") != self.password:
            raise ApiError(401, {"errors": {"password": "did not match stored password"}})
        token = str(uuid.uuid4())
        self.sessions.add(token)
        return 200, {"id": token}

    def get_database(self, query: dict) -> tuple[int, Any]:
        return 200, {"data": copy.deepcopy(self.databases), "total": len(self.databases)}

    # -- collections ---------------------------------------------------------------------------

    def get_collection(self, query: dict) -> tuple[int, Any]:
        archived = query.get("archived", ["false"])[0] == "true"
        root = {
            "id": "root",
            "name": "Our analytics",
            "can_write": True,
            "effective_location": None,
            "parent_id": None,
            "effective_ancestors": [],
            "authority_level": None,
            "is_personal": False,
        }
        rows = [copy.deepcopy(c) for c in self.collections.values() if c["archived"] == archived]
        return 200, ([] if archived else [root]) + rows

    def post_collection(self, body: dict) -> tuple[int, Any]:
        _non_blank(body, "name")
        _non_blank(body, "description", required=False)
        parent = body.get("parent_id")
        if parent is not None and parent not in self.collections:
            raise ApiError(404, "Not found.")
        location = "/" if parent is None else f"{self.collections[parent]['location']}{parent}/"
        coll = {
            "id": next(self.ids),
            "name": body["name"],
            "description": body.get("description"),
            "location": location,
            "personal_owner_id": None,
            "archived": False,
            "namespace": None,
            "authority_level": None,
            "slug": body["name"].lower().replace(" ", "_"),
            "entity_id": uuid.uuid4().hex[:21],
        }
        self.collections[coll["id"]] = coll
        return 200, copy.deepcopy(coll)

    def _check_collection(self, collection_id: Any) -> None:
        if collection_id is not None and collection_id not in self.collections:
            raise ApiError(404, "Not found.")

    # -- cards ---------------------------------------------------------------------------------

    @staticmethod
    def _stored_query(dataset_query: dict) -> dict:
        query = copy.deepcopy(dataset_query)
        if query.get("type") == "native":
            query.setdefault("native", {}).setdefault("template-tags", {})
        return query

    def get_card(self, query: dict) -> tuple[int, Any]:
        f = query.get("f", ["all"])[0]
        if f not in (
            "all",
            "mine",
            "archived",
            "bookmarked",
            "database",
            "table",
            "using_model",
            "using_metric",
            "using_segment",
        ):
            raise ApiError(400, {"errors": {"f": "nullable enum"}})
        archived = f == "archived"
        return 200, [copy.deepcopy(c) for c in self.cards.values() if c["archived"] == archived]

    def get_card_id(self, card_id: int, query: dict) -> tuple[int, Any]:
        if card_id not in self.cards:
            raise ApiError(404, "Not found.")
        return 200, copy.deepcopy(self.cards[card_id])

    def post_card(self, body: dict) -> tuple[int, Any]:
        _non_blank(body, "name")
        _non_blank(body, "display")
        _non_blank(body, "description", required=False)
        _map(body, "dataset_query")
        _map(body, "visualization_settings")
        self._check_collection(body.get("collection_id"))
        now = _now()
        card = {
            "id": next(self.ids),
            "name": body["name"],
            "description": body.get("description"),
            "collection_id": body.get("collection_id"),
            "display": body["display"],
            "visualization_settings": copy.deepcopy(body["visualization_settings"]),
            "dataset_query": self._stored_query(body["dataset_query"]),
            "database_id": body["dataset_query"].get("database"),
            "type": body.get("type") or "question",
            "query_type": body["dataset_query"].get("type"),
            "archived": False,
            "creator_id": 1,
            "result_metadata": [],
            "parameters": [],
            "created_at": now,
            "updated_at": now,
            "entity_id": uuid.uuid4().hex[:21],
        }
        self.cards[card["id"]] = card
        return 200, copy.deepcopy(card)

    def put_card_id(self, card_id: int, body: dict) -> tuple[int, Any]:
        if card_id not in self.cards:
            raise ApiError(404, "Not found.")
        for key in ("name", "display"):
            if key in body:
                _non_blank(body, key)
        for key in ("dataset_query", "visualization_settings"):
            if body.get(key) is not None:
                _map(body, key)
        if "collection_id" in body:
            self._check_collection(body["collection_id"])
        card = self.cards[card_id]
        for key in (
            "name",
            "description",
            "collection_id",
            "display",
            "visualization_settings",
            "archived",
            "type",
        ):
            if key in body:
                card[key] = copy.deepcopy(body[key])
        if body.get("dataset_query") is not None:
            card["dataset_query"] = self._stored_query(body["dataset_query"])
            card["database_id"] = body["dataset_query"].get("database")
            card["query_type"] = body["dataset_query"].get("type")
        card["updated_at"] = _now()
        return 200, copy.deepcopy(card)

    # -- dashboards ----------------------------------------------------------------------------

    def _dashboard(self, dashboard_id: int) -> dict:
        dash = copy.deepcopy(self.dashboards[dashboard_id])
        dash["dashcards"] = [
            {**copy.deepcopy(dc), "card": copy.deepcopy(self.cards.get(dc["card_id"]))}
            for dc in sorted(self.dashcards.values(), key=lambda d: d["id"])
            if dc["dashboard_id"] == dashboard_id
        ]
        return dash

    def get_dashboard(self, query: dict) -> tuple[int, Any]:
        f = query.get("f", ["all"])[0]
        if f not in ("all", "mine", "archived"):
            raise ApiError(400, {"errors": {"f": "nullable enum of all, mine, archived"}})
        archived = f == "archived"
        return 200, [copy.deepcopy(d) for d in self.dashboards.values() if d["archived"] == archived]

    def get_dashboard_id(self, dashboard_id: int, query: dict) -> tuple[int, Any]:
        if dashboard_id not in self.dashboards:
            raise ApiError(404, "Not found.")
        return 200, self._dashboard(dashboard_id)

    def post_dashboard(self, body: dict) -> tuple[int, Any]:
        _non_blank(body, "name")
        self._check_collection(body.get("collection_id"))
        now = _now()
        dash = {
            "id": next(self.ids),
            "name": body["name"],
            "description": body.get("description"),
            "collection_id": body.get("collection_id"),
            "archived": False,
            "parameters": [],
            "tabs": [],
            "creator_id": 1,
            "created_at": now,
            "updated_at": now,
            "width": "fixed",
            "entity_id": uuid.uuid4().hex[:21],
        }
        self.dashboards[dash["id"]] = dash
        return 200, self._dashboard(dash["id"])

    def put_dashboard_id(self, dashboard_id: int, body: dict) -> tuple[int, Any]:
        if dashboard_id not in self.dashboards:
            raise ApiError(404, "Not found.")
        if "name" in body:
            _non_blank(body, "name")
        if "collection_id" in body:
            self._check_collection(body["collection_id"])
        if body.get("dashcards") is not None:
            self._put_dashcards(dashboard_id, body["dashcards"])
        dash = self.dashboards[dashboard_id]
        for key in ("name", "description", "collection_id", "archived", "parameters", "width"):
            if key in body:
                dash[key] = copy.deepcopy(body[key])
        dash["updated_at"] = _now()
        return 200, self._dashboard(dashboard_id)

    def _put_dashcards(self, dashboard_id: int, dashcards: Any) -> None:
        if not isinstance(dashcards, list) or not all(isinstance(d, dict) and "id" in d for d in dashcards):
            raise ApiError(
                400, {"errors": {"dashcards": "value must be seq of maps in which ids are unique"}}
            )
        ids = [d["id"] for d in dashcards]
        if len(set(ids)) != len(ids):
            raise ApiError(
                400, {"errors": {"dashcards": "value must be seq of maps in which ids are unique"}}
            )
        for d in dashcards:
            for key in ("row", "col", "size_x", "size_y"):
                if not isinstance(d.get(key), int) or d[key] < 0:
                    raise ApiError(
                        400, {"errors": {key: "value must be an integer greater or equal to zero."}}
                    )
            if d.get("card_id") is not None and d["card_id"] not in self.cards:
                raise ApiError(404, "Not found.")
            if d["id"] >= 0 and (
                d["id"] not in self.dashcards or self.dashcards[d["id"]]["dashboard_id"] != dashboard_id
            ):
                raise ApiError(404, "Not found.")
        keep = {d["id"] for d in dashcards if d["id"] >= 0}
        for dc_id in [
            i for i, dc in self.dashcards.items() if dc["dashboard_id"] == dashboard_id and i not in keep
        ]:
            del self.dashcards[dc_id]
        now = _now()
        for d in dashcards:
            dc_id = d["id"] if d["id"] >= 0 else next(self.ids)
            previous = self.dashcards.get(dc_id, {"created_at": now})
            self.dashcards[dc_id] = {
                "id": dc_id,
                "dashboard_id": dashboard_id,
                "card_id": d.get("card_id"),
                "row": d["row"],
                "col": d["col"],
                "size_x": d["size_x"],
                "size_y": d["size_y"],
                "visualization_settings": copy.deepcopy(d.get("visualization_settings") or {}),
                "parameter_mappings": copy.deepcopy(d.get("parameter_mappings") or []),
                "series": copy.deepcopy(d.get("series") or []),
                "dashboard_tab_id": d.get("dashboard_tab_id"),
                "created_at": previous["created_at"],
                "updated_at": now,
            }
