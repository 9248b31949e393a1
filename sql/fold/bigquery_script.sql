-- The fold as one BigQuery script (lakehouse.state.sqlfold.fold_script): its input (sql/fold/
-- bigquery_skeleton.sql), the steps of sql/fold/ rendered by sqlglot, key-change links looped
-- inside the script (its temp tables live as long as it does), the outputs kept in tables the
-- caller reads back.
DECLARE rounds INT64 DEFAULT 0;
{skeleton};
{steps};
CREATE OR REPLACE TABLE {out_late} AS {late};
LOOP
  IF rounds >= 64 OR ({link_pending}) = 0 THEN LEAVE; END IF;
  {link};
  SET rounds = rounds + 1;
END LOOP;
{result};
CREATE OR REPLACE TABLE {out_result} AS {read_result};
CREATE OR REPLACE TABLE {out_effects} AS {effects};
CREATE OR REPLACE TABLE {out_new_truncates} AS {read_new_truncates};
