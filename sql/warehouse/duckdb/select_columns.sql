SELECT {columns} FROM {target};
