"""BigQuery credentials: one mechanism, Google's Application Default Credentials, for the loads (and
so the engine and the GX checks, which use the warehouse's client) and for dbt (profile
``method: oauth``). With only ``GOOGLE_APPLICATION_CREDENTIALS`` set, both see the same service
account and the same project; ``GOOGLE_CLOUD_PROJECT`` and ``LAKEHOUSE_BIGQUERY_PROJECT`` move both.

No token is fetched (no network here): the test compares the identities each client was built
with, which is what decides who BigQuery sees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
EMAIL = "lakehouse-loader@eco2-analytics.iam.gserviceaccount.com"


@pytest.fixture
def service_account(tmp_path, monkeypatch) -> Path:
    """A service-account key file (a fresh RSA key) as GOOGLE_APPLICATION_CREDENTIALS, nothing else."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "eco2-analytics",
        "private_key_id": "0" * 40,
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1" * 21,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    for name in (
        "GOOGLE_CLOUD_PROJECT",
        "GCLOUD_PROJECT",
        "LAKEHOUSE_BIGQUERY_PROJECT",
        "LAKEHOUSE_BIGQUERY_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("LAKEHOUSE_WAREHOUSE", "bigquery")
    return path


def pipeline_warehouse() -> BigQueryWarehouse:
    """The warehouse the pipeline's resource builds from the environment (LAKEHOUSE_WAREHOUSE=bigquery):
    its client is the one the loads, the engine's project lookup and the GX checks use."""
    from orchestration.environment import warehouse_resource

    return warehouse_resource().warehouse()


def loads_identity() -> tuple[str, str]:
    wh = pipeline_warehouse()
    return wh.client._credentials.service_account_email, wh.project


def dbt_identity(monkeypatch, warehouse_env: dict[str, str]) -> tuple[str, str]:
    """Who dbt is: dbt_project/profiles.yml rendered as the pipeline runs it (the warehouse's
    dbt_env), credentials made by dbt-bigquery itself."""
    from dbt.adapters.bigquery import credentials as dbt_credentials
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    for name, value in warehouse_env.items():
        monkeypatch.setenv(name, value)
    dbt_credentials._create_bigquery_defaults.cache_clear()  # dbt caches ADC per process
    set_invocation_context(dict(os.environ))  # what env_var() in profiles.yml reads
    raw = read_profile(str(DBT_PROJECT))["eco2_lakehouse"]
    target, rendered = Profile.render_profile(raw, "eco2_lakehouse", None, ProfileRenderer({}))
    assert target == "bigquery" and rendered.pop("type") == "bigquery"
    rendered.pop("threads")
    data = dbt_credentials.BigQueryCredentials.translate_aliases(rendered)
    credentials = dbt_credentials.BigQueryCredentials.from_dict(data)  # as dbt's Profile builds them
    google = dbt_credentials.create_google_credentials(credentials)
    return google.service_account_email, credentials.database


def warehouse_env() -> dict[str, str]:
    return pipeline_warehouse().dbt_env()  # what the dbt asset runs dbt with


def test_only_the_key_file_set_loads_and_dbt_are_the_same_identity(service_account, monkeypatch):
    assert loads_identity() == (EMAIL, "eco2-analytics")
    assert dbt_identity(monkeypatch, warehouse_env()) == (EMAIL, "eco2-analytics")


@pytest.mark.parametrize("variable", ["GOOGLE_CLOUD_PROJECT", "LAKEHOUSE_BIGQUERY_PROJECT"])
def test_a_project_variable_moves_loads_and_dbt_together(service_account, monkeypatch, variable):
    monkeypatch.setenv(variable, "eco2-sandbox")
    assert loads_identity() == (EMAIL, "eco2-sandbox")
    env = warehouse_env()
    monkeypatch.delenv(variable)  # dbt gets the project only through the pipeline's dbt environment
    assert dbt_identity(monkeypatch, env) == (EMAIL, "eco2-sandbox")
