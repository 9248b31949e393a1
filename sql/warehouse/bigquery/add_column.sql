-- Schema evolution: a column the source gained (existing rows hold NULL, as in the state).
ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {column} {column_type};
