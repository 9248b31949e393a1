-- Incremental load, step 2: the visible rows of the changed clusters come back (by column name).
INSERT INTO {target} BY NAME SELECT * FROM incoming_rows;
