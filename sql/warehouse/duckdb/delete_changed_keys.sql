-- Incremental load, step 1: every key the changed clusters held before or hold now leaves the target.
DELETE FROM {target} AS t
USING changed_keys AS c
WHERE {key_match};
