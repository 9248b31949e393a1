DROP TABLE fold_rows;
