SELECT * FROM fold_result;
