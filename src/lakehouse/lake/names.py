"""PostgreSQL names as Debezium 3.6.3 turns them into topic, schema and field names, and back.

Kafka topic names allow ``[A-Za-z0-9._-]``; Debezium's ``DefaultTopicNamingStrategy`` replaces any
other character of ``<prefix>.<schema>.<table>`` with ``_`` (``"we ird"."Key Words"`` becomes
``eco2.we_ird.Key_Words``). Avro names allow ``[A-Za-z_][A-Za-z0-9_]*``; with
``field.name.adjustment.mode=avro`` Debezium replaces every other UTF-16 unit of a column name with
``_`` (a leading digit gets a ``_`` in front), which loses the name: ``a"b`` and ``a b`` both become
``a_b``. The capture therefore has Debezium record the real name of every such column in its Connect
schema (``column.propagate.source.type``), as the parameter ``__debezium.source.column.name``. It
travels in every object's Avro schema (``connect.parameters``, Parquet footer or Avro header) and
in the key companions, so a reader maps each object's columns back with :func:`source_name`,
whatever the object's age. Columns with valid names get no parameter and keep their names.

``avro_unicode`` (``_uXXXX`` escapes) was not used: it escapes every ``_`` too (``user_id`` becomes
``user_u005fid``, renaming every snake_case column of every table), and Debezium writes code
points 0x100-0xFFF with three hex digits, so ``_u416a`` could be U+0416 + ``a`` or U+416A.
"""

from __future__ import annotations

import re

from lakehouse.lake.connect import ConnectField, ConnectSchema

SOURCE_COLUMN_NAME = "__debezium.source.column.name"
# the parameters ``column.propagate.source.type`` adds (type, length, scale, comment, name)
SOURCE_PARAMETER_PREFIX = "__debezium.source.column."

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOPIC_CHAR = re.compile(r"[A-Za-z0-9._-]")
MAX_TOPIC_LENGTH = 249


def source_name(f: ConnectField) -> str:
    """The source column's real name: the ``__debezium.source.column.name`` parameter Debezium
    added to the field's schema, else the field name (the name was a valid Avro name already)."""
    return source_name_of(f.name, f.schema)


def source_name_of(field_name: str, schema: ConnectSchema) -> str:
    return schema.params.get(SOURCE_COLUMN_NAME) or field_name


def source_names(schema: ConnectSchema) -> dict[str, str]:
    """Field name -> source column name, for the fields of a struct whose names differ."""
    return {f.name: source_name(f) for f in schema.fields if source_name(f) != f.name}


def is_avro_name(name: str) -> bool:
    return _AVRO_NAME.fullmatch(name) is not None


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def avro_field_name(name: str) -> str:
    """The field name Debezium writes for column ``name`` with ``field.name.adjustment.mode=avro``
    (``FieldNameUnderscoreReplacementFunction``): every character outside ``[A-Za-z0-9_]`` becomes
    one ``_`` per UTF-16 unit, a leading digit is kept behind a ``_``."""
    if not name or is_avro_name(name):
        return name
    out = []
    for i, ch in enumerate(name):
        valid = ch.isascii() and (ch.isalpha() or ch == "_" or (i > 0 and ch.isdigit()))
        if valid:
            out.append(ch)
        elif i == 0 and ch.isdigit():
            out.append("_" + ch)
        else:
            out.append("_" * _utf16_units(ch))
    return "".join(out)


def debezium_topic(prefix: str, schema: str, table: str) -> str:
    """The topic Debezium's ``DefaultTopicNamingStrategy`` gives table ``schema.table``
    (``sanitizedTopicName``: one ``_`` per invalid UTF-16 unit, at most 249 characters)."""
    raw = f"{prefix}.{schema}.{table}"
    out = "".join(ch if _TOPIC_CHAR.fullmatch(ch) else "_" * _utf16_units(ch) for ch in raw)
    if len(out) > MAX_TOPIC_LENGTH:
        out = out[:MAX_TOPIC_LENGTH]
    if out in (".", ".."):
        out = "_" * len(out)
    return out


def java_regex_literal(text: str) -> str:
    """``text`` as a Java regular expression matching exactly it: every character other than
    ASCII letters, digits and ``_`` as ``\\x{h..h}``, so no comma (Debezium splits its regex
    lists on commas) and no character Java could read as syntax survives."""
    return "".join(
        ch if ch.isascii() and (ch.isalnum() or ch == "_") else f"\\x{{{ord(ch):x}}}" for ch in text
    )


# a column name Avro cannot hold: it starts with a digit or has a character outside [A-Za-z0-9_]
_ODD_COLUMN = r"(?:[0-9].*|.*[^A-Za-z0-9_].*)"


def odd_columns_regex(schema: str, table: str) -> str:
    """Debezium ``column.propagate.source.type`` entry that matches the columns of ``schema.table``
    whose names are not Avro names, also ones added later (column ids are ``schema.table.column``;
    ``(?-i)`` because Debezium compiles the list case-insensitively)."""
    return f"(?-i){java_regex_literal(schema)}\\.{java_regex_literal(table)}\\.{_ODD_COLUMN}"


__all__ = [
    "SOURCE_COLUMN_NAME",
    "SOURCE_PARAMETER_PREFIX",
    "avro_field_name",
    "debezium_topic",
    "is_avro_name",
    "java_regex_literal",
    "odd_columns_regex",
    "source_name",
    "source_name_of",
    "source_names",
]
