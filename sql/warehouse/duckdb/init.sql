-- Bookkeeping of the embedded warehouse: which current-state version each table holds.
CREATE SCHEMA IF NOT EXISTS _lakehouse;
CREATE TABLE IF NOT EXISTS _lakehouse.loads (
    table_name     VARCHAR PRIMARY KEY,   -- <schema>.<table>
    state_version  BIGINT NOT NULL,       -- Delta version of the current-state table loaded
    fingerprint    VARCHAR NOT NULL,      -- source columns, types and key of that version
    mode           VARCHAR NOT NULL,      -- full | incremental
    row_count      BIGINT NOT NULL,       -- visible rows after the load
    loaded_at      TIMESTAMPTZ NOT NULL
);
