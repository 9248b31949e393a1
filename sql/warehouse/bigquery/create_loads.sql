-- Bookkeeping: which current-state version each warehouse table holds, and its BigQuery schema.
CREATE TABLE IF NOT EXISTS {loads} (
    table_name     STRING NOT NULL,   -- <schema>.<table>
    state_version  INT64 NOT NULL,    -- Delta version of the current-state table loaded
    fingerprint    STRING NOT NULL,   -- source columns, types and key of that version
    bq_schema      STRING NOT NULL,   -- the target's columns as loaded (JSON), for schema evolution
    mode           STRING NOT NULL,   -- full | incremental
    row_count      INT64 NOT NULL,
    loaded_at      TIMESTAMP NOT NULL
);
