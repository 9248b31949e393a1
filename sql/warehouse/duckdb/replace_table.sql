-- Full refresh: the whole visible table replaces the target (inside the load's transaction).
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE OR REPLACE TABLE {target} AS SELECT * FROM incoming_rows;
