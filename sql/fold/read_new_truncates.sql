SELECT * FROM fold_new_truncates;
