-- The fold's input on BigQuery (lakehouse.warehouse.bigquery_fold): this batch's events from the
-- table's raw change table, read from one ingestion-day partition (the constant filter prunes every
-- other day) and clustered by key, then the state rows the batch touches (a working table).
-- The day and the batch id are literals the engine generates (a date, a uuid): a literal is
-- what partition pruning is guaranteed to see inside a script.
CREATE OR REPLACE TEMP TABLE fold_skeleton AS
SELECT {columns} FROM {changes} WHERE _ingested_day = {ingested_day} AND _batch = {batch}
UNION ALL
SELECT {columns} FROM {rest}
