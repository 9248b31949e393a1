SELECT * FROM {target};
