"""A small typed client for the few Metabase API endpoints dashboards-as-code needs.

Endpoints and shapes follow Metabase's API documentation (docs/api/*.md in the Metabase
repository): ``/api/session``, ``/api/database``, ``/api/collection``, ``/api/card`` and
``/api/dashboard`` (``PUT /api/dashboard/:id`` with ``dashcards``, new ones with negative ids).

Authentication, first found wins: an API key (``x-api-key`` header, ``METABASE_API_KEY``), a
session token (``X-Metabase-Session``, ``METABASE_SESSION``), or a username and password
(``METABASE_USERNAME`` / ``METABASE_PASSWORD``) exchanged for a session via ``POST /api/session``.

Transient failures are retried with exponential backoff (tenacity): connection errors and 429/502/
503/504 for reads and updates; for creations (POST) only failures where the request cannot have
been processed (connection refused, 429, 503), so a retry cannot create a duplicate.
"""

from __future__ import annotations

import os
from typing import Any

import requests
import urllib3
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

RETRY_STATUSES = {429, 502, 503, 504}
RETRY_STATUSES_UNSAFE = {429, 503}  # the request was not processed: safe to repeat a POST


def _never_sent(exc: BaseException) -> bool:
    """The connection was never made (refused, or timed out connecting): the server saw nothing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = getattr(exc.args[0], "reason", exc.args[0])
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class MetabaseError(RuntimeError):
    def __init__(self, method: str, path: str, status: int | None, detail: str):
        self.method, self.path, self.status, self.detail = method, path, status, detail
        where = f"{method} {path}"
        super().__init__(f"{where}: HTTP {status}: {detail}" if status else f"{where}: {detail}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Collection(_Model):
    id: int | str  # the virtual root collection has id "root"
    name: str
    location: str | None = None  # "/" top level, "/12/" inside collection 12
    personal_owner_id: int | None = None
    archived: bool = False


class Database(_Model):
    id: int
    name: str
    engine: str | None = None


class Card(_Model):
    id: int
    name: str
    description: str | None = None
    collection_id: int | None = None
    display: str | None = None
    visualization_settings: dict[str, Any] = Field(default_factory=dict)
    dataset_query: dict[str, Any] = Field(default_factory=dict)
    archived: bool = False


class DashCard(_Model):
    id: int
    card_id: int | None = None  # None for text and heading cards
    row: int = 0
    col: int = 0
    size_x: int = 4
    size_y: int = 4
    visualization_settings: dict[str, Any] = Field(default_factory=dict)
    parameter_mappings: list[dict[str, Any]] = Field(default_factory=list)


class Dashboard(_Model):
    id: int
    name: str
    description: str | None = None
    collection_id: int | None = None
    archived: bool = False
    # "ordered_cards" before Metabase 0.47
    dashcards: list[DashCard] = Field(
        default_factory=list, validation_alias=AliasChoices("dashcards", "ordered_cards")
    )


def native_query(dataset_query: dict[str, Any]) -> tuple[int | None, str | None]:
    """``(database id, SQL)`` of a native card's ``dataset_query``, legacy shape
    (``{"type": "native", "database": 1, "native": {"query": ...}}``) or MBQL 5 stages
    (``{"database": 1, "stages": [{"lib/type": "mbql.stage/native", "native": ...}]}``)."""
    database = dataset_query.get("database")
    if dataset_query.get("type") == "native":
        return database, (dataset_query.get("native") or {}).get("query")
    stages = dataset_query.get("stages") or []
    if len(stages) == 1 and isinstance(stages[0].get("native"), str):
        return database, stages[0]["native"]
    return database, None


class MetabaseClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        session_token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 0.5,
        http: requests.Session | None = None,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Metabase URL {url!r}: expected http(s)://host[:port]")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.http = http or requests.Session()
        self.http.headers["Accept"] = "application/json"
        if api_key:
            self.http.headers["x-api-key"] = api_key
        elif session_token:
            self.http.headers["X-Metabase-Session"] = session_token
        elif username and password:
            token = self._request("POST", "/api/session", json={"username": username, "password": password})
            self.http.headers["X-Metabase-Session"] = token["id"]
        else:
            raise ValueError(
                "no Metabase credentials: set METABASE_API_KEY, or METABASE_SESSION, or "
                "METABASE_USERNAME and METABASE_PASSWORD"
            )

    @classmethod
    def from_env(cls, url: str, **kwargs: Any) -> MetabaseClient:
        env = os.environ
        return cls(
            url,
            api_key=env.get("METABASE_API_KEY") or None,
            session_token=env.get("METABASE_SESSION") or None,
            username=env.get("METABASE_USERNAME") or None,
            password=env.get("METABASE_PASSWORD") or None,
            **kwargs,
        )

    # -- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, params: dict | None = None, json: Any = None) -> Any:
        statuses = RETRY_STATUSES if method in ("GET", "PUT") else RETRY_STATUSES_UNSAFE

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, MetabaseError):
                return exc.status in statuses
            if method in ("GET", "PUT"):
                return isinstance(exc, requests.ConnectionError | requests.Timeout)
            return _never_sent(exc)

        for attempt in Retrying(
            retry=retry_if_exception(transient),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=10),
            reraise=True,
        ):
            with attempt:
                return self._once(method, path, params, json)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, method: str, path: str, params: dict | None, json: Any) -> Any:
        try:
            response = self.http.request(
                method, self.url + path, params=params, json=json, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout):
            raise  # the retry policy decides
        except requests.RequestException as exc:
            raise MetabaseError(method, path, None, str(exc)) from exc
        if response.status_code >= 400:
            raise MetabaseError(method, path, response.status_code, response.text[:500])
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise MetabaseError(method, path, response.status_code, "response is not JSON") from None

    # -- endpoints ---------------------------------------------------------------------------

    def databases(self) -> list[Database]:
        body = self._request("GET", "/api/database")
        rows = body["data"] if isinstance(body, dict) else body  # {"data": [...], "total": n} since 0.4x
        return [Database.model_validate(r) for r in rows]

    def collections(self) -> list[Collection]:
        return [Collection.model_validate(r) for r in self._request("GET", "/api/collection")]

    def create_collection(
        self, name: str, description: str | None = None, parent_id: int | None = None
    ) -> Collection:
        body = {"name": name, "description": description or None, "parent_id": parent_id}
        return Collection.model_validate(self._request("POST", "/api/collection", json=body))

    def cards(self) -> list[Card]:
        return [Card.model_validate(r) for r in self._request("GET", "/api/card", params={"f": "all"})]

    def create_card(self, body: dict[str, Any]) -> Card:
        return Card.model_validate(self._request("POST", "/api/card", json=body))

    def update_card(self, card_id: int, body: dict[str, Any]) -> Card:
        return Card.model_validate(self._request("PUT", f"/api/card/{card_id}", json=body))

    def dashboards(self) -> list[Dashboard]:
        return [
            Dashboard.model_validate(r) for r in self._request("GET", "/api/dashboard", params={"f": "all"})
        ]

    def dashboard(self, dashboard_id: int) -> Dashboard:
        return Dashboard.model_validate(self._request("GET", f"/api/dashboard/{dashboard_id}"))

    def create_dashboard(self, name: str, description: str | None, collection_id: int | None) -> Dashboard:
        body = {"name": name, "description": description, "collection_id": collection_id}
        return Dashboard.model_validate(self._request("POST", "/api/dashboard", json=body))

    def update_dashboard(self, dashboard_id: int, body: dict[str, Any]) -> Dashboard:
        return Dashboard.model_validate(self._request("PUT", f"/api/dashboard/{dashboard_id}", json=body))
